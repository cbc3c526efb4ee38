package bars

import (
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/tickstream/tickstream/feed"
)

// Timeframe is a bar's length in seconds.
type Timeframe int

// The timeframes a Builder keeps.
const (
	TF1s Timeframe = 1
	TF5s Timeframe = 5
	TF1m Timeframe = 60
	TF5m Timeframe = 300
)

// Timeframes lists the timeframes a Builder keeps, shortest first.
var Timeframes = [...]Timeframe{TF1s, TF5s, TF1m, TF5m}

// String returns the timeframe as the API spells it: "1s", "5s", "1m", "5m".
func (tf Timeframe) String() string {
	if tf%60 == 0 {
		return strconv.Itoa(int(tf)/60) + "m"
	}
	return strconv.Itoa(int(tf)) + "s"
}

// ParseTimeframe parses "1s", "5s", "1m" or "5m".
func ParseTimeframe(s string) (Timeframe, error) {
	for _, tf := range Timeframes {
		if tf.String() == s {
			return tf, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrBadTimeframe, s)
}

func (tf Timeframe) index() int {
	for i, t := range Timeframes {
		if t == tf {
			return i
		}
	}
	return -1
}

// Config configures a Builder.
type Config struct {
	// Universe lists the symbols to build bars for. Required.
	Universe *feed.Universe
	// Keep is how many bars of each timeframe a symbol keeps, in the order
	// of Timeframes. Default 300 (5 min of 1 s), 360 (30 min of 5 s), 360
	// (6 h of 1 min), 288 (24 h of 5 min): at most ~63 KB per symbol,
	// allocated as bars form.
	Keep [len(Timeframes)]int
	// Trades is how many ticks of time & sales a symbol keeps. Default 50.
	Trades int
}

// Bar is one OHLC + volume bar; prices in units of 10^-scale of the symbol.
type Bar struct {
	T          int64 // start, Unix seconds
	O, H, L, C int64
	V          int64 // sum of the ticks' sizes
}

// Trade is one tick of the time & sales tape.
type Trade struct {
	TS    int64 // feed timestamp, Unix microseconds
	Seq   uint64
	Price int64
	Size  int64
	Side  int8 // +1 at the ask (buyer), -1 at the bid (seller), 0 between
}

// Stats counts what a Builder saw.
type Stats struct {
	Ticks   atomic.Uint64 // ticks applied
	Skipped atomic.Uint64 // ticks not understood (no price or size), unknown symbols, or older than the kept bars
}

// Builder holds the bars of every symbol. Add is called from one goroutine
// (the reader's); every other method is safe for concurrent use.
//
// One lock guards every symbol's bars, taken once per Add (a read's
// batch), not once per tick: a lock and an unlock per tick were two
// barriers, each waiting for the tick's stores to its bars and tape (cache
// lines cold after the milliseconds between reads) — half of the bars'
// CPU in a node's profile. Readers (a chart's request) share it.
type Builder struct {
	cfg   Config
	syms  map[string]*symbol // fixed at New: lookups take no lock
	all   []*symbol          // the same, in universe order
	mu    sync.RWMutex       // every symbol's bars, tape and seq
	gen   atomic.Uint64      // bumped by Clear
	stats Stats
}

// symbol is one symbol's bars and tape, guarded by its Builder's mu.
type symbol struct {
	name   string
	scale  int
	series [len(Timeframes)]ring[Bar]
	trades ring[Trade]
	seq    uint64 // newest seq applied
	// The second of the newest tick applied and its bars' starts, so that
	// the ticks of one second share the divisions.
	sec    int64
	starts [len(Timeframes)]int64
}

// New returns an empty builder for cfg.Universe.
func New(cfg Config) (*Builder, error) {
	if cfg.Universe == nil {
		return nil, fmt.Errorf("bars: a universe is required")
	}
	def := [...]int{300, 360, 360, 288}
	for i := range cfg.Keep {
		if cfg.Keep[i] <= 0 {
			cfg.Keep[i] = def[i]
		}
	}
	if cfg.Trades <= 0 {
		cfg.Trades = 50
	}
	b := &Builder{cfg: cfg, syms: make(map[string]*symbol, cfg.Universe.Len())}
	for _, s := range cfg.Universe.Symbols() {
		scale := 0
		if e := s.TickSize.Exponent(); e < 0 {
			scale = min(int(-e), maxScale)
		}
		st := &symbol{name: s.Name, scale: scale}
		for i := range st.series {
			st.series[i].max = cfg.Keep[i]
		}
		st.trades.max = cfg.Trades
		b.syms[s.Name] = st
		b.all = append(b.all, st)
	}
	return b, nil
}

// Stats returns the builder's counters.
func (b *Builder) Stats() *Stats { return &b.stats }

// Keep returns how many bars of tf a symbol keeps (0 for an unknown tf).
func (b *Builder) Keep(tf Timeframe) int {
	if i := tf.index(); i >= 0 {
		return b.cfg.Keep[i]
	}
	return 0
}

// Has reports whether sym is in the builder's universe.
func (b *Builder) Has(sym string) bool { _, ok := b.syms[sym]; return ok }

// Add applies ticks in stream order. A tick whose seq is not newer than
// the symbol's newest is ignored (a repeat), so Add is idempotent.
func (b *Builder) Add(batch []*feed.Update) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range batch {
		b.add(u)
	}
}

