package simulator

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
)

func TestGeneratorInvariants(t *testing.T) {
	g, err := NewGenerator(GeneratorConfig{Rate: 50_000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	u := Universe(0)
	seq := map[string]uint64{}
	count := map[string]int{}
	prev := 0.0
	for i := 0; i < 200_000; i++ {
		tk, at := g.Next()
		if at < prev {
			t.Fatalf("time went back: %v < %v", at, prev)
		}
		prev = at
		sym, ok := u.Lookup(tk.Sym)
		if !ok {
			t.Fatalf("tick of unknown symbol %s", tk.Sym)
		}
		if !tk.Bid.IsPositive() || !tk.Bid.LessThan(tk.Ask) {
			t.Fatalf("%s: bid %s ask %s", tk.Sym, tk.Bid, tk.Ask)
		}
		if !tk.Bid.Mod(sym.TickSize).IsZero() || !tk.Ask.Mod(sym.TickSize).IsZero() || !tk.Last.Mod(sym.TickSize).IsZero() {
			t.Fatalf("%s off the %s grid: %s %s %s", tk.Sym, sym.TickSize, tk.Bid, tk.Ask, tk.Last)
		}
		if tk.Last.LessThan(tk.Bid) || tk.Last.GreaterThan(tk.Ask) {
			t.Fatalf("%s last %s outside %s..%s", tk.Sym, tk.Last, tk.Bid, tk.Ask)
		}
		if tk.Seq != seq[tk.Sym]+1 {
			t.Fatalf("%s seq %d after %d", tk.Sym, tk.Seq, seq[tk.Sym])
		}
		seq[tk.Sym] = tk.Seq
		count[tk.Sym]++
	}
	// Poisson arrivals at the asked rate: 200k ticks take about 4s.
	if prev < 3.8 || prev > 4.2 {
		t.Errorf("200k ticks at 50k/s took %.2f virtual s", prev)
	}
	// Skewed popularity: the hottest symbol carries far more than the median.
	var counts []int
	for _, c := range count {
		counts = append(counts, c)
	}
	sort.Ints(counts)
	if hot, med := counts[len(counts)-1], counts[len(counts)/2]; hot < 20*med {
		t.Errorf("hottest symbol %d ticks, median %d: not skewed", hot, med)
	}
	if len(count) < u.Len()*9/10 {
		t.Errorf("only %d of %d symbols ticked", len(count), u.Len())
	}
}

func TestGeneratorIsDeterministic(t *testing.T) {
	run := func() []string {
		g, _ := NewGenerator(GeneratorConfig{Rate: 1000, Seed: 42, Symbols: 150})
		var out []string
		for range 2000 {
			tk, _ := g.Next()
			out = append(out, string(tk.AppendJSON(nil)))
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("tick %d differs:\n%s\n%s", i, a[i], b[i])
		}
	}
	g, _ := NewGenerator(GeneratorConfig{Rate: 1000, Seed: 43, Symbols: 150})
	tk, _ := g.Next()
	if string(tk.AppendJSON(nil)) == a[0] {
		t.Error("another seed gave the same first tick")
	}
}

func TestUniverse(t *testing.T) {
	u := Universe(0)
	if u.Len() < 100 {
		t.Fatalf("default universe has %d symbols", u.Len())
	}
	classes := map[string]int{}
	for _, s := range u.Symbols() {
		classes[s.Class]++
	}
	for _, c := range []string{feed.ClassEquity, feed.ClassFX, feed.ClassCrypto, feed.ClassETF} {
		if classes[c] == 0 {
			t.Errorf("no %s in the universe", c)
		}
	}
	if s, _ := u.Lookup("EURUSD"); s.TickSize.String() != "0.00001" {
		t.Errorf("EURUSD tick size %s", s.TickSize)
	}
	if Universe(500).Len() != 500 {
		t.Error("padded universe size")
	}
}

func TestGeneratorResumes(t *testing.T) {
	g, _ := NewGenerator(GeneratorConfig{Seed: 1})
	var last feed.Tick
	for last.Sym != "AAPL" {
		last, _ = g.Next()
	}
	g2, _ := NewGenerator(GeneratorConfig{Seed: 2, Resume: map[string]feed.Tick{"AAPL": last}})
	for {
		tk, _ := g2.Next()
		if tk.Sym == "AAPL" {
			if tk.Seq != last.Seq+1 {
				t.Errorf("resumed seq %d after %d", tk.Seq, last.Seq)
			}
			// The walk continues from the resumed price (within 1%).
			if d := tk.Bid.Sub(last.Bid).Abs(); d.GreaterThan(last.Bid.Div(decimal.NewFromInt(100))) {
				t.Errorf("resumed bid %s far from %s", tk.Bid, last.Bid)
			}
			return
		}
	}
}

// countingPub records published ticks.
type countingPub struct {
	mu sync.Mutex
	n  int
}

func (p *countingPub) Publish(_ context.Context, ts []feed.Tick) error {
	p.mu.Lock()
	p.n += len(ts)
	p.mu.Unlock()
	return nil
}

func TestRunHoldsTheRate(t *testing.T) {
	pub := &countingPub{}
	sim, err := New(Config{GeneratorConfig: GeneratorConfig{Rate: 20_000}}, pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := sim.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// No timing assertion on a shared machine beyond sanity: it published.
	if pub.n == 0 || sim.Published() != uint64(pub.n) {
		t.Errorf("published %d, counted %d", pub.n, sim.Published())
	}
}

// TestOwnThreadPacesAndYields: a simulator pacing itself on its thread
// (OwnThread, GOMAXPROCS 1 as simulate --procs 1 runs it) publishes, lets
// the process's other goroutines run (one waiting on a timer makes
// progress), and stops when its context is cancelled.
func TestOwnThreadPacesAndYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, window := range []time.Duration{2 * time.Millisecond, 50 * time.Millisecond} {
		t.Run(window.String(), func(t *testing.T) {
			pub := &countingPub{}
			sim, err := New(Config{GeneratorConfig: GeneratorConfig{Rate: 20_000}, Window: window, OwnThread: true}, pub)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- sim.Run(ctx) }()
			// Another goroutine's timer fires 20 times while it runs, and
			// the simulator publishes meanwhile.
			tk := time.NewTicker(time.Millisecond)
			defer tk.Stop()
			for range 20 {
				select {
				case <-tk.C:
				case err := <-done:
					t.Fatalf("Run returned early: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("a timer of another goroutine starved while the simulator ran")
				}
			}
			for sim.Published() == 0 {
				select {
				case <-tk.C:
				case <-time.After(10 * time.Second):
					t.Fatal("nothing published in 10 s")
				}
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not stop after its context was cancelled")
			}
			pub.mu.Lock()
			defer pub.mu.Unlock()
			if sim.Published() != uint64(pub.n) {
				t.Errorf("published %d, counted %d", pub.n, sim.Published())
			}
		})
	}
}

// TestSessionReference: every symbol has a previous close and a session
// open on its tick grid, the same on every call; ticks carry the session's
// volume (the sum of sizes), high and low, and a resumed walk continues them.
func TestSessionReference(t *testing.T) {
	a, b := Universe(300), Universe(300)
	for i, s := range a.Symbols() {
		if !s.PrevClose.IsPositive() || !s.Open.IsPositive() {
			t.Fatalf("%s: prev close %s, open %s", s.Name, s.PrevClose, s.Open)
		}
		if !s.PrevClose.Mod(s.TickSize).IsZero() || !s.Open.Mod(s.TickSize).IsZero() {
			t.Errorf("%s: reference off the %s grid: %s %s", s.Name, s.TickSize, s.PrevClose, s.Open)
		}
		if o := b.Symbols()[i]; !o.PrevClose.Equal(s.PrevClose) || !o.Open.Equal(s.Open) {
			t.Errorf("%s: reference not deterministic", s.Name)
		}
	}
	g, _ := NewGenerator(GeneratorConfig{Seed: 4})
	vol := map[string]int64{}
	var last feed.Tick
	for range 5000 {
		tk, _ := g.Next()
		vol[tk.Sym] += tk.Size
		if tk.Vol != vol[tk.Sym] {
			t.Fatalf("%s vol %d, sum of sizes %d", tk.Sym, tk.Vol, vol[tk.Sym])
		}
		if tk.Last.GreaterThan(tk.High) || tk.Last.LessThan(tk.Low) {
			t.Fatalf("%s last %s outside [%s, %s]", tk.Sym, tk.Last, tk.Low, tk.High)
		}
		if tk.Sym == "AAPL" {
			last = tk
		}
	}
	g2, _ := NewGenerator(GeneratorConfig{Seed: 5, Resume: map[string]feed.Tick{"AAPL": last}})
	for {
		tk, _ := g2.Next()
		if tk.Sym != "AAPL" {
			continue
		}
		if tk.Vol != last.Vol+tk.Size || tk.High.LessThan(last.High) || tk.Low.GreaterThan(last.Low) {
			t.Errorf("resumed session %d %s %s after %d %s %s", tk.Vol, tk.High, tk.Low, last.Vol, last.High, last.Low)
		}
		break
	}
}

// The alias table draws each index with its weight's share: checked
// exactly on the table (each column's kept and aliased mass) and by a
// million draws within 1% of the hot symbol's share.
func TestAliasDrawsByWeight(t *testing.T) {
	for _, weights := range [][]float64{{1}, {1, 1}, {5, 1, 1, 3}, zipf(500, 1.1), zipf(3, 0)} {
		a := newAlias(weights)
		total := 0.0
		for _, w := range weights {
			total += w
		}
		n := float64(len(weights))
		mass := make([]float64, len(weights))
		for i := range weights {
			mass[i] += a.prob[i] / n
			mass[a.alias[i]] += (1 - a.prob[i]) / n
		}
		for i, w := range weights {
			if math.Abs(mass[i]-w/total) > 1e-9 {
				t.Errorf("%d weights: index %d drawn with %.6f, want %.6f", len(weights), i, mass[i], w/total)
			}
		}
	}
	weights := zipf(500, 1.1)
	a := newAlias(weights)
	rng := rand.New(rand.NewPCG(1, 2))
	const draws = 1_000_000
	hits := make([]int, len(weights))
	for range draws {
		hits[a.draw(rng)]++
	}
	total := 0.0
	for _, w := range weights {
		total += w
	}
	if got, want := float64(hits[0])/draws, weights[0]/total; math.Abs(got-want) > 0.01*want {
		t.Errorf("the hottest symbol drawn %.4f of the time, want %.4f", got, want)
	}
}

func zipf(n int, skew float64) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), skew)
	}
	return w
}

