package fanout

import (
	"fmt"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// owed returns what s holds in its own queue.
func owed(s *Subscriber) int {
	s.rawMu.Lock()
	defer s.rawMu.Unlock()
	return len(s.rawQ)
}

// TestRawChangeKeepsNonReaderDebtBounded guards a raw subscriber's debt
// across Change: one of the log that does not read (its socket stays full)
// but keeps changing its symbols (WebSocket subscribe/unsubscribe) owes at
// most about RawQueue ticks in its own queue, or is closed with ErrOverflow.
// leaveLog moves its log debt into its own queue and joinLog restarts the log
// count at zero, so the overflow check counts the queue too.
func TestRawChangeKeepsNonReaderDebtBounded(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.RawQueue = 4 }) // rawLogMin: 2 of A,B,C
	r := &recSink{slow: true}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B", "C"}, Mode: Raw}, r)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	seq := uint64(0)
	syms := [][]string{{"A", "B", "C"}, {"A", "B", "C"}} // the same symbols: a WebSocket "interval" op
	for round := range 20 {
		for range 4 { // RawQueue log entries: owes exactly RawQueue, no overflow yet
			seq++
			h.Publish([]*Update{upd("A", seq)}, fmt.Sprintf("c%d", seq))
		}
		if _, err := s.Change(syms[round%2], 0); err != nil {
			t.Fatal(err)
		}
		settled(t, s)
		r.mu.Lock()
		closed := r.done
		r.mu.Unlock()
		if closed {
			return // closed (overflow): bounded
		}
		if n := owed(s); n > 2*h.Config().RawQueue {
			t.Fatalf("round %d: a non-reading subscriber owes %d ticks in its own queue (RawQueue %d), not closed", round, n, h.Config().RawQueue)
		}
	}
}

// TestRawResetWithBacklogResyncsOnce guards a Reset over a raw backlog: a raw
// subscriber with a backlog and a Change pending gets one resync with the
// current values at the Reset's cursor, then only newer ticks, under both
// policies.
func TestRawResetWithBacklogResyncsOnce(t *testing.T) {
	eachRawPolicy(t, func(t *testing.T) {
		clk := &fakeClock{now: time.Unix(1000, 0)}
		h := newTestHub(t, clk, nil)
		r := &recSink{}
		s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B", "C"}, Mode: Raw}, r)
		if err != nil {
			t.Fatal(err)
		}
		h.Publish([]*Update{upd("A", 1), upd("B", 1)}, "c1")
		h.Publish([]*Update{upd("A", 2)}, "c2")
		h.Reset([]*Update{upd("A", 1), upd("B", 1)}, "e2")
		h.Publish([]*Update{upd("A", 2), upd("C", 1)}, "e3")
		if _, err := s.Change([]string{"A", "B"}, 0); err != nil {
			t.Fatal(err)
		}
		s.Start()
		wantBatches(t, r, "A2 B1 ")
		if b := r.batches()[0]; !b.Resync || b.Cursor != "e3" {
			t.Fatalf("resync %v cursor %q", b.Resync, b.Cursor)
		}
		h.Publish([]*Update{upd("A", 3), upd("C", 2)}, "e4")
		wantBatches(t, r, "A2 B1 ", "A3 ")
	})
}

