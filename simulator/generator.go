package simulator

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"tickstream/feed"
)

// Generator produces ticks for a universe as a Poisson process in virtual
// time. It is deterministic for a given seed, universe size and rate, and
// not safe for concurrent use.
type Generator struct {
	rng   *rand.Rand
	walks []*walk
	cum   []float64 // cumulative popularity weights, last == 1
	rate  float64   // ticks per virtual second, whole universe
	now   float64   // virtual seconds since start
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
	total := 0.0
	for i, in := range ins {
		w := newWalk(in, 1+int64(g.rng.IntN(3)))
		if t, ok := cfg.Resume[in.sym.Name]; ok {
			w.resume(t)
		}
		g.walks = append(g.walks, w)
		total += 1 / math.Pow(float64(i+1), cfg.Skew)
		g.cum = append(g.cum, total)
	}
	for i := range g.cum {
		g.cum[i] /= total
	}
	g.cum[len(g.cum)-1] = 1
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
	i := sort.SearchFloat64s(g.cum, g.rng.Float64())
	if i >= len(g.walks) {
		i = len(g.walks) - 1
	}
	return g.walks[i].step(g.rng, g.now), g.now
}