// TestAliasKeepsExactMassesForDegenerateWeights guards the alias table's
// exact masses (each column's kept and aliased share) for weights where
// Vose's method slips if done wrong: one weight, all equal, a weight of
// 1e-300 or a denormal beside 1 (a tiny weight left over at the end must not
// be kept with 1/n), weights whose sum is tiny, and 100,000 Zipf weights; and
// every alias is in range.
func TestAliasKeepsExactMassesForDegenerateWeights(t *testing.T) {
	equal := make([]float64, 1000)
	for i := range equal {
		equal[i] = 0.1
	}
	for _, weights := range [][]float64{
		{1}, {1e-300}, equal, {1, 1e-300, 1e-300, 1e-300}, {1e-300, 1e-300, 1},
		{5e-324, 1e-320, 1}, {1e-300, 2e-300, 3e-300}, zipf(100_000, 1.1), zipf(4096, 50),
	} {
		a := newAlias(weights)
		n := float64(len(weights))
		total := 0.0
		for _, w := range weights {
			total += w
		}
		mass := make([]float64, len(weights))
		for i := range weights {
			if j := a.alias[i]; j < 0 || int(j) >= len(weights) || !(a.prob[i] >= 0 && a.prob[i] <= 1) {
				t.Fatalf("%d weights: column %d keeps %v, alias %d", len(weights), i, a.prob[i], j)
			}
			mass[i] += a.prob[i] / n
			mass[a.alias[i]] += (1 - a.prob[i]) / n
		}
		for i, w := range weights {
			if want := w / total; math.Abs(mass[i]-want) > 1e-9*want && math.Abs(mass[i]-want) > 1e-15 {
				t.Errorf("%d weights: index %d (weight %g) drawn with %g, want %g", len(weights), i, w, mass[i], want)
			}
		}
	}
}
