package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"tickstream/fanout"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A data write after a complete write whose deadline has passed must not
// fail: the raw write path has no deadline of its own.
func TestConnWriterSendAfterSendAllDeadline(t *testing.T) {
	srv, cli := tcpPair(t)
	var w connWriter
	w.init(srv)
	if w.raw == nil {
		t.Fatal("a TCP connection should be written raw")
	}
	if err := w.sendAll([]byte("head;"), 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if err := w.send([]byte("data;")); err != nil {
		t.Fatalf("send after the head's deadline: %v", err)
	}
	got := make([]byte, 10)
	_ = cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cli, got); err != nil || string(got) != "head;data;" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// A peer that does not read fills the socket: send returns ErrSlow at once
// (it never blocks), keeps the rest, and delivers everything, in order,
// once the peer reads again.
func TestConnWriterFullSocketKeepsTheRest(t *testing.T) {
	srv, cli := tcpPair(t)
	for _, c := range []net.Conn{srv, cli} {
		rc, _ := c.(syscall.Conn).SyscallConn()
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}
	var w connWriter
	w.init(srv)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	var want bytes.Buffer
	slow := false
	for i := 0; i < 200 && !slow; i++ {
		start := time.Now()
		err := w.send(chunk)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("send blocked for %v", d)
		}
		want.Write(chunk)
		switch {
		case errors.Is(err, fanout.ErrSlow):
			slow = true
		case err != nil:
			t.Fatal(err)
		}
	}
	if !slow {
		t.Fatal("800 KiB into a socket nobody reads never returned ErrSlow")
	}
	if len(w.pending) == 0 || len(w.pending) > 2*len(chunk) {
		t.Fatalf("pending %d bytes, want the rest of at most one batch", len(w.pending))
	}
	got := make(chan []byte)
	go func() {
		b := make([]byte, want.Len())
		_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.ReadFull(cli, b)
		got <- b[:n]
	}()
	for deadline := time.Now().Add(10 * time.Second); len(w.pending) > 0 && time.Now().Before(deadline); {
		if err := w.send(nil); err != nil && !errors.Is(err, fanout.ErrSlow) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer read %d bytes, want %d in order", len(b), want.Len())
	}
}
