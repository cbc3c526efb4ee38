package fanout

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// TestPublishKeepsCopies: what Publish and Reset keep is a copy, so a
// source may reuse its updates and their bytes once they return (the
// reader's scratch and reply buffer).
func TestPublishKeepsCopies(t *testing.T) {
	h := newTestHub(t, &fakeClock{now: time.Unix(1000, 0)}, nil)
	a, b := upd("A", 1), upd("B", 1)
	h.Reset([]*Update{a}, "c0")
	h.Publish([]*Update{b}, "c1")
	for _, u := range []*Update{a, b} {
		u.Seq = 99
		for i := range u.JSON {
			u.JSON[i] = 'x'
		}
	}
	got := h.Latest([]string{"A", "B"})
	for i, sym := range []string{"A", "B"} {
		want := upd(sym, 1)
		if got[i] == nil || got[i].Seq != 1 || !bytes.Equal(got[i].JSON, want.JSON) {
			t.Errorf("%s after the source reused its update: %+v, want seq 1 and %s", sym, got[i], want.JSON)
		}
	}
}

// TestPublishConflatesABatch: of a batch, the hub keeps each symbol's
// newest update for its conflated subscribers, orders and counts every one
// (stale and gaps as before), and a raw subscriber still takes every tick.
func TestPublishConflatesABatch(t *testing.T) {
	h := newTestHub(t, &fakeClock{now: time.Unix(1000, 0)}, nil)
	raw := &recSink{}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"B"}, Mode: Raw}, raw)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	h.Publish([]*Update{upd("A", 1), upd("B", 1), upd("A", 2), upd("A", 2), upd("B", 2), upd("A", 4), upd("B", 3), upd("C", 1)}, "c1")
	got := h.Latest([]string{"A", "B", "C"})
	for i, want := range []uint64{4, 3, 1} {
		if got[i] == nil || got[i].Seq != want {
			t.Errorf("symbol %d: %+v, want seq %d", i, got[i], want)
		}
	}
	st := h.Stats()
	if st.Ticks.Load() != 8 || st.Stale.Load() != 1 || st.Gaps.Load() != 1 {
		t.Errorf("ticks %d stale %d gaps %d, want 8, 1 (A2 again), 1 (A2 to A4)", st.Ticks.Load(), st.Stale.Load(), st.Gaps.Load())
	}
	h.fireDue(time.Unix(1000, 0))
	wantBatches(t, raw, "B1 B2 B3 ")
	// A stale update after a conflated one is refused against the newest.
	h.Publish([]*Update{upd("A", 3)}, "c2")
	if got := h.Latest([]string{"A"})[0]; got.Seq != 4 {
		t.Errorf("A after a stale A3: seq %d, want 4", got.Seq)
	}
}

// TestNeedChanged: the hub tells its source when its need grows (a first
// subscriber, a shorter interval, a look after a quiet spell), and not
// when it shrinks or stays.
func TestNeedChanged(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	signalled := func() bool {
		select {
		case <-h.NeedChanged():
			return true
		default:
			return false
		}
	}
	if _, any := h.Tightest(); any || signalled() {
		t.Fatal("a new hub has a consumer or a signal")
	}
	s1, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Interval: time.Second}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	if !signalled() {
		t.Error("no signal for the first subscriber")
	}
	s2, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}, Interval: 2 * time.Second}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	if signalled() {
		t.Error("a signal for a longer interval")
	}
	s2.Start()
	if _, err := s2.Change([]string{"A"}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, func() error { // a writer applies the change
		if !signalled() {
			return errors.New("no signal for a shorter interval")
		}
		return nil
	})
	s1.Close()
	s2.Close()
	if d, any := h.Tightest(); any || signalled() {
		t.Fatalf("after the last subscriber left: Tightest %v %v, or a signal", d, any)
	}

	h.Latest([]string{"A"}) // a poll: a look
	if !signalled() {
		t.Error("no signal for a look at a quiet hub")
	}
	if d, any := h.Tightest(); !any || d != h.cfg.MaxInterval {
		t.Errorf("after a look: Tightest %v %v, want %v true", d, any, h.cfg.MaxInterval)
	}
	clk.Add(5 * time.Second)
	h.Look()
	if signalled() {
		t.Error("a signal for a look within the window of the last")
	}
	clk.Add(LookWindow - time.Second)
	if _, any := h.Tightest(); !any {
		t.Error("the second look did not extend the window")
	}
	clk.Add(LookWindow)
	if _, any := h.Tightest(); any {
		t.Error("a look counts after its window")
	}
	h.Look()
	if !signalled() {
		t.Error("no signal for a look after the window")
	}
}
