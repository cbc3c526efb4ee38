package fanout

import (
	"sync/atomic"
	"time"
)

// LagBuckets are the upper bounds, in seconds, of the delivery-lag
// histogram: the time from a tick's feed timestamp to its write.
var LagBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Stats are the hub's counters, all updated atomically.
type Stats struct {
	// Subscribers by mode (index Conflated or Raw).
	Subscribers [2]atomic.Int64
	// Ticks is the number of updates published into the hub.
	Ticks atomic.Uint64
	// Stale counts published updates dropped as older than the current one.
	Stale atomic.Uint64
	// Unknown counts published updates of symbols the hub does not serve.
	Unknown atomic.Uint64
	// Delivered counts updates written to subscribers.
	Delivered atomic.Uint64
	// Conflated counts updates a subscriber never received because a newer
	// value of the same symbol replaced them within its interval.
	Conflated atomic.Uint64
	// Batches counts writes (Send calls that wrote something).
	Batches atomic.Uint64
	// Lagging counts subscribers that became slow.
	Lagging atomic.Uint64
	// SlowDrops counts subscribers closed for staying slow.
	SlowDrops atomic.Uint64
	// Overflows counts raw subscribers closed because their queue overflowed.
	Overflows atomic.Uint64
	// Resets counts epoch changes of the source.
	Resets atomic.Uint64
	// Gaps counts published updates whose seq skipped ahead of the
	// symbol's current one (ticks lost upstream).
	Gaps atomic.Uint64
	// PeersGone counts subscribers released because their peer had closed
	// the connection (found by the heartbeat's probe of quiet ones, or by a
	// rebalancing Shedder's sweep).
	PeersGone atomic.Uint64

	lagCount [14]atomic.Uint64 // per LagBuckets entry, then +Inf
	lagSumUs atomic.Uint64
}

// LagHistogram returns the cumulative counts per LagBuckets bound, the total
// count and the sum of lags in seconds, in the form Prometheus expects.
func (s *Stats) LagHistogram() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(LagBuckets))
	var cum uint64
	for i, ub := range LagBuckets {
		cum += s.lagCount[i].Load()
		buckets[ub] = cum
	}
	cum += s.lagCount[len(LagBuckets)].Load()
	return buckets, cum, float64(s.lagSumUs.Load()) / 1e6
}

// observeLag records, for each update written at now, the lag from its
// feed timestamp.
func (s *Stats) observeLag(now time.Time, us []*Update) {
	if len(us) == 0 {
		return
	}
	var local [14]uint64
	var sum uint64
	nowUs := now.UnixMicro()
	for _, u := range us {
		lag := nowUs - u.TS
		if lag < 0 {
			lag = 0
		}
		sum += uint64(lag)
		sec := float64(lag) / 1e6
		i := 0
		for i < len(LagBuckets) && sec > LagBuckets[i] {
			i++
		}
		local[i]++
	}
	for i, n := range local {
		if n > 0 {
			s.lagCount[i].Add(n)
		}
	}
	s.lagSumUs.Add(sum)
}
