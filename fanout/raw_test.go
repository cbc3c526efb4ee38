package fanout

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// A raw subscriber that fell behind gets its backlog in writes of at most
// RawBatchBytes, each cut at a published batch and carrying that batch's
// exact cursor.
func TestRawBatchBytesCutsAtPublishedBatches(t *testing.T) {
	eachRawPolicy(t, testRawBatchBytesCutsAtPublishedBatches)
}

func testRawBatchBytesCutsAtPublishedBatches(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.RawBatchBytes = 100 })
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	// Not started (as during a replay): three batches of two ticks, ~70
	// bytes each.
	h.Publish([]*Update{upd("A", 1), upd("A", 2)}, "c1")
	h.Publish([]*Update{upd("A", 3), upd("A", 4)}, "c2")
	h.Publish([]*Update{upd("A", 5), upd("A", 6)}, "c3")
	s.Start()
	wantBatches(t, r, "A1 A2 ", "A3 A4 ", "A5 A6 ")
	for i, b := range r.batches() {
		if want := fmt.Sprintf("c%d", i+1); b.Cursor != want {
			t.Errorf("write %d cursor %q, want %q", i, b.Cursor, want)
		}
	}
}

// One published batch larger than RawBatchBytes still goes out whole (its
// cursor is the only exact one).
func TestRawBatchBytesTakesAtLeastOneBatch(t *testing.T) {
	eachRawPolicy(t, testRawBatchBytesTakesAtLeastOneBatch)
}

func testRawBatchBytesTakesAtLeastOneBatch(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.RawBatchBytes = 10 })
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish([]*Update{upd("A", 1), upd("A", 2), upd("A", 3)}, "c1")
	s.Start()
	wantBatches(t, r, "A1 A2 A3 ")
}

// A raw subscriber whose socket stays full and whose queue overflows is
// closed as soon as the hub looks at it again, not after SlowDropAfter: it
// cannot be conflated, and what it owes would only grow.
func TestSlowRawOverflowDropsAtOnce(t *testing.T) { eachRawPolicy(t, testSlowRawOverflowDropsAtOnce) }

func testSlowRawOverflowDropsAtOnce(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.RawQueue = 4 })
	r := &recSink{slow: true}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	h.Publish([]*Update{upd("A", 1)}, "c1")
	wait.For(t, 2*time.Second, func() error {
		if len(r.batches()) == 0 {
			return errors.New("no write yet")
		}
		return nil
	})
	for i := uint64(2); i < 10; i++ {
		h.Publish([]*Update{upd("A", i)}, fmt.Sprintf("c%d", i))
	}
	start := clk.Now()
	wait.For(t, 2*time.Second, func() error {
		clk.Add(200 * time.Millisecond)
		h.fireDue(clk.Now())
		r.mu.Lock()
		defer r.mu.Unlock()
		if !errors.Is(r.closed, ErrOverflow) {
			return fmt.Errorf("closed with %v", r.closed)
		}
		return nil
	})
	if h.Stats().Overflows.Load() != 1 {
		t.Error("overflow not counted")
	}
	if d := clk.Now().Sub(start); d >= h.Config().SlowDropAfter {
		t.Errorf("closed after %v of hub time, want before SlowDropAfter", d)
	}
}

// Raw subscribers join and leave a symbol in any order; every one still
// registered gets every tick, and none that left gets any.
func TestRawRegistrationsInAnyOrder(t *testing.T) { eachRawPolicy(t, testRawRegistrationsInAnyOrder) }

func testRawRegistrationsInAnyOrder(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	var subs []*Subscriber
	var sinks []*recSink
	for range 20 {
		r := &recSink{}
		s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B"}, Mode: Raw}, r)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		subs, sinks = append(subs, s), append(sinks, r)
	}
	for _, i := range []int{0, 19, 7, 8, 3} {
		subs[i].Close()
	}
	h.Publish([]*Update{upd("A", 1), upd("B", 1)}, "c1")
	gone := map[int]bool{0: true, 19: true, 7: true, 8: true, 3: true}
	for i, r := range sinks {
		if gone[i] {
			continue
		}
		wantBatches(t, r, "A1 B1 ")
	}
	for i := range gone {
		if n := len(sinks[i].batches()); n != 0 {
			t.Errorf("closed subscriber %d got %d writes", i, n)
		}
	}
	if rawLogMin == 1 {
		if len(h.logSubs) != 15 {
			t.Errorf("%d subscribers read the log, want 15", len(h.logSubs))
		}
		return
	}
	for _, name := range []string{"A", "B"} {
		if st := h.syms[name]; len(st.raw) != 15 {
			t.Errorf("%s has %d raw subscribers, want 15", st.name, len(st.raw))
		}
	}
}

// A write of several published batches says where each ends, with its
// cursor, so the transport can attach every one.
func TestRawBatchCarriesItsMarks(t *testing.T) { eachRawPolicy(t, testRawBatchCarriesItsMarks) }

func testRawBatchCarriesItsMarks(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish([]*Update{upd("A", 1), upd("A", 2)}, "c1")
	h.Publish([]*Update{upd("A", 3)}, "c2")
	s.Start()
	wantBatches(t, r, "A1 A2 A3 ")
	b := r.batches()[0]
	if len(b.Marks) != 2 || b.Marks[0] != (Mark{End: 2, Cursor: "c1"}) || b.Marks[1] != (Mark{End: 3, Cursor: "c2"}) || b.Cursor != "c2" {
		t.Fatalf("marks %+v cursor %q, want [{2 c1} {3 c2}] c2", b.Marks, b.Cursor)
	}
}

// Unsubscribing a symbol from a raw subscriber with a backlog keeps the
// backlog's commit marks, each counting only what stays.
func TestKeepRawRecountsMarks(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	s := &Subscriber{hub: h}
	s.rawQ = []*Update{upd("A", 1), upd("B", 1), upd("A", 2), upd("B", 2), upd("B", 3)}
	s.rawMarks = []rawMark{{2, "c1"}, {4, "c2"}, {5, "c3"}}
	s.keepRaw(map[*symState]bool{h.syms["A"]: true})
	if got := seqs(Batch{Updates: s.rawQ}); got != "A1 A2 " {
		t.Fatalf("queue %q", got)
	}
	// c1 after A1; c2 after A2; c3 commits nothing new: it replaces c2.
	if want := []rawMark{{1, "c1"}, {2, "c3"}}; fmt.Sprint(s.rawMarks) != fmt.Sprint(want) {
		t.Fatalf("marks %v, want %v", s.rawMarks, want)
	}
}

// rawLogMin is the hub's rawLogMin in the test that runs (eachRawPolicy).
var rawLogMin int

// eachRawPolicy runs a raw test twice: every raw subscriber keeping its own
// queue, then every one reading the shared log.
func eachRawPolicy(t *testing.T, test func(*testing.T)) {
	for _, p := range []struct {
		name string
		min  int
	}{{"queue", 1 << 30}, {"log", 1}} {
		t.Run(p.name, func(t *testing.T) {
			rawLogMin = p.min
			defer func() { rawLogMin = 0 }()
			test(t)
		})
	}
}

// A subscriber of some symbols reading the log skips the others' ticks, and
// a published batch with none of its ticks still moves its cursor on.
func TestRawLogFiltersAndCommitsEmptyBatches(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.rawLogMin = 1 })
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "C"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish([]*Update{upd("B", 1)}, "c1")
	h.Publish([]*Update{upd("A", 1), upd("B", 2)}, "c2")
	h.Publish([]*Update{upd("B", 3)}, "c3")
	h.Publish([]*Update{upd("C", 1)}, "c4")
	h.Publish([]*Update{upd("B", 4)}, "c5")
	s.Start()
	wantBatches(t, r, "A1 C1 ")
	b := r.batches()[0]
	if fmt.Sprint(b.Marks) != "[{1 c3} {2 c5}]" || b.Cursor != "c5" {
		t.Fatalf("marks %v cursor %q, want [{1 c3} {2 c5}] c5", b.Marks, b.Cursor)
	}
}

// A raw subscriber moving between the log and its own queue (by changing
// its symbols with a backlog) loses and repeats nothing, and keeps every
// batch's cursor.
func TestRawChangeBetweenLogAndQueue(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.rawLogMin = 3 })
	h.Publish([]*Update{upd("A", 1), upd("B", 1), upd("C", 1)}, "c0")
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B", "C"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	if !s.logged {
		t.Fatal("a subscriber of every symbol does not read the log")
	}
	h.Publish([]*Update{upd("A", 2), upd("B", 2)}, "c1")
	h.Publish([]*Update{upd("C", 2)}, "c2")
	if _, err := s.Change([]string{"A", "B"}, 0); err != nil { // to its own queue, with a backlog
		t.Fatal(err)
	}
	h.Publish([]*Update{upd("A", 3), upd("C", 3)}, "c3")
	s.Start()
	wantBatches(t, r, "A2 B2 A3 ")
	if b := r.batches()[0]; fmt.Sprint(b.Marks) != "[{2 c2} {3 c3}]" {
		t.Fatalf("marks %v, want [{2 c2} {3 c3}]", b.Marks)
	}
	if s.logged || len(h.logSubs) != 0 || h.log.buf != nil {
		t.Fatalf("still reads the log (%v), or the log is kept (%d subscribers, %d entries)", s.logged, len(h.logSubs), len(h.log.buf))
	}
	if _, err := s.Change([]string{"A", "B", "C"}, 0); err != nil { // back to the log: C's value first
		t.Fatal(err)
	}
	wantBatches(t, r, "A2 B2 A3 ", "C3 ")
	h.Publish([]*Update{upd("C", 4), upd("B", 3)}, "c4")
	wantBatches(t, r, "A2 B2 A3 ", "C3 ", "C4 B3 ")
	if !s.logged || r.batches()[2].Cursor != "c4" {
		t.Fatalf("logged %v, cursor %q", s.logged, r.batches()[2].Cursor)
	}
}

// The log is a ring: a subscriber reading it gets every tick in order while
// it wraps around many times.
func TestRawLogWrapsAround(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.rawLogMin, c.RawQueue = 1, 64 })
	r := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	want, seq := "", uint64(0)
	for b := range 60 {
		var batch []*Update
		for range 5 {
			seq++
			batch = append(batch, upd("A", seq), upd("B", seq))
			want += fmt.Sprintf("A%d ", seq)
		}
		h.Publish(batch, fmt.Sprintf("c%d", b))
		wait.For(t, 2*time.Second, func() error {
			got := ""
			for _, b := range r.batches() {
				got += seqs(b)
			}
			if got != want {
				return fmt.Errorf("got %q", got)
			}
			return nil
		})
	}
	if len(h.log.buf) > 256 {
		t.Errorf("the ring grew to %d entries", len(h.log.buf))
	}
}

// countSink counts the writes of every subscriber sharing its counter and
// records the count at each of its own. With hold set, each write first
// takes a token from it: the test lets the writer on one write at a time.
type countSink struct {
	recSink
	all  *atomic.Int64
	hold chan struct{}
	at   []int64
}

func (c *countSink) Send(b *Batch) error {
	if c.hold != nil {
		<-c.hold
	}
	n := c.all.Add(1)
	c.mu.Lock()
	c.at = append(c.at, n)
	c.mu.Unlock()
	return c.recSink.Send(b)
}

// A subscriber woken by a change is served before the raw subscribers
// working off a backlog, however many: it waits for a few of their writes,
// not for all of them.
func TestWokenSubscribersGoBeforeRawBacklogs(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.Writers, c.RawBatchBytes, c.RawQueue = 1, 10, 1<<20 })
	var writes atomic.Int64
	hold := make(chan struct{})
	var raws []*Subscriber
	for range 100 {
		s, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Mode: Raw}, &countSink{all: &writes, hold: hold})
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, s)
	}
	for i := uint64(1); i <= 5; i++ { // 5 batches each, one per write
		h.Publish([]*Update{upd("A", i)}, fmt.Sprintf("c%d", i))
	}
	c := &countSink{all: &writes}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"B"}}, c)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	for _, r := range raws {
		r.Start()
	}
	for range 150 { // every raw subscriber has written once, half of them twice
		hold <- struct{}{}
	}
	h.Publish([]*Update{upd("B", 1)}, "c6")
	woken := writes.Load() // the writer waits in the next raw write
	for deadline := time.Now().Add(5 * time.Second); writes.Load() < 501; {
		if time.Now().After(deadline) {
			t.Fatalf("stuck after %d writes", writes.Load())
		}
		select {
		case hold <- struct{}{}:
		case <-time.After(10 * time.Millisecond): // the last write needs no token
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.at) != 1 {
		t.Fatalf("%d writes to the woken subscriber, want 1", len(c.at))
	}
	// It waits for the write in progress, not for the 350 still owed.
	if waited := c.at[0] - woken; waited > 2 {
		t.Errorf("served after %d more writes", waited)
	}
}
