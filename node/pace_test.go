package node_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"tickstream/internal/nodetest"
	"tickstream/node"
)

// TestReadPaceFollowsSubscribers: a node reads the feed as often as its
// subscribers need (a tenth of the shortest interval granted, within
// --read-coalesce and --read-coalesce-max), and no more often than its
// pace allows.
func TestReadPaceFollowsSubscribers(t *testing.T) {
	f := nodetest.NewFeed(t)
	runSim(t, f, 2000)
	n := f.StartNode(func(c *node.Config) {
		c.Reader.Coalesce, c.Reader.MaxCoalesce = 5*time.Millisecond, 50*time.Millisecond
	})
	base := n.URL()
	wantPace := func(d time.Duration) {
		t.Helper()
		nodetest.CheckFor(t, 10*time.Second, func() error {
			got, err := nodetest.Metric(base, "tickstream_redis_read_pace_seconds", "")
			if err != nil {
				return err
			}
			if math.Abs(got-d.Seconds()) > 1e-9 {
				return fmt.Errorf("read pace %vs, want %v", got, d)
			}
			return nil
		})
	}
	// With nobody watching, reads are at most one per 50 ms: count them
	// over a second (an upper bound: a loaded machine only reads less).
	wantPace(50 * time.Millisecond)
	reads := func() float64 {
		v, err := nodetest.Metric(base, "tickstream_redis_reads_total", "")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	r0, t0 := reads(), time.Now()
	time.Sleep(time.Second)
	r1, el := reads(), time.Since(t0)
	if max := el.Seconds()/0.050 + 2; r1-r0 > max {
		t.Errorf("%v reads in %v with a 50ms pace (at most %.0f)", r1-r0, el, max)
	}
	if r1 == r0 {
		t.Error("no read in a second of a 2,000 ticks/s feed")
	}

	slow := nodetest.Subscribe(t, base+"/stream?symbols=*&interval=200ms")
	wantPace(20 * time.Millisecond)
	raw := nodetest.Subscribe(t, base+"/stream?symbols=*&mode=raw")
	wantPace(5 * time.Millisecond)
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := raw.Count("tick"); c < 100 {
			return fmt.Errorf("raw subscriber got %d ticks", c)
		}
		return nil
	})
	raw.Close()
	wantPace(20 * time.Millisecond)
	slow.Close()
	wantPace(50 * time.Millisecond)
}
