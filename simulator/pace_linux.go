package simulator

import (
	"context"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// threadPacer sleeps on its thread with a raw nanosleep(2), keeping the Go
// scheduler's P, instead of waiting on a runtime timer. For a process whose
// only busy goroutine is the simulator's (simulate --procs 1) that is one
// wake-up a batch and no scheduler work around it: a runtime timer waits in
// epoll with a millisecond's grain (a 2 ms window woke the process 1.5
// times a batch) and parks and resumes the goroutine through the
// scheduler. Measured on a 2-core VM, a Go loop doing nothing but wake
// every 2 ms spent 96 µs of CPU a wake on a time.Ticker, 46 µs with a raw
// nanosleep (a C loop: 48). After each sleep the goroutine yields
// (runtime.Gosched), so that what else the process runs on timers (a
// signal's delivery, a cancellation) waits at most a window; network
// waiters are polled only by the runtime's monitor meanwhile (~10 ms).
// Windows up to maxThreadSleep only: the monitor preempts a goroutine that
// holds the P 10 ms (its signal interrupts the nanosleep).
type threadPacer struct {
	every time.Duration
	next  time.Time
}

func newThreadPacer(every time.Duration) pacer {
	return &threadPacer{every: every, next: time.Now().Add(every)}
}

func (p *threadPacer) wait(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		left := time.Until(p.next)
		if left <= 0 {
			break
		}
		ts := syscall.NsecToTimespec(int64(left))
		// EINTR (a signal: the runtime's preemption, or one to handle)
		// goes round again.
		_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	// The next window starts a whole window after this one, or now when
	// the loop fell behind (no burst of catching up, as a Ticker drops
	// ticks).
	p.next = p.next.Add(p.every)
	if now := time.Now(); p.next.Before(now) {
		p.next = now
	}
	runtime.Gosched()
	return ctx.Err() == nil
}

func (p *threadPacer) stop() {}
