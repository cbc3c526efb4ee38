package redisstream

import (
	"errors"
	"testing"
	"time"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/wait"
)

// TestFeedLagIsCurrentWhateverTheScrape guards the reader's lag figures:
// Lag is the time since the feed timestamp of the newest tick read, the
// same for any number of readers asking and growing while nothing new
// comes (no reset on read); ReadLag counts one observation per read, in
// the bucket of the read's oldest tick.
func TestFeedLagIsCurrentWhateverTheScrape(t *testing.T) {
	_, rdb, pub := setup(t)
	sink := &recSink{}
	r := startReader(t, rdb, sink)
	if got := r.Stats().Lag(time.Now()); got != 0 {
		t.Errorf("lag before any tick: %v, want 0", got)
	}
	// The first tick may reach the reader by its state build or by a read;
	// the second, by a read.
	for i, age := range []time.Duration{3 * time.Second, 2 * time.Second} {
		seq := uint64(i + 1)
		if seq == 2 {
			b0, n0, sum0 := r.Stats().ReadLag()
			defer func() {
				buckets, n, sum := r.Stats().ReadLag()
				if n != n0+1 || sum-sum0 < 2 || buckets[1] != b0[1] || buckets[2.5] != b0[2.5]+1 {
					t.Errorf("read lag histogram: count %d (before %d), sum %v (before %v), ≤1s %d (%d), ≤2.5s %d (%d); want one more read of about 2s",
						n, n0, sum, sum0, buckets[1], b0[1], buckets[2.5], b0[2.5])
				}
			}()
		}
		tk := tick("AAPL", seq, "100.00")
		tk.TS = time.Now().Add(-age).UnixMicro()
		if err := pub.Publish(t.Context(), []feed.Tick{tk}); err != nil {
			t.Fatal(err)
		}
		wait.For(t, 5*time.Second, func() error {
			if u := sink.get("AAPL"); u == nil || u.Seq != seq {
				return errors.New("not read")
			}
			return nil
		})
	}
	st := r.Stats()
	now := time.Now()
	a, b := st.Lag(now), st.Lag(now)
	if a != b || a < 2*time.Second || a > time.Minute {
		t.Errorf("lag asked twice at one instant: %v then %v, want the same, at least 2s", a, b)
	}
	if later := st.Lag(now.Add(5 * time.Second)); later-a != 5*time.Second {
		t.Errorf("lag 5s later: %v, want %v", later, a+5*time.Second)
	}
	if len(st.readLag.counts) != len(LagBuckets)+1 {
		t.Errorf("%d counts for %d buckets", len(st.readLag.counts), len(LagBuckets))
	}
}