func (b *Builder) add(u *feed.Update) {
	var st *symbol
	if i := u.Index; uint(i) < uint(len(b.all)) && b.all[i].name == u.Sym {
		st = b.all[i] // the universe's place, without the map
	} else {
		st = b.syms[u.Sym]
	}
	if st == nil {
		b.stats.Skipped.Add(1)
		return
	}
	last, size, side, ok := u.Px.Last, u.Px.Size, u.Px.Side, u.Px.OK && int(u.Px.Scale) == st.scale
	if !ok {
		if last, size, side, ok = parseTrade(u.JSON, st.scale); !ok {
			b.stats.Skipped.Add(1)
			return
		}
	}
	sec := floorDiv(u.TS, 1_000_000)
	if u.Seq <= st.seq {
		return
	}
	if sec != st.sec {
		st.sec = sec
		for i, tf := range Timeframes {
			st.starts[i] = sec - mod(sec, int64(tf))
		}
	}
	st.seq = u.Seq
	applied := false
	for i := range Timeframes {
		if addTick(&st.series[i], st.starts[i], last, size) {
			applied = true
		}
	}
	st.trades.push(Trade{TS: u.TS, Seq: u.Seq, Price: last, Size: size, Side: side})
	if applied {
		b.stats.Ticks.Add(1)
	} else {
		b.stats.Skipped.Add(1)
	}
}

// parseTrade reads a tick's last price, size and side from its JSON (a
// tick the reader did not scan into numbers).
func parseTrade(js []byte, scale int) (last, size int64, side int8, ok bool) {
	last, ok1 := parsePrice(field(js, "last"), scale)
	size, err := strconv.ParseInt(string(field(js, "size")), 10, 64)
	if !ok1 || err != nil || size < 0 {
		return 0, 0, 0, false
	}
	if bid, ok := parsePrice(field(js, "bid"), scale); ok && last <= bid {
		side = -1
	} else if ask, ok := parsePrice(field(js, "ask"), scale); ok && last >= ask {
		side = 1
	}
	return last, size, side, true
}

// addTick applies one price to the bar starting at t: a new bar after the
// newest, the newest itself, or an older one still kept (a feed timestamp
// that went back). It reports false when the bar is older than those kept.
func addTick(r *ring[Bar], t, px, size int64) bool {
	if r.n == 0 || t > r.at(r.n-1).T {
		r.push(Bar{T: t, O: px, H: px, L: px, C: px, V: size})
		return true
	}
	i := r.n - 1 // nearly always the newest bar
	if r.at(i).T != t {
		i = search(r, t)
	}
	if i < 0 {
		return false
	}
	bar := r.ptr(i)
	bar.H, bar.L, bar.V = max(bar.H, px), min(bar.L, px), bar.V+size
	if i == r.n-1 {
		bar.C = px
	}
	return true
}

// search returns the index of the bar starting at t, or -1.
func search(r *ring[Bar], t int64) int {
	i := sort.Search(r.n, func(i int) bool { return r.at(i).T >= t })
	if i < r.n && r.at(i).T == t {
		return i
	}
	return -1
}

// Clear forgets every bar and trade (Redis lost its history: the node
// rebuilds from what Redis holds now) and returns the new generation, to
// pass to Merge.
func (b *Builder) Clear() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, st := range b.syms {
		for i := range st.series {
			st.series[i].reset()
		}
		st.trades.reset()
		st.seq = 0
	}
	return b.gen.Add(1)
}

// Generation returns the number of Clears so far.
func (b *Builder) Generation() uint64 { return b.gen.Load() }

// Merge adds the bars and trades of older, a builder fed with the ticks
// that precede everything b was fed since its Clear of generation gen (a
// seed read back from Redis while live ticks arrived). A bar both hold is
// combined: the open of older, the close of b. Merge does nothing if b was
// cleared again since gen. It reports whether it merged.
func (b *Builder) Merge(older *Builder, gen uint64) bool {
	for name, st := range b.syms {
		o := older.syms[name]
		if o == nil {
			continue
		}
		if !b.mergeSymbol(st, o, older, gen) {
			return false
		}
	}
	return true
}

