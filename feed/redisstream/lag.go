package redisstream

import (
	"sync/atomic"
	"time"
)

// LagBuckets are the upper bounds, in seconds, of the buckets of the
// per-read feed lag histogram (ReaderStats.ReadLag).
var LagBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// lagHistogram counts lags in LagBuckets without a lock: one writer (the
// reader's goroutine), any number of readers. A reader may see a count a
// moment before its sum: harmless for a scrape.
type lagHistogram struct {
	counts [15]atomic.Uint64 // per bucket of LagBuckets, the last for +Inf
	sumUs  atomic.Int64
}

// observe records a lag of us microseconds (a negative one, a feed clock
// ahead of the node's, as 0).
func (h *lagHistogram) observe(us int64) {
	us = max(us, 0)
	s := float64(us) / 1e6
	i := 0
	for i < len(LagBuckets) && s > LagBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumUs.Add(us)
}

// ReadLag returns the histogram of the feed lag per read (the time from
// the feed timestamp of the oldest tick a read returned to its hand-over):
// cumulative counts by upper bound of LagBuckets, the count and the sum in
// seconds, as prometheus.NewConstHistogram takes them.
func (s *ReaderStats) ReadLag() (buckets map[float64]uint64, count uint64, sum float64) {
	buckets = make(map[float64]uint64, len(LagBuckets))
	for i, ub := range LagBuckets {
		count += s.readLag.counts[i].Load()
		buckets[ub] = count
	}
	count += s.readLag.counts[len(LagBuckets)].Load()
	return buckets, count, float64(s.readLag.sumUs.Load()) / 1e6
}

// Lag returns the feed's lag now: the time since the feed timestamp of the
// newest tick the reader handed over (0 before any, or for a feed clock
// ahead of the node's). It grows while no tick comes: a stalled feed or an
// unreachable Redis shows, whenever it is asked.
func (s *ReaderStats) Lag(now time.Time) time.Duration {
	ts := s.NewestUs.Load()
	if ts == 0 {
		return 0
	}
	return max(now.Sub(time.UnixMicro(ts)), 0)
}
