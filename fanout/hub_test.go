package fanout

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// recSink records batches; a test reads them with batches().
type recSink struct {
	mu     sync.Mutex
	got    []Batch
	closed error
	done   bool
	slow   bool // answer ErrSlow
}

func (r *recSink) Send(b *Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *b
	c.Updates = append([]*Update(nil), b.Updates...)
	c.Marks = append([]Mark(nil), b.Marks...)
	r.got = append(r.got, c)
	if r.slow {
		return ErrSlow
	}
	return nil
}

func (r *recSink) Close(reason error) {
	r.mu.Lock()
	r.closed, r.done = reason, true
	r.mu.Unlock()
}

func (r *recSink) batches() []Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Batch(nil), r.got...)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func newTestHub(tb testing.TB, clk *fakeClock, mutate func(*Config)) *Hub {
	tb.Helper()
	cfg := Config{Symbols: []string{"A", "B", "C"}, Now: clk.Now, manualTimers: true, Writers: 2, rawLogMin: rawLogMin}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

func upd(sym string, seq uint64) *Update {
	return &Update{Sym: sym, Seq: seq, JSON: []byte(`{"sym":"` + sym + `","seq":` + strconv.FormatUint(seq, 10) + `}`)}
}

func seqs(b Batch) string {
	s := ""
	for _, u := range b.Updates {
		s += fmt.Sprintf("%s%d ", u.Sym, u.Seq)
	}
	return s
}

func wantBatches(tb testing.TB, r *recSink, want ...string) {
	tb.Helper()
	wait.For(tb, 2*time.Second, func() error {
		got := r.batches()
		if len(got) != len(want) {
			s := []string{}
			for _, b := range got {
				s = append(s, seqs(b))
			}
			return fmt.Errorf("got %d batches %q, want %q", len(got), s, want)
		}
		for i := range want {
			if seqs(got[i]) != want[i] {
				return fmt.Errorf("batch %d = %q, want %q", i, seqs(got[i]), want[i])
			}
		}
		return nil
	})
}

// settled waits until the hub is done with s for now: neither queued nor
// being written (nor idle but poked to go again), seen twice in a row. From then
// on nothing reaches its sink until the next Publish, timer or heartbeat,
// so a test can check that nothing was sent without sleeping.
func settled(tb testing.TB, s *Subscriber) {
	tb.Helper()
	seen := 0
	wait.For(tb, 2*time.Second, func() error {
		switch st := s.state.Load(); {
		case st != stIdle && st != stCooldown && st != stClosed:
			seen = 0
			return fmt.Errorf("subscriber state %d", st)
		case st == stIdle && s.poke.Load(): // about to be queued again
			seen = 0
			return fmt.Errorf("subscriber poked")
		}
		if seen++; seen < 2 {
			return fmt.Errorf("settled once")
		}
		return nil
	})
}

func TestConflation(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	h.Publish([]*Update{upd("A", 1)}, "c1")
	r := &recSink{}
	s, snap, cursor, err := h.Subscribe(Options{Symbols: []string{"A", "B"}, Interval: time.Second}, r)
	if err != nil {
		t.Fatal(err)
	}
	if snap[0].Seq != 1 || snap[1] != nil || cursor != "c1" {
		t.Fatalf("snapshot %v %v cursor %q", snap[0], snap[1], cursor)
	}
	s.Start()
	// Nothing changed since the snapshot: nothing is sent.
	settled(t, s)
	wantBatches(t, r)

	// The first change after a quiet period goes out at once.
	h.Publish([]*Update{upd("A", 2)}, "c2")
	wantBatches(t, r, "A2 ")

	// Changes inside the interval collapse into one, the newest.
	h.Publish([]*Update{upd("A", 3), upd("B", 1)}, "c3")
	h.Publish([]*Update{upd("A", 4), upd("C", 1)}, "c4")
	clk.Add(500 * time.Millisecond)
	h.fireDue(clk.Now())
	settled(t, s)
	wantBatches(t, r, "A2 ")
	clk.Add(500 * time.Millisecond)
	h.fireDue(clk.Now())
	wantBatches(t, r, "A2 ", "A4 B1 ")
	if got := r.batches()[1].Cursor; got != "c4" {
		t.Errorf("cursor = %q, want c4", got)
	}
	if got := h.Stats().Conflated.Load(); got != 1 {
		t.Errorf("conflated = %d, want 1 (A3)", got)
	}

	// An older value never replaces a newer one.
	h.Publish([]*Update{upd("A", 3)}, "c5")
	clk.Add(time.Second)
	h.fireDue(clk.Now())
	settled(t, s)
	wantBatches(t, r, "A2 ", "A4 B1 ")
	if got := h.Latest([]string{"A"})[0].Seq; got != 4 {
		t.Errorf("latest A = %d, want 4", got)
	}

	// Quiet again: the next change goes out at once.
	h.Publish([]*Update{upd("B", 2)}, "c6")
	wantBatches(t, r, "A2 ", "A4 B1 ", "B2 ")

	s.Close()
	if h.Subscribers() != 0 {
		t.Errorf("subscribers = %d after close", h.Subscribers())
	}
}

func TestRawEveryTick(t *testing.T) { eachRawPolicy(t, testRawEveryTick) }

func testRawEveryTick(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw, Interval: time.Second}, r)
	if err != nil {
		t.Fatal(err)
	}
	if s.Interval() != 0 {
		t.Errorf("raw interval = %v, want 0", s.Interval())
	}
	h.Publish([]*Update{upd("A", 1), upd("B", 1), upd("A", 2)}, "c1")
	s.Start()
	wantBatches(t, r, "A1 A2 ")
	h.Publish([]*Update{upd("A", 3)}, "c2")
	h.Publish([]*Update{upd("A", 4)}, "c3")
	wait.For(t, 2*time.Second, func() error {
		n := 0
		for _, b := range r.batches() {
			n += len(b.Updates)
		}
		if n != 4 {
			return fmt.Errorf("got %d updates, want 4", n)
		}
		return nil
	})
	last := r.batches()[len(r.batches())-1]
	if last.Cursor != "c3" {
		t.Errorf("last cursor %q, want c3", last.Cursor)
	}
}

