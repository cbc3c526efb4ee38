package sysio

import (
	"syscall"
	"unsafe"
)

// Write and Read write and read a non-blocking socket with raw system
// calls. Go's syscall.Write and Read enter the scheduler's syscall state:
// after an idle spell the first one wakes the runtime's monitor thread
// (which then polls every 20 µs for a millisecond), and one that it sees in
// progress may have its P handed to another thread. A call on a
// non-blocking socket returns at once, so that state buys nothing here.
func Write(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, p) }

func Read(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, p) }

// rawIO is read(2) or write(2) of p; -1 and the errno on failure, as
// syscall.Read and Write return.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
