package simulator

import (
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
)

// tradingSecondsPerYear scales annualised volatility to one second of a
// trading day (252 days of 6.5 hours), so prices move visibly in a demo.
const tradingSecondsPerYear = 252 * 6.5 * 3600

// walk is the state of one symbol's price process. Prices are kept as whole
// numbers of ticks, so every price it emits lies exactly on the tick grid.
type walk struct {
	sym      feed.Symbol
	logMid   float64 // natural log of the mid, in ticks
	sigma    float64 // volatility per square-root second
	spread   int64   // quoted spread, in ticks (>= 1)
	lastT    float64 // virtual time of the previous tick, in seconds
	seq      uint64
	lotSize  int64
	bidTicks int64
	// The session so far: volume (sum of sizes) and the highest and
	// lowest last price, in ticks.
	vol, hi, lo int64
	// The tick size as unit × 10^exp, when unit fits an int64 (unit is
	// then > 0): prices are built with one decimal.New each.
	unit int64
	exp  int32
	// The decimals of the last tick's bid, ask, high and low, with their
	// prices in ticks: a price repeats from one tick to the next far more
	// often than not (a tick moves a mid by a fraction of a tick), and a
	// decimal costs two allocations. Decimals are immutable, so ticks may
	// share them.
	decs [4]cachedPrice
	// The start of the tick's wire JSON up to its seq, and the largest
	// price in ticks that appendWire writes from integers (0: none; the
	// tick is then encoded through its decimals).
	prefix []byte
	maxN   int64
}

// cachedPrice is a price in ticks and its decimal.
type cachedPrice struct {
	n int64
	d decimal.Decimal
}

// The roles of walk.decs.
const (
	decBid = iota
	decAsk
	decHigh
	decLow
)

// cached returns the decimal of n ticks, from the last tick's prices when
// one of them is n.
func (w *walk) cached(n int64) decimal.Decimal {
	for i := range w.decs {
		if c := &w.decs[i]; c.n == n && c.d != (decimal.Decimal{}) {
			return c.d
		}
	}
	return w.price(n)
}

func newWalk(in instrument, spreadTicks int64) *walk {
	ticks := in.price / in.sym.TickSize.InexactFloat64()
	open := in.sym.Open.Div(in.sym.TickSize).IntPart()
	var unit int64
	if ts := in.sym.TickSize; ts.NumDigits() <= 18 {
		unit = ts.CoefficientInt64()
	}
	w := &walk{
		unit:    unit,
		exp:     in.sym.TickSize.Exponent(),
		hi:      open,
		lo:      open,
		sym:     in.sym,
		logMid:  math.Log(ticks),
		sigma:   in.vol / math.Sqrt(tradingSecondsPerYear),
		spread:  spreadTicks,
		lotSize: lotSize(in.sym.Class),
	}
	w.prefix = append(strconv.AppendQuote([]byte(`{"sym":`), in.sym.Name), `,"seq":`...)
	if unit > 0 && w.exp <= 0 && w.exp >= -18 {
		// feed.Tick.AppendJSON writes a price from its coefficient when
		// that has at most 18 digits.
		w.maxN = (1e18 - 1) / unit
	}
	return w
}

func lotSize(class string) int64 {
	switch class {
	case feed.ClassFX:
		return 10000
	case feed.ClassCrypto, feed.ClassFuture:
		return 1
	default:
		return 100
	}
}

// resume continues the walk from a tick published earlier.
func (w *walk) resume(t feed.Tick) {
	mid := t.Bid.Add(t.Ask).Div(decimal.NewFromInt(2)).Div(w.sym.TickSize).InexactFloat64()
	if mid > 1 {
		w.logMid = math.Log(mid)
	}
	w.seq = t.Seq
	w.vol = t.Vol
	if !t.High.IsZero() && !t.Low.IsZero() {
		w.hi = t.High.Div(w.sym.TickSize).IntPart()
		w.lo = t.Low.Div(w.sym.TickSize).IntPart()
	}
}

// rawTick is one step of a walk with its prices in ticks (integers): it
// becomes a feed.Tick (tick) or its wire JSON (appendWire) once its batch
// is stamped.
type rawTick struct {
	w                         *walk
	seq                       uint64
	bid, ask, last, size, vol int64
	hi, lo                    int64
}

// step advances the walk to virtual time now and returns the next tick,
// in ticks.
func (w *walk) step(rng *rand.Rand, now float64) rawTick {
	dt := now - w.lastT
	if dt < 1e-6 {
		dt = 1e-6
	}
	w.lastT = now
	// Geometric Brownian motion without drift, in log space.
	w.logMid += w.sigma*math.Sqrt(dt)*rng.NormFloat64() - 0.5*w.sigma*w.sigma*dt
	mid := math.Exp(w.logMid)
	half := float64(w.spread) / 2
	bid := int64(math.Floor(mid - half))
	if bid < 1 {
		bid = 1
		w.logMid = math.Log(1 + half) // reflect at the floor: prices stay positive
	}
	ask := bid + w.spread
	last := bid
	if rng.IntN(2) == 1 {
		last = ask
	}
	w.seq++
	w.bidTicks = bid
	size := w.lotSize * (1 + int64(rng.ExpFloat64()*4))
	w.vol += size
	w.hi, w.lo = max(w.hi, last), min(w.lo, last)
	return rawTick{w: w, seq: w.seq, bid: bid, ask: ask, last: last, size: size, vol: w.vol, hi: w.hi, lo: w.lo}
}

// tick returns r as a feed.Tick, without a timestamp. Its decimals come
// from the walk's cache where the last tick had the same prices.
func (r *rawTick) tick() feed.Tick {
	w := r.w
	bd, ad := w.cached(r.bid), w.cached(r.ask)
	lastD := bd
	if r.last == r.ask {
		lastD = ad
	}
	hd, ld := w.decs[decHigh].d, w.decs[decLow].d
	switch {
	case r.hi == r.last:
		hd = lastD
	case r.hi != w.decs[decHigh].n || hd == (decimal.Decimal{}):
		hd = w.cached(r.hi)
	}
	switch {
	case r.lo == r.last:
		ld = lastD
	case r.lo != w.decs[decLow].n || ld == (decimal.Decimal{}):
		ld = w.cached(r.lo)
	}
	w.decs = [4]cachedPrice{decBid: {r.bid, bd}, decAsk: {r.ask, ad}, decHigh: {r.hi, hd}, decLow: {r.lo, ld}}
	return feed.Tick{
		Sym:  w.sym.Name,
		Seq:  r.seq,
		Bid:  bd,
		Ask:  ad,
		Last: lastD,
		Size: r.size,
		Vol:  r.vol,
		High: hd,
		Low:  ld,
	}
}

// price returns n ticks as a decimal with the tick size's exponent.
func (w *walk) price(n int64) decimal.Decimal {
	if w.unit > 0 && n >= 0 && n <= math.MaxInt64/w.unit {
		return decimal.New(n*w.unit, w.exp)
	}
	return decimal.NewFromInt(n).Mul(w.sym.TickSize)
}
