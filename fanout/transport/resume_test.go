package transport

import "testing"

func TestReplayGateLimits(t *testing.T) {
	var g replayGate
	if !g.acquire("a", 3, 2) || !g.acquire("a", 3, 2) {
		t.Fatal("two replays from one address refused")
	}
	if g.acquire("a", 3, 2) {
		t.Error("a third replay from one address was let through")
	}
	if !g.acquire("b", 3, 2) {
		t.Fatal("another address refused")
	}
	if g.acquire("c", 3, 2) {
		t.Error("a fourth replay on the node was let through")
	}
	g.release("a")
	if !g.acquire("c", 3, 2) {
		t.Error("a released slot was not reused")
	}
	g.release("a")
	g.release("b")
	g.release("c")
	if g.total != 0 || len(g.perAddr) != 0 {
		t.Errorf("after every release: total %d, per address %v", g.total, g.perAddr)
	}
}

func TestEpochOf(t *testing.T) {
	for in, want := range map[string]string{"ab12.mwy.x": "ab12", "ab12": "ab12", "": "", ".x": ""} {
		if got := epochOf(in); got != want {
			t.Errorf("epochOf(%q) = %q, want %q", in, got, want)
		}
	}
}
