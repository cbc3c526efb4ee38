package fanout

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// lastSeq returns the seq of the newest update a sink received of sym.
func (r *recSink) lastSeq(sym string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last uint64
	for _, b := range r.got {
		for _, u := range b.Updates {
			if u.Sym == sym && u.Seq > last {
				last = u.Seq
			}
		}
	}
	return last
}

// TestNoWakeIsLost: conflated subscribers arming and being woken while
// ticks arrive one by one, on real timers, all end with the newest value:
// Publish's skip of a symbol nobody waits on (nwait) never loses the wake
// of a subscriber that armed meanwhile.
func TestNoWakeIsLost(t *testing.T) {
	// No heartbeat within the test: only Publish's wakes can bring the
	// newest value.
	h, err := New(Config{Symbols: []string{"A", "B"}, Writers: 2, Heartbeat: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	const subs, ticks = 20, 20_000
	sinks := make([]*recSink, subs)
	for i := range sinks {
		sinks[i] = &recSink{}
		syms := []string{"A"}
		if i%2 == 1 {
			syms = []string{"A", "B"}
		}
		s, _, _, err := h.Subscribe(Options{Symbols: syms, Interval: 0}, sinks[i])
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
	}
	for seq := uint64(1); seq <= ticks; seq++ {
		h.Publish([]*Update{upd("A", seq)}, "c")
		if seq%64 == 0 {
			runtime.Gosched() // let subscribers arm between ticks
		}
	}
	wait.For(t, 30*time.Second, func() error {
		for i, r := range sinks {
			if got := r.lastSeq("A"); got != ticks {
				return fmt.Errorf("subscriber %d ends at A%d, want A%d", i, got, ticks)
			}
		}
		return nil
	})
}
