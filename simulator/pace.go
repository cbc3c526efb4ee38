package simulator

import (
	"context"
	"time"
)

// pacer wakes the simulator's loop once a window.
type pacer interface {
	// wait returns after the next window's start, or false once ctx is
	// done.
	wait(ctx context.Context) bool
	stop()
}

// tickerPacer waits on a runtime timer (time.Ticker).
type tickerPacer struct{ tk *time.Ticker }

func (p tickerPacer) wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-p.tk.C:
		return true
	}
}

func (p tickerPacer) stop() { p.tk.Stop() }

// newPacer returns the pacer for cfg: a thread sleep where cfg.OwnThread
// allows one (Linux, windows up to maxThreadSleep), a ticker otherwise.
func newPacer(cfg Config) pacer {
	if cfg.OwnThread && cfg.Window <= maxThreadSleep {
		if p := newThreadPacer(cfg.Window); p != nil {
			return p
		}
	}
	return tickerPacer{time.NewTicker(cfg.Window)}
}

// maxThreadSleep is the longest window a thread pacer sleeps: a longer one
// wakes so rarely that the runtime timer costs little, and a thread that
// holds the scheduler's P for 10 ms is preempted by the runtime's monitor
// (a signal, and the sleep begun again).
const maxThreadSleep = 5 * time.Millisecond
