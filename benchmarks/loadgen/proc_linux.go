package loadgen

import (
	"os"
	"syscall"
)

// childAttr makes the kernel kill a child process when the load generator
// dies, so a crashed run leaves no node or worker behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// stopProcess asks p to stop (SIGTERM: a node drains).
func stopProcess(p *os.Process) { _ = p.Signal(syscall.SIGTERM) }

// raisePriority gives process pid a nice value of -5 (needs root).
func raisePriority(pid int) error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, pid, -5)
}
