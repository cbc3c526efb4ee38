// Package gcfloor keeps the garbage collector from running on a small heap
// as often as on a large one. With GOGC at 100 the collector runs each time
// the heap doubles: a node with no subscribers holds ~6 MB and allocates
// ~6 MB a second from the feed (the ticks' bytes), so it collected about
// once a second, ~10–20 % of its CPU. Keeping the heap goal at least a
// floor above the live heap (GOGC raised while the live heap is below the
// floor, back to 100 above it) makes an idle node collect a few times less
// often for at most that floor of memory, and changes nothing for a node
// whose live heap is above the floor (where the memory per subscriber is
// measured). An explicit GOGC in the environment is left alone.
package gcfloor

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Period is how often the live heap is read.
const Period = time.Second

// maxPercent bounds the GOGC set: a live heap of less than 1/100 of the
// floor gets no more than this.
const maxPercent = 10_000

// Percent returns the GOGC that makes the heap goal at least live+floor,
// and at least the default 100.
func Percent(live, floor uint64) int {
	if floor == 0 {
		return 100
	}
	if live == 0 {
		return maxPercent
	}
	p := (floor*100 + live - 1) / live // goal = live × (1 + p/100) ≥ live + floor
	return int(min(max(p, 100), maxPercent))
}

// Run keeps the heap goal at least floor bytes above the live heap until
// ctx is done, then sets GOGC back to what it was. It does nothing when
// floor is 0 or GOGC is set in the environment.
func Run(ctx context.Context, floor uint64) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	was, cur := debug.SetGCPercent(100), 100
	defer func() { debug.SetGCPercent(was) }()
	t := time.NewTicker(Period)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			// Moved only when off by a tenth: SetGCPercent is not free.
			if want := Percent(sample[0].Value.Uint64(), floor); want*10 < cur*9 || want*10 > cur*11 {
				debug.SetGCPercent(want)
				cur = want
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