func TestRawOverflowClosesWithCursorOfLastQueued(t *testing.T) {
	eachRawPolicy(t, testRawOverflowClosesWithCursorOfLastQueued)
}

func testRawOverflowClosesWithCursorOfLastQueued(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.RawQueue = 2 })
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	// Not started (as during a replay): the queue fills.
	h.Publish([]*Update{upd("A", 1)}, "c1")
	h.Publish([]*Update{upd("A", 2)}, "c2")
	h.Publish([]*Update{upd("A", 3)}, "c3")
	s.Start()
	wait.For(t, 2*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed != ErrOverflow {
			return fmt.Errorf("closed with %v", r.closed)
		}
		return nil
	})
	b := r.batches()
	if len(b) != 1 || !b[0].Lagging || seqs(b[0]) != "A1 A2 " || b[0].Cursor != "c2" {
		t.Fatalf("got %+v", b)
	}
	if h.Stats().Overflows.Load() != 1 {
		t.Error("overflow not counted")
	}
}

func TestSlowConsumerConflatedHarderThenDropped(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.SlowDropAfter = 3 * time.Second })
	r := &recSink{slow: true}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Interval: 100 * time.Millisecond}, r)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	seq := uint64(0)
	for i := 0; i < 100 && !func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.done }(); i++ {
		seq++
		h.Publish([]*Update{upd("A", seq)}, "c")
		settled(t, s)
		clk.Add(100 * time.Millisecond)
		h.fireDue(clk.Now())
		settled(t, s)
	}
	wait.For(t, 2*time.Second, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed != ErrSlowConsumer {
			return fmt.Errorf("closed with %v", r.closed)
		}
		return nil
	})
	b := r.batches()
	// Conflated harder: far fewer writes than the 30 a 100ms interval allows
	// in 3s.
	if len(b) > 12 {
		t.Errorf("%d writes to a slow consumer in 3s; want it conflated harder", len(b))
	}
	if len(b) < 2 || !b[1].Lagging {
		t.Errorf("second batch not flagged lagging: %+v", b)
	}
	if h.Stats().SlowDrops.Load() != 1 {
		t.Error("slow drop not counted")
	}
}

func TestResetResyncs(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	h.Publish([]*Update{upd("A", 50)}, "c1")
	r := &recSink{}
	s, _, _, _ := h.Subscribe(Options{Symbols: []string{"A"}}, r)
	s.Start()
	h.Reset([]*Update{upd("A", 1)}, "new")
	wait.For(t, 2*time.Second, func() error {
		b := r.batches()
		if len(b) != 1 || !b[0].Resync || seqs(b[0]) != "A1 " {
			return fmt.Errorf("got %+v", b)
		}
		return nil
	})
	h.Publish([]*Update{upd("A", 2)}, "c2")
	wantBatches(t, r, "A1 ", "A2 ")
}

func TestSubscribeErrors(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.MaxSubscribers = 1 })
	if _, _, _, err := h.Subscribe(Options{Symbols: []string{"ZZZ"}}, &recSink{}); err == nil {
		t.Error("unknown symbol accepted")
	}
	if _, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Interval: -1}, &recSink{}); err == nil {
		t.Error("negative interval accepted")
	}
	if _, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, &recSink{}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, &recSink{}); err != ErrTooManySubscribers {
		t.Errorf("over limit: %v", err)
	}
	if got, _ := h.Grant(time.Hour); got != h.Config().MaxInterval {
		t.Errorf("grant 1h = %v", got)
	}
}

