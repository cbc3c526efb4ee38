package gcfloor

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"tickstream/internal/wait"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{6 * mb, 32 * mb, 534},  // goal 6 + 32.04 MB
		{32 * mb, 32 * mb, 100}, // the default already doubles to 64
		{300 * mb, 32 * mb, 100},
		{16 * mb, 32 * mb, 200},
		{1, 32 * mb, maxPercent},
		{0, 32 * mb, maxPercent},
		{6 * mb, 0, 100},
	} {
		if got := Percent(c.live, c.floor); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
		if p := Percent(c.live, c.floor); c.floor > 0 && c.live > 0 && p < maxPercent && c.live*uint64(100+p)/100 < c.live+c.floor {
			t.Errorf("Percent(%d, %d) = %d: goal below live+floor", c.live, c.floor, p)
		}
	}
}

func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestRunRaisesAndRestores: on this test's small heap, Run raises GOGC so
// that the goal is a floor above the live heap, and sets it back when its
// context ends; with GOGC in the environment it does nothing.
func TestRunRaisesAndRestores(t *testing.T) {
	if gogc() != 100 {
		t.Skipf("GOGC is %d in this process", gogc())
	}
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, 256<<20) }()
	wait.For(t, 10*time.Second, func() error {
		if g := gogc(); g <= 100 {
			return fmt.Errorf("GOGC %d", g)
		}
		return nil
	})
	cancel()
	<-done
	if g := gogc(); g != 100 {
		t.Errorf("GOGC %d after Run returned, want 100", g)
	}

	t.Setenv("GOGC", "100")
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	Run(ctx2, 256<<20) // returns at once
	if g := gogc(); g != 100 {
		t.Errorf("GOGC %d with GOGC set in the environment", g)
	}
}
