package transport

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestReplayGateQueues guards the replay slots: at most max at once on the
// node and perAddr per address; a resume past them waits in line and gets
// the next slot given back, or errReplayBusy after its wait.
func TestReplayGateQueues(t *testing.T) {
	var g replayGate
	ctx := t.Context()
	take := func(addr string, wait time.Duration) (func(), error) {
		return g.acquire(ctx, addr, 3, 2, wait)
	}
	a1, err1 := take("a", 0)
	a2, err2 := take("a", 0)
	if err1 != nil || err2 != nil {
		t.Fatal("two replays from one address refused")
	}
	if _, err := take("a", time.Millisecond); !errors.Is(err, errReplayBusy) {
		t.Errorf("a third replay from one address: %v, want errReplayBusy after its wait", err)
	}
	b1, err := take("b", 0)
	if err != nil {
		t.Fatal("another address refused")
	}
	got := make(chan error, 1)
	go func() {
		release, err := take("c", time.Minute)
		if err == nil {
			release()
		}
		got <- err
	}()
	a1()
	a1() // twice: gives back one slot
	if err := <-got; err != nil {
		t.Fatalf("a waiting replay did not get the slot given back: %v", err)
	}
	a2()
	b1()
	if g.total != 0 || len(g.perAddr) != 0 || len(g.line) != 0 {
		t.Errorf("after every release: total %d, per address %v, %d in line", g.total, g.perAddr, len(g.line))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	x, _ := take("x", 0)
	y, _ := take("x", 0)
	if _, err := g.acquire(cctx, "x", 3, 2, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("a wait whose context ended: %v", err)
	}
	x()
	y()
}

func TestEpochOf(t *testing.T) {
	for in, want := range map[string]string{"ab12.mwy.x": "ab12", "ab12": "ab12", "": "", ".x": ""} {
		if got := epochOf(in); got != want {
			t.Errorf("epochOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReplayGateServesInOrder guards the line: a slot given back goes to
// the resume that has waited longest, one waiter at a time.
func TestReplayGateServesInOrder(t *testing.T) {
	var g replayGate
	first, err := g.acquire(t.Context(), "a", 1, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 3)
	for i, addr := range []string{"b", "c", "d"} {
		go func() {
			release, err := g.acquire(t.Context(), addr, 1, 1, time.Minute)
			if err != nil {
				got <- "error " + err.Error()
				return
			}
			got <- addr
			release()
		}()
		for { // the next waiter joins only once this one is in line
			g.mu.Lock()
			n := len(g.line)
			g.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	first()
	for _, want := range []string{"b", "c", "d"} {
		if addr := <-got; addr != want {
			t.Fatalf("served %q, want %q (the order of arrival)", addr, want)
		}
	}
}
