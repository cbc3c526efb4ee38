package bars

// Tests from the fourth session's second review (the one-lock bar builder,
// Merge copying the older builder before it locks its own).

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/feed"
)

// returnsWithin reports whether f returns within d.
func returnsWithin(d time.Duration, f func()) bool {
	ch := make(chan struct{})
	go func() { f(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestReviewMergeSelf: Merge(b, gen) with older == b returns (it took
// b.mu.RLock then b.mu.Lock before, and never returned).
func TestReviewMergeSelf(t *testing.T) {
	b := testBuilder(t)
	b.Add([]*feed.Update{tick("AAPL", 1, 10, "189.40", 100)})
	gen := b.Generation()
	if !returnsWithin(5*time.Second, func() { b.Merge(b, gen) }) {
		t.Fatal("b.Merge(b) did not return in 5 s (self-deadlock: older.mu.RLock then b.mu.Lock on one RWMutex)")
	}
}

// TestReviewMergeCross: a.Merge(b) and b.Merge(a) at once do not deadlock
// (they took the two builders' locks in opposite orders before).
func TestReviewMergeCross(t *testing.T) {
	a, b := testBuilder(t), testBuilder(t)
	a.Add([]*feed.Update{tick("AAPL", 1, 10, "189.40", 100)})
	b.Add([]*feed.Update{tick("AAPL", 1, 10, "189.40", 100)})
	ok := returnsWithin(20*time.Second, func() {
		var wg sync.WaitGroup
		for range 2000 {
			wg.Add(2)
			go func() { defer wg.Done(); a.Merge(b, a.Generation()) }()
			go func() { defer wg.Done(); b.Merge(a, b.Generation()) }()
		}
		wg.Wait()
	})
	if !ok {
		t.Fatal("a.Merge(b) with b.Merge(a) deadlocked")
	}
}

// TestReviewConcurrentUse: Add from one goroutine, chart reads, Clear and
// Merge of a seed concurrently (go test -race).
func TestReviewConcurrentUse(t *testing.T) {
	b := testBuilder(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, _, err := b.AppendBars(nil, "AAPL", TF5s, 10); err != nil {
					t.Error(err)
				}
				if _, err := b.AppendTrades(nil, "ES", 10); err != nil {
					t.Error(err)
				}
				_ = b.Has("ES")
				_ = b.Keep(TF1m)
				_ = b.Stats().Ticks.Load()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; !stop.Load(); k++ {
			gen := b.Clear()
			old := testBuilder(t)
			old.Add([]*feed.Update{tick("AAPL", 1, 1, "1.00", 1), tick("ES", 1, 1, "1.00", 1)})
			b.Merge(old, gen)
		}
	}()
	for seq := uint64(1); seq < 5_000; seq++ {
		b.Add([]*feed.Update{tick("AAPL", seq, float64(seq)/100, "189.40", 1), tick("ES", seq, float64(seq)/100, "5000.25", 1)})
	}
	stop.Store(true)
	wg.Wait()
}
