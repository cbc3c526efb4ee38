package benchmarks

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The publisher's floor: what a publisher at least spends per batch on
// this machine, with no product in the way. A process (this test binary,
// run again with pubFloorEnv set) wakes once a window by a raw nanosleep,
// reads the reply to its last command and writes one SET of a batch's
// bytes to a Redis of its own, on one thread, with raw system calls on a
// blocking unix socket: the three things every publisher of batches must
// do (wake, write, read a reply), as cheaply as a program can. BenchmarkFeed
// runs it beside the simulator, at the same window and bytes per batch,
// and reports the simulator's CPU per tick as a multiple of it.
const pubFloorEnv = "TICKSTREAM_BENCH_PUB_FLOOR" // unix socket path,window,bytes

func TestMain(m *testing.M) {
	if spec := os.Getenv(pubFloorEnv); spec != "" {
		if err := pubFloor(spec); err != nil {
			fmt.Fprintln(os.Stderr, "publisher floor:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// pubFloor runs the floor loop until the process is killed.
func pubFloor(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		return fmt.Errorf("%s=%q: want path,window,bytes", pubFloorEnv, spec)
	}
	every, err := time.ParseDuration(parts[1])
	if err != nil {
		return err
	}
	size, err := strconv.Atoi(parts[2])
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(1)
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: parts[0]}); err != nil {
		return err
	}
	val := strings.Repeat("x", size)
	cmd := []byte(fmt.Sprintf("*3\r\n$3\r\nSET\r\n$5\r\nfloor\r\n$%d\r\n%s\r\n", len(val), val))
	reply := make([]byte, 64)
	next, pending := time.Now(), false
	for {
		next = next.Add(every)
		for left := time.Until(next); left > 0; left = time.Until(next) {
			ts := syscall.NsecToTimespec(int64(left))
			_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		}
		if pending { // "+OK\r\n": one read, the reply has long arrived
			if _, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&reply[0])), uintptr(len(reply))); e != 0 {
				return e
			}
		}
		for done := 0; done < len(cmd); {
			n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&cmd[done])), uintptr(len(cmd)-done))
			if e != 0 {
				return e
			}
			done += int(n)
		}
		pending = true
	}
}