func TestHeartbeatAndDrain(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	r := &recSink{}
	s, _, _, _ := h.Subscribe(Options{Symbols: []string{"A"}}, r)
	s.Start()
	settled(t, s)
	h.heartbeats(clk.Add(16 * time.Second))
	wait.For(t, time.Second, func() error {
		if b := r.batches(); len(b) != 1 || !b[0].Heartbeat {
			return fmt.Errorf("got %+v", b)
		}
		return nil
	})
	if err := h.Drain(t.Context(), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if r.closed != ErrDraining {
		t.Errorf("closed with %v", r.closed)
	}
	if _, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, &recSink{}); err != ErrDraining {
		t.Errorf("subscribe while draining: %v", err)
	}
}

func TestChangeSymbolsAndInterval(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	h.Publish([]*Update{upd("A", 1), upd("B", 7)}, "c1")
	r := &recSink{}
	s, _, _, _ := h.Subscribe(Options{Symbols: []string{"A"}, Interval: time.Second}, r)
	s.Start()
	h.Publish([]*Update{upd("A", 2)}, "c2")
	wantBatches(t, r, "A2 ")
	// In the middle of the interval: B's snapshot goes out at once, A's
	// change (A3) with it since the batch is written anyway.
	h.Publish([]*Update{upd("A", 3)}, "c3")
	if got, err := s.Change([]string{"A", "B"}, 2*time.Second); err != nil || got != 2*time.Second {
		t.Fatal(got, err)
	}
	wantBatches(t, r, "A2 ", "A3 B7 ")
	// Unsubscribe A: its changes no longer arrive.
	if _, err := s.Change([]string{"B"}, time.Second); err != nil {
		t.Fatal(err)
	}
	h.Publish([]*Update{upd("A", 4), upd("B", 8)}, "c4")
	clk.Add(3 * time.Second)
	h.fireDue(clk.Now())
	wantBatches(t, r, "A2 ", "A3 B7 ", "B8 ")
	if _, err := s.Change([]string{"NOPE"}, time.Second); err == nil {
		t.Error("unknown symbol accepted")
	}
}

func TestChangeRaw(t *testing.T) { eachRawPolicy(t, testChangeRaw) }

func testChangeRaw(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	h.Publish([]*Update{upd("A", 1), upd("B", 5)}, "c1")
	r := &recSink{}
	s, _, _, _ := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	s.Start()
	h.Publish([]*Update{upd("A", 2)}, "c2")
	wantBatches(t, r, "A2 ")
	if _, err := s.Change([]string{"A", "B"}, 0); err != nil {
		t.Fatal(err)
	}
	wantBatches(t, r, "A2 ", "B5 ")
	h.Publish([]*Update{upd("A", 3), upd("B", 6)}, "c3")
	wantBatches(t, r, "A2 ", "B5 ", "A3 B6 ")
}

func TestRawGapIsAResync(t *testing.T) { eachRawPolicy(t, testRawGapIsAResync) }

func testRawGapIsAResync(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	h.Publish([]*Update{upd("A", 1), upd("B", 1)}, "c1")
	r := &recSink{}
	s, _, _, _ := h.Subscribe(Options{Symbols: []string{"A", "B"}, Mode: Raw}, r)
	s.Start()
	h.Publish([]*Update{upd("A", 2)}, "c2")
	wantBatches(t, r, "A2 ")
	h.Publish([]*Update{upd("A", 5)}, "c3") // 3 and 4 were lost upstream
	// A resync with the current value of every symbol.
	wantBatches(t, r, "A2 ", "A5 B1 ")
	if b := r.batches(); b[0].Resync || !b[1].Resync {
		t.Errorf("resync flags %v %v, want false true", b[0].Resync, b[1].Resync)
	}
	if h.Stats().Gaps.Load() != 1 {
		t.Error("gap not counted")
	}
}

// TestTightestFollowsSubscribers: the hub reports the shortest interval
// among its subscribers (the node paces its reads of the feed by it) as
// they come, change and go.
func TestTightestFollowsSubscribers(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	want := func(d time.Duration, any bool) {
		t.Helper()
		wait.For(t, 5*time.Second, func() error {
			if got, ok := h.Tightest(); got != d || ok != any {
				return fmt.Errorf("Tightest() = %v, %v; want %v, %v", got, ok, d, any)
			}
			return nil
		})
	}
	want(0, false)
	slow, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Interval: time.Second}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	slow.Start()
	want(time.Second, true)
	fast, _, _, err := h.Subscribe(Options{Symbols: []string{"B"}, Interval: 250 * time.Millisecond}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	fast.Start()
	want(250*time.Millisecond, true)
	raw, _, _, err := h.Subscribe(Options{Symbols: []string{"C"}, Mode: Raw}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	raw.Start()
	want(0, true)
	raw.Close()
	want(250*time.Millisecond, true)
	// A change is applied by the writer serving the subscriber.
	if _, err := fast.Change([]string{"B"}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	want(time.Second, true)
	slow.Close()
	want(2*time.Second, true)
	fast.Close()
	fast.Close() // twice: counted once
	want(0, false)
}
