package simulator

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tickstream/tickstream/feed"
)

// Generator produces ticks for a universe as a Poisson process in virtual
// time. It is deterministic for a given seed, universe size and rate, and
// not safe for concurrent use.
type Generator struct {
	rng   *rand.Rand
	walks []*walk
	pick  alias   // draws a walk by its popularity
	rate  float64 // ticks per virtual second, whole universe
	now   float64 // virtual seconds since start
}

// GeneratorConfig configures a Generator.
type GeneratorConfig struct {
	// Symbols is the universe size: the default universe, padded with
	// synthetic symbols if larger. 0 means the default universe.
	Symbols int
	// Rate is the mean number of ticks per second across the universe.
	// Default 1000.
	Rate float64
	// Seed makes the sequence reproducible. Default 1.
	Seed uint64
	// Skew is the Zipf exponent of symbol popularity: 0 spreads ticks evenly,
	// 1.1 (the default) gives a few hot symbols most of the ticks.
	Skew float64
	// Resume holds the last published tick of some symbols; their walks
	// continue from its price and sequence number.
	Resume map[string]feed.Tick
}

// NewGenerator returns a generator for cfg.
func NewGenerator(cfg GeneratorConfig) (*Generator, error) {
	if cfg.Rate == 0 {
		cfg.Rate = 1000
	}
	if cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0) {
		return nil, fmt.Errorf("simulator: rate %v must be positive", cfg.Rate)
	}
	if cfg.Symbols < 0 {
		return nil, fmt.Errorf("simulator: symbols %d must not be negative", cfg.Symbols)
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Skew == 0 {
		cfg.Skew = 1.1
	}
	ins := instruments(cfg.Symbols)
	g := &Generator{
		rng:  rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		rate: cfg.Rate,
	}
	weights := make([]float64, len(ins))
	for i, in := range ins {
		w := newWalk(in, 1+int64(g.rng.IntN(3)))
		if t, ok := cfg.Resume[in.sym.Name]; ok {
			w.resume(t)
		}
		g.walks = append(g.walks, w)
		weights[i] = 1 / math.Pow(float64(i+1), cfg.Skew)
	}
	g.pick = newAlias(weights)
	return g, nil
}

// Now returns the virtual time in seconds.
func (g *Generator) Now() float64 { return g.now }

// SkipTo moves virtual time forward to t without emitting ticks, for a
// publisher that fell behind the wall clock.
func (g *Generator) SkipTo(t float64) {
	if t > g.now {
		g.now = t
	}
}

// next draws the virtual time of the next arrival.
func (g *Generator) next() float64 { return g.now + g.rng.ExpFloat64()/g.rate }

// Next emits the next tick and the virtual time at which it happens. The
// tick's TS is left zero for the caller to stamp.
func (g *Generator) Next() (feed.Tick, float64) {
	r, at := g.nextRaw()
	return r.tick(), at
}

// nextRaw is Next with the tick's prices in ticks.
func (g *Generator) nextRaw() (rawTick, float64) {
	g.now = g.next()
	return g.walks[g.pick.draw(g.rng)].step(g.rng, g.now), g.now
}

// alias draws an index with probability proportional to its weight in
// O(1) (Vose's alias method): one uniform draw picks a column and decides
// between the column's own index and its alias. A binary search of the
// cumulative weights cost ~9 dependent, cache-missing loads a tick.
type alias struct {
	prob  []float64 // the chance of keeping column i
	alias []int32   // the index drawn otherwise
}

// newAlias builds the table for weights (all > 0).
func newAlias(weights []float64) alias {
	n := len(weights)
	a := alias{prob: make([]float64, n), alias: make([]int32, n)}
	total := 0.0
	for _, w := range weights {
		total += w
	}
	scaled := make([]float64, n)
	var small, large []int32
	for i, w := range weights {
		scaled[i] = w * float64(n) / total
		if scaled[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		a.prob[s], a.alias[s] = scaled[s], l
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large, small = large[:len(large)-1], append(small, l)
		}
	}
	// What is left is 1 up to rounding: always kept.
	for _, i := range append(small, large...) {
		a.prob[i], a.alias[i] = 1, i
	}
	return a
}

// draw returns an index drawn by the weights.
func (a *alias) draw(rng *rand.Rand) int {
	u := rng.Float64() * float64(len(a.prob))
	i := min(int(u), len(a.prob)-1)
	if u-float64(i) < a.prob[i] {
		return i
	}
	return int(a.alias[i])
}
