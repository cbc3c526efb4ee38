//go:build !linux

package loadgen

import (
	"errors"
	"os"
	"syscall"
)

// childAttr has no parent-death signal outside Linux.
func childAttr() *syscall.SysProcAttr { return nil }

// stopProcess asks p to stop; where there is no SIGTERM it kills it.
func stopProcess(p *os.Process) {
	if err := p.Signal(os.Interrupt); err != nil {
		_ = p.Kill()
	}
}

// raisePriority is not supported outside Linux.
func raisePriority(int) error { return errors.New("not supported on this system") }