// TestRawResetOvertakingGapLeavesNoStaleResync guards the resync flag: when a
// Reset overtakes a gap's resync before the subscriber is served, the Reset's
// resync is sent once and no later ordinary write is flagged as a resync
// (clearRaw clears the flag with the queue).
func TestRawResetOvertakingGapLeavesNoStaleResync(t *testing.T) {
	eachRawPolicy(t, func(t *testing.T) {
		clk := &fakeClock{now: time.Unix(1000, 0)}
		h := newTestHub(t, clk, func(c *Config) { c.rawLogMin = max(2, rawLogMin) })
		r := &recSink{}
		h.Publish([]*Update{upd("A", 1), upd("B", 1)}, "c1")
		s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B"}, Mode: Raw}, r)
		if err != nil {
			t.Fatal(err)
		}
		h.Publish([]*Update{upd("A", 5)}, "c2") // a gap: resync queued
		h.Reset([]*Update{upd("A", 5), upd("B", 1)}, "e1")
		s.Start()
		wantBatches(t, r, "A5 B1 ") // the Reset's resync
		h.Publish([]*Update{upd("A", 6)}, "e2")
		if _, err := s.Change([]string{"A", "B", "C"}, 0); err != nil {
			t.Fatal(err)
		}
		h.Publish([]*Update{upd("C", 1)}, "e3")
		wait.For(t, 2*time.Second, func() error {
			got := ""
			for _, b := range r.batches()[1:] {
				got += seqs(b)
			}
			if got != "A6 C1 " {
				return fmt.Errorf("got %q", got)
			}
			return nil
		})
		for i, b := range r.batches()[1:] {
			if b.Resync {
				t.Errorf("write %d (%s) flagged resync", i+1, seqs(b))
			}
		}
	})
}

// TestRawLogGrowKeepsOnlyCopiedEntries guards the ring's growth: when the
// ring grows (a batch bigger than any before), only the old ring's entries
// are copied, the slots below them are empty, and oldest() does not count
// them. An overflowed subscriber whose position lies there (not served yet:
// in a replay, or its writer busy) takes no nil *Update (a writer's panic
// would kill the node) and, with a filter, skips no lost tick nor sends a
// cursor past them.
func TestRawLogGrowKeepsOnlyCopiedEntries(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, func(c *Config) { c.RawQueue = 4 }) // ring 8
	seq := uint64(0)
	pub := func(n int) {
		var b []*Update
		for range n {
			seq++
			b = append(b, upd("A", seq))
		}
		h.Publish(b, fmt.Sprintf("c%d", seq))
	}
	// A log reader that keeps the log going.
	other, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B", "C"}, Mode: Raw}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	other.Start()
	for range 10 {
		pub(1)
	}
	s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B", "C"}, Mode: Raw}, &recSink{})
	if err != nil {
		t.Fatal(err)
	}
	// Not started: overflows at entry 15 (limit 14); the ring keeps 8.
	for range 10 {
		pub(1)
	}
	pub(5) // the ring grows to 16; entries 12..24 copied/appended, oldest() says 9
	var b Batch
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("takeLog panicked (logPos %d, oldest %d, ring %d): %v", s.logPos, h.log.oldest(), len(h.log.buf), p)
			}
		}()
		s.rawMu.Lock()
		defer s.rawMu.Unlock()
		s.takeRaw(&b)
	}()
	for i, u := range b.Updates {
		if u == nil {
			t.Fatalf("update %d of the write is nil", i)
		}
	}
}

// A raw subscriber closed while Subscribe is still registering it (a
// drain, or the hub closing, finds it among the subscribers before it is
// registered) is neither half removed (a panic) nor registered after it
// was forgotten (a leak in the symbol lists or the log).
func TestRawCloseDuringSubscribe(t *testing.T) {
	eachRawPolicy(t, func(t *testing.T) {
		clk := &fakeClock{now: time.Unix(1000, 0)}
		h := newTestHub(t, clk, nil)
		for range 100 {
			h.pubMu.Lock() // Subscribe waits here, already among h.subs
			done := make(chan *Subscriber)
			go func() {
				s, _, _, err := h.Subscribe(Options{Symbols: []string{"A", "B"}, Mode: Raw}, &recSink{})
				if err != nil {
					t.Error(err)
				}
				done <- s
			}()
			var s *Subscriber
			wait.For(t, 2*time.Second, func() error {
				h.subMu.Lock()
				defer h.subMu.Unlock()
				for x := range h.subs {
					s = x
				}
				if s == nil {
					return fmt.Errorf("not subscribed yet")
				}
				return nil
			})
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			h.pubMu.Unlock()
			<-closed
			<-done
		}
		if len(h.logSubs) != 0 || len(h.syms["A"].raw) != 0 || len(h.syms["B"].raw) != 0 {
			t.Fatalf("left registered: %d in the log, %d and %d in the symbol lists", len(h.logSubs), len(h.syms["A"].raw), len(h.syms["B"].raw))
		}
	})
}
