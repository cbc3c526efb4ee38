//go:build unix

package transport

import "syscall"

// fdLimit raises the process's soft open-file limit to the hard one (Go
// does so at start as well) and returns it, or 0 if unknown.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r) // Go does this at start too
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	if r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
