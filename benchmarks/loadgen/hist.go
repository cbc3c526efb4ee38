package loadgen

import (
	"math"
	"sync"
	"time"
)

// Hist is a log-bucketed histogram of durations (±2.5% per bucket, 10 µs to
// hours). It is safe for concurrent use.
type Hist struct {
	mu     sync.Mutex
	counts [420]uint64
	n      uint64
}

const histBase = 1.05

func bucketOf(d time.Duration) int {
	us := float64(d) / 1e3
	if us <= 10 {
		return 0
	}
	b := int(math.Log(us/10)/math.Log(histBase)) + 1
	return min(b, 419)
}

// Add records one duration.
func (h *Hist) Add(d time.Duration) {
	b := bucketOf(d)
	h.mu.Lock()
	h.counts[b]++
	h.n++
	h.mu.Unlock()
}

// Merge adds o's samples, under one lock.
func (h *Hist) Merge(o *Hist) {
	o.mu.Lock()
	c, n := o.counts, o.n
	o.mu.Unlock()
	h.mu.Lock()
	for i, v := range c {
		h.counts[i] += v
	}
	h.n += n
	h.mu.Unlock()
}

// Count returns the number of samples.
func (h *Hist) Count() uint64 { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

// Quantile returns the q-quantile (0..1), the upper bound of its bucket.
func (h *Hist) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= max(rank, 1) {
			if i == 0 {
				return 10 * time.Microsecond
			}
			return time.Duration(10 * math.Pow(histBase, float64(i)) * 1e3)
		}
	}
	return time.Hour
}

// Counts returns a copy of the bucket counts, for another process to
// Import.
func (h *Hist) Counts() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.counts[:]...)
}

// Import adds counts exported by Counts.
func (h *Hist) Import(c []uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 0; i < len(c) && i < len(h.counts); i++ {
		h.counts[i] += c[i]
		h.n += c[i]
	}
}
