//go:build !linux

package simulator

import "time"

// newThreadPacer is Linux only (pace_linux.go): elsewhere the simulator
// waits on a runtime timer.
func newThreadPacer(time.Duration) pacer { return nil }