// mergeSymbol merges o (of older) into st, unless b was cleared since
// gen. It copies o under older's lock, then merges under b's: never both
// at once, so merges in both directions (or of a builder into itself)
// cannot deadlock, and the live feed waits for one symbol's merge, not
// all.
func (b *Builder) mergeSymbol(st, o *symbol, older *Builder, gen uint64) bool {
	older.mu.RLock()
	var bars [len(Timeframes)][]Bar
	for i := range o.series {
		bars[i] = o.series[i].slice()
	}
	trades, seq := o.trades.slice(), o.seq
	older.mu.RUnlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen.Load() != gen {
		return false
	}
	for i := range st.series {
		mergeOlder(&st.series[i], bars[i])
	}
	tr := st.trades.slice()
	st.trades.reset()
	for _, t := range trades {
		st.trades.push(t)
	}
	for _, t := range tr {
		if t.Seq > seq {
			st.trades.push(t)
		}
	}
	st.seq = max(st.seq, seq)
	return true
}

// mergeOlder merges old, bars all older or equal in time, into r.
func mergeOlder(r *ring[Bar], old []Bar) {
	newer := r.slice()
	r.reset()
	j := 0
	for _, ob := range old {
		for j < len(newer) && newer[j].T < ob.T {
			r.push(newer[j])
			j++
		}
		if j < len(newer) && newer[j].T == ob.T {
			nb := newer[j]
			r.push(Bar{T: ob.T, O: ob.O, H: max(ob.H, nb.H), L: min(ob.L, nb.L), C: nb.C, V: ob.V + nb.V})
			j++
			continue
		}
		r.push(ob)
	}
	for ; j < len(newer); j++ {
		r.push(newer[j])
	}
}

// AppendBars appends the JSON array of sym's newest limit bars of tf
// (oldest first, the forming bar last) to dst:
// [{"t":1764180000,"o":"189.42","h":"189.50","l":"189.40","c":"189.45","v":1200},…]
// t is the bar's start in Unix seconds; prices are exact decimal strings.
// It also returns the seq of the newest tick the bars include, so that a
// client continuing them from a stream skips the ticks they already hold.
func (b *Builder) AppendBars(dst []byte, sym string, tf Timeframe, limit int) ([]byte, uint64, error) {
	st := b.syms[sym]
	if st == nil {
		return dst, 0, fmt.Errorf("%w: %s", ErrUnknownSymbol, sym)
	}
	i := tf.index()
	if i < 0 {
		return dst, 0, fmt.Errorf("%w: %d s", ErrBadTimeframe, int(tf))
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	r := &st.series[i]
	dst = append(dst, '[')
	for k := max(0, r.n-limit); k < r.n; k++ {
		bar := r.at(k)
		if dst[len(dst)-1] != '[' {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"t":`...)
		dst = strconv.AppendInt(dst, bar.T, 10)
		for _, p := range [...]struct {
			k string
			v int64
		}{{`,"o":"`, bar.O}, {`","h":"`, bar.H}, {`","l":"`, bar.L}, {`","c":"`, bar.C}} {
			dst = appendPrice(append(dst, p.k...), p.v, st.scale)
		}
		dst = append(dst, `","v":`...)
		dst = strconv.AppendInt(dst, bar.V, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']'), st.seq, nil
}

// AppendTrades appends the JSON array of sym's newest limit ticks (oldest
// first) to dst: [{"ts":…,"seq":…,"price":"189.43","size":200,"side":"buy"},…]
// side is "buy" for a trade at the ask, "sell" at the bid, "" between.
func (b *Builder) AppendTrades(dst []byte, sym string, limit int) ([]byte, error) {
	st := b.syms[sym]
	if st == nil {
		return dst, fmt.Errorf("%w: %s", ErrUnknownSymbol, sym)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	r := &st.trades
	dst = append(dst, '[')
	for k := max(0, r.n-limit); k < r.n; k++ {
		t := r.at(k)
		if dst[len(dst)-1] != '[' {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"ts":`...)
		dst = strconv.AppendInt(dst, t.TS, 10)
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, t.Seq, 10)
		dst = appendPrice(append(dst, `,"price":"`...), t.Price, st.scale)
		dst = append(dst, `","size":`...)
		dst = strconv.AppendInt(dst, t.Size, 10)
		dst = append(dst, `,"side":"`...)
		switch t.Side {
		case 1:
			dst = append(dst, "buy"...)
		case -1:
			dst = append(dst, "sell"...)
		}
		dst = append(dst, `"}`...)
	}
	return append(dst, ']'), nil
}

// MaxTrades returns how many trades a symbol keeps.
func (b *Builder) MaxTrades() int { return b.cfg.Trades }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }
