package fanout

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"tickstream/internal/wait"
)

// A raw subscriber that fell behind gets its backlog in writes of at most
// RawBatchBytes, each cut at a published batch and carrying that batch's
// exact cursor.
func TestRawBatchBytesCutsAtPublishedBatches(t *testing.T) {
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
func TestSlowRawOverflowDropsAtOnce(t *testing.T) {
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
func TestRawRegistrationsInAnyOrder(t *testing.T) {
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
	for _, name := range []string{"A", "B"} {
		if st := h.syms[name]; len(st.raw) != 15 {
			t.Errorf("%s has %d raw subscribers, want 15", st.name, len(st.raw))
		}
	}
}

// A write of several published batches says where each ends, with its
// cursor, so the transport can attach every one.
func TestRawBatchCarriesItsMarks(t *testing.T) {
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
	if len(b.Marks) != 2 || b.Marks[0] != (Mark{2, "c1"}) || b.Marks[1] != (Mark{3, "c2"}) || b.Cursor != "c2" {
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
