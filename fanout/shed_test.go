package fanout

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// probeSink is a recSink whose peer can be marked gone (PeerProber).
type probeSink struct {
	recSink
	gone atomic.Bool
}

func (p *probeSink) PeerGone() bool { return p.gone.Load() }

// TestShedderNewestFirstLiveOnly guards the shedder's contract: SendAway
// sends away the most recently arrived subscribers first, never one
// connected for less than the minimum age (it sends fewer rather than
// reach for older ones), and never counts or tells a subscriber whose
// peer is gone (it is released without a reason); Sweep releases every
// gone peer and returns the live count.
func TestShedderNewestFirstLiveOnly(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := newTestHub(t, clk, nil)
	sh := h.NewShedder()
	sinks := make([]*probeSink, 8) // arrive one second apart: 0 oldest, 7 newest
	for i := range sinks {
		sinks[i] = &probeSink{}
		if _, _, _, err := h.Subscribe(Options{Symbols: []string{"A"}}, sinks[i]); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
	}
	closed := func(i int) (bool, error) {
		s := sinks[i]
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.done, s.closed
	}
	type want struct{ done, away bool }
	check := func(step string, wants []want) {
		t.Helper()
		for i, w := range wants {
			done, reason := closed(i)
			if done != w.done || errors.Is(reason, ErrRebalancing) != w.away {
				t.Errorf("%s: subscriber %d (arrived %v ago): closed %v with %v; want closed %v, sent away %v",
					step, i, clk.Now().Sub(time.Unix(1000+int64(i), 0)), done, reason, w.done, w.away)
			}
		}
	}
	// Now: 8 s after the first. 6 and 7 are younger than 2.5 s: of the two
	// newest, nobody goes.
	if got := sh.SendAway(2, 2500*time.Millisecond); got != 0 {
		t.Errorf("SendAway(2, 2.5s) = %d while the two newest are younger; want 0", got)
	}
	// Of the four newest, 6 and 7 are too young, 5's peer is gone (released,
	// not counted): 4 and 3 go.
	sinks[5].gone.Store(true)
	if got := sh.SendAway(4, 2500*time.Millisecond); got != 2 {
		t.Fatalf("SendAway(4, 2.5s) = %d, want 2", got)
	}
	check("SendAway(4, 2.5s)", []want{{}, {}, {}, {true, true}, {true, true}, {true, false}, {}, {}})
	if sh.Shed() != 2 || sh.Released() != 1 {
		t.Errorf("Shed %d, Released %d; want 2, 1", sh.Shed(), sh.Released())
	}
	// Later, 7 is old enough and the newest: it goes first.
	clk.Add(2 * time.Second)
	if got := sh.SendAway(1, 2500*time.Millisecond); got != 1 {
		t.Errorf("SendAway(1) = %d, want 1", got)
	}
	check("SendAway(1) later", []want{{}, {}, {}, {true, true}, {true, true}, {true, false}, {}, {true, true}})
	sinks[0].gone.Store(true)
	if live := sh.Sweep(); live != 3 || h.Subscribers() != 3 {
		t.Errorf("Sweep = %d, hub holds %d; want 3 live (1, 2, 6)", live, h.Subscribers())
	}
	if done, reason := closed(0); !done || reason != nil {
		t.Errorf("a gone peer swept: closed %v with %v; want closed without a reason", done, reason)
	}
}
