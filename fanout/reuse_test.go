package fanout

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// ownSink verifies at Send time that every update's JSON is its own
// (sym and seq as encoded by the source), that raw delivery has no hole
// and never goes back, and records the newest seq per symbol.
type ownSink struct {
	mu     sync.Mutex
	raw    bool
	last   map[string]uint64
	bad    error
	closed error
	shut   bool
}

func newOwnSink(raw bool) *ownSink { return &ownSink{raw: raw, last: map[string]uint64{}} }

func (c *ownSink) Send(b *Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.Resync {
		clear(c.last)
	}
	for _, u := range b.Updates {
		want := sourceJSON(u.Sym, u.Seq)
		if string(u.JSON) != want && c.bad == nil {
			c.bad = fmt.Errorf("update %s/%d carries %q", u.Sym, u.Seq, u.JSON)
		}
		prev, ok := c.last[u.Sym]
		switch {
		case ok && u.Seq <= prev && c.bad == nil:
			c.bad = fmt.Errorf("%s seq %d after %d", u.Sym, u.Seq, prev)
		case c.raw && ok && u.Seq != prev+1 && c.bad == nil && !b.Resync:
			c.bad = fmt.Errorf("raw %s seq %d after %d (a hole)", u.Sym, u.Seq, prev)
		}
		c.last[u.Sym] = max(prev, u.Seq)
	}
	return nil
}

func (c *ownSink) Close(reason error) {
	c.mu.Lock()
	c.closed, c.shut = reason, true
	c.mu.Unlock()
}

func sourceJSON(sym string, seq uint64) string {
	return `{"sym":"` + sym + `","seq":` + strconv.FormatUint(seq, 10) + `,"pad":"0123456789"}`
}

// TestSourceReusingItsUpdatesNeverShowsThrough guards the hub's copy of what
// it is published: a source that overwrites its updates and their bytes as
// soon as Publish returns (as the reader does) never shows through to a
// subscriber, whatever joins, leaves or changes meanwhile (raw of a few
// symbols: own queue; raw of most: the shared log; Change between the two;
// conflated of every symbol at interval 0 and 5ms), and every subscriber ends
// with the newest value of each of its symbols.
func TestSourceReusingItsUpdatesNeverShowsThrough(t *testing.T) {
	var syms []string
	for i := range 16 {
		syms = append(syms, fmt.Sprintf("S%02d", i))
	}
	h, err := New(Config{Symbols: syms, Writers: 2, Resolution: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	type live struct {
		s    *Subscriber
		sink *ownSink
		syms []string
	}
	var (
		mu   sync.Mutex
		subs []live
	)
	add := func(o Options) live {
		sink := newOwnSink(o.Mode == Raw)
		s, snap, _, err := h.Subscribe(o, sink)
		if err != nil {
			panic(err) // from the churn goroutine too: never expected
		}
		for _, u := range snap {
			if u != nil {
				sink.mu.Lock()
				if string(u.JSON) != sourceJSON(u.Sym, u.Seq) {
					sink.bad = fmt.Errorf("snapshot %s/%d carries %q", u.Sym, u.Seq, u.JSON)
				}
				sink.last[u.Sym] = u.Seq
				sink.mu.Unlock()
			}
		}
		s.Start()
		l := live{s, sink, o.Symbols}
		mu.Lock()
		subs = append(subs, l)
		mu.Unlock()
		return l
	}
	add(Options{Symbols: syms, Interval: 0})
	add(Options{Symbols: syms, Interval: 5 * time.Millisecond})

	// The source: one scratch of updates and one byte buffer, reused.
	seq := map[string]uint64{}
	scratch := make([]Update, 600)
	buf := make([]byte, 0, 600*64)
	batch := make([]*Update, 0, 600)
	publishOne := func(n int, rng *rand.Rand) {
		batch, buf = batch[:0], buf[:0]
		for i := range n {
			sym := syms[rng.IntN(len(syms))]
			if rng.IntN(3) == 0 {
				sym = syms[0] // a hot symbol: several ticks per batch
			}
			seq[sym]++
			start := len(buf)
			buf = append(buf, sourceJSON(sym, seq[sym])...)
			scratch[i] = Update{Sym: sym, Seq: seq[sym], JSON: buf[start:len(buf):len(buf)]}
			batch = append(batch, &scratch[i])
		}
		h.Publish(batch, "c"+strconv.Itoa(rng.Int()))
		// What the reader does next: the scratch and the reply are reused.
		for i := range buf {
			buf[i] = 'X'
		}
		for i := range n {
			scratch[i] = Update{Sym: "S00", Seq: 1 << 60, JSON: buf[:0]}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // churn: raw subscribers come, change and go
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			few := syms[:2+rng.IntN(3)]
			l := add(Options{Symbols: few, Mode: Raw})
			all := add(Options{Symbols: syms, Mode: Raw})
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			if _, err := l.s.Change(syms[:12], 0); err != nil { // own queue -> log
				t.Error(err)
			}
			if _, err := all.s.Change(syms[:3], 0); err != nil { // log -> own queue
				t.Error(err)
			}
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			if i%3 != 0 {
				l.s.Close()
				all.s.Close()
			}
		}
	}()
	rng := rand.New(rand.NewPCG(3, 4))
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		publishOne(1+rng.IntN(100), rng)
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// One last tick of every symbol, then everyone must hold the newest.
	batch, buf = batch[:0], buf[:0]
	for i, sym := range syms {
		seq[sym]++
		start := len(buf)
		buf = append(buf, sourceJSON(sym, seq[sym])...)
		scratch[i] = Update{Sym: sym, Seq: seq[sym], JSON: buf[start:len(buf):len(buf)]}
		batch = append(batch, &scratch[i])
	}
	h.Publish(batch, "end")
	for i := range buf {
		buf[i] = 'X'
	}
	mu.Lock()
	final := append([]live(nil), subs...)
	mu.Unlock()
	open := 0
	for k, l := range final {
		l.sink.mu.Lock()
		bad, shut, why := l.sink.bad, l.sink.shut, l.sink.closed
		l.sink.mu.Unlock()
		if bad != nil {
			t.Errorf("subscriber %d: %v", k, bad)
		}
		if shut {
			if why != nil {
				t.Logf("subscriber %d closed: %v", k, why)
			}
			continue
		}
		open++
		wait.For(t, 10*time.Second, func() error {
			l.sink.mu.Lock()
			defer l.sink.mu.Unlock()
			if l.sink.shut {
				return nil
			}
			for _, sym := range l.s.symbols() {
				if got := l.sink.last[sym.name]; got != seq[sym.name] {
					return fmt.Errorf("subscriber %d: %s at %d, want %d", k, sym.name, got, seq[sym.name])
				}
			}
			return nil
		})
	}
	t.Logf("%d subscribers, %d open at the end", len(final), open)
}
