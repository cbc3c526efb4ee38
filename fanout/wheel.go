package fanout

import (
	"math"
	"sync"
	"time"
)

// wheel holds subscribers waiting for their interval to pass, bucketed by
// due time at a fixed resolution.
type wheel struct {
	res     int64
	mu      sync.Mutex
	buckets map[int64][]timer
	next    int64 // lowest bucket not yet fired
	wake    chan struct{}
}

// timer is one scheduled wake-up; gen must still match the subscriber's
// when it fires, or it was superseded.
type timer struct {
	s   *Subscriber
	gen uint64
}

func newWheel(res time.Duration) wheel {
	return wheel{res: int64(res), buckets: make(map[int64][]timer), wake: make(chan struct{}, 1)}
}

// add schedules s at (or just after) at.
func (w *wheel) add(at time.Time, s *Subscriber, gen uint64) {
	k := (at.UnixNano() + w.res - 1) / w.res
	w.mu.Lock()
	if k < w.next {
		k = w.next
	}
	_, had := w.buckets[k]
	w.buckets[k] = append(w.buckets[k], timer{s, gen})
	w.mu.Unlock()
	if !had {
		select { // a new bucket may be due before the housekeeper wakes
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// due removes and returns the timers due at or before now.
func (w *wheel) due(now time.Time) []timer {
	k := now.UnixNano() / w.res
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next == 0 {
		w.next = k
		for b := range w.buckets {
			w.next = min(w.next, b)
		}
	}
	var out []timer
	if k-w.next > int64(len(w.buckets)) {
		// A long gap (a paused process, a test clock): visit the buckets
		// rather than every slot.
		for b, subs := range w.buckets {
			if b <= k {
				out = append(out, subs...)
				delete(w.buckets, b)
			}
		}
		w.next = k + 1
		return out
	}
	for ; w.next <= k; w.next++ {
		if b, ok := w.buckets[w.next]; ok {
			out = append(out, b...)
			delete(w.buckets, w.next)
		}
	}
	return out
}

// nextDue returns when the earliest pending timer is due, and false if
// none is pending.
func (w *wheel) nextDue() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buckets) == 0 {
		return time.Time{}, false
	}
	first := int64(math.MaxInt64)
	for k := range w.buckets {
		first = min(first, k)
	}
	return time.Unix(0, first*w.res), true
}
