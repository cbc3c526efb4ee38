package redisstream

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/redistest"
)

// epollTargets returns the file descriptors that the process's epoll sets
// (Go's network poller's) watch, from /proc/self/fdinfo.
func epollTargets(t *testing.T) map[int]bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	watched := map[int]bool{}
	for _, e := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			// "tfd:        9 events:       19 data: ..."
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" {
				if n, err := strconv.Atoi(f[1]); err == nil {
					watched[n] = true
				}
			}
		}
	}
	return watched
}

// TestDetachedConnLeavesThePoller: a detached connection to a real Redis
// is off every epoll set (what saves the publisher a wake-up per batch)
// and still talks RESP both ways; a reply that arrived while nobody read
// is read later.
func TestDetachedConnLeavesThePoller(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTCP())
	addr := strings.TrimPrefix(srv.TCPURL(), "redis://")
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var orig int
	if err := mustSyscallConn(t, raw).Control(func(fd uintptr) { orig = int(fd) }); err != nil {
		t.Fatal(err)
	}
	if !epollTargets(t)[orig] {
		t.Fatalf("fd %d of a fresh connection is not on the poller: the check cannot see it", orig)
	}
	c := detach(raw)
	dc, ok := c.(*detachedConn)
	if !ok {
		t.Fatalf("detach returned a %T", c)
	}
	defer c.Close()
	if w := epollTargets(t); w[dc.fd] || w[orig] {
		t.Fatalf("after detach, the poller still watches fd %d or %d: %v", dc.fd, orig, w)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the reply waits unread (a pause, not a proof)
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("reply %q, %v", line, err)
	}
	// A command larger than the socket buffers: writes wait for room.
	if _, err := c.Write(appendCommand(nil, "ECHO", strings.Repeat("x", 4<<20))); err != nil {
		t.Fatal(err)
	}
	line, err = r.ReadString('\n')
	if err != nil || line != "$4194304\r\n" {
		t.Fatalf("reply header %q, %v", line, err)
	}
}

// TestDetachedConnDeadlines: a read waiting with nothing to read ends at
// its deadline; a past deadline set from another goroutine ends a read
// waiting without one (as a context's cancellation does); a past deadline
// fails a read or write at once, even with data to read; a closed
// connection refuses a new deadline.
func TestDetachedConnDeadlines(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTCP())
	raw, err := net.Dial("tcp", strings.TrimPrefix(srv.TCPURL(), "redis://"))
	if err != nil {
		t.Fatal(err)
	}
	c := detach(raw)
	var buf [64]byte

	if err := c.SetDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a deadline error", err)
	}

	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(buf[:])
		done <- err
	}()
	// The read may start waiting before or after the new deadline: either
	// way it must end.
	if err := c.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after a past deadline: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read waiting without a deadline did not see a past one set meanwhile")
	}

	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf[:]); err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Unix(1, 0))
	if _, err := c.Read(buf[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read with a reply waiting and a past deadline: %v, want a deadline error", err)
	}
	if _, err := c.Write([]byte("PING\r\n")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write with a past deadline: %v, want a deadline error", err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("deadline on a closed connection: %v", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second close: %v", err)
	}
}

func mustSyscallConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("a %T, not a TCP connection", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}
