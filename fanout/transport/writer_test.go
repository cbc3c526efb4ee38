package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/internal/wait"
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

// fillSocket makes srv's send path tiny and writes to it until it is
// full: the writer then holds some bytes pending.
func fillSocket(t *testing.T, w *connWriter, srv, cli net.Conn) []byte {
	t.Helper()
	smallBuffers(srv, cli)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	var sent []byte
	for i := 0; i < 2000; i++ {
		err := w.send(chunk)
		sent = append(sent, chunk...)
		if errors.Is(err, fanout.ErrSlow) {
			return sent
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("2 MiB into a socket nobody reads never returned ErrSlow")
	return nil
}

// Past the per-connection bound, send refuses (the caller drops the
// subscriber) and keeps nothing more; the node's budget is returned once
// the connection is closed.
func TestConnWriterBoundsPendingBytes(t *testing.T) {
	srv, cli := tcpPair(t)
	budget := &byteBudget{limit: 1 << 20}
	var w connWriter
	w.init(srv, budget, 8<<10)
	fillSocket(t, &w, srv, cli)
	held := w.pendingLen()
	if held == 0 || budget.Used() != int64(held) {
		t.Fatalf("pending %d, budget used %d", held, budget.Used())
	}
	if err := w.send(make([]byte, 8<<10)); !errors.Is(err, fanout.ErrSlowConsumer) {
		t.Fatalf("send past the bound: %v, want ErrSlowConsumer", err)
	}
	if w.pendingLen() != held {
		t.Fatalf("pending grew to %d past the bound", w.pendingLen())
	}
	w.close(nil) // it lingers (the peer does not read), then gives the budget back
	wait.For(t, closeLinger+5*time.Second, func() error {
		if u := budget.Used(); u != 0 {
			return fmt.Errorf("budget used %d after close", u)
		}
		return nil
	})
}

// Past the node's budget, send refuses even under the connection's bound.
func TestConnWriterNodeBudget(t *testing.T) {
	srv, cli := tcpPair(t)
	budget := &byteBudget{limit: 1}
	var w connWriter
	w.init(srv, budget, 0)
	smallBuffers(srv, cli)
	chunk := make([]byte, 1024)
	for i := 0; ; i++ {
		err := w.send(chunk)
		if errors.Is(err, fanout.ErrSlowConsumer) {
			break
		}
		if err != nil || i > 4000 {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if budget.Used() != 0 {
		t.Fatalf("budget used %d, want nothing reserved past the limit", budget.Used())
	}
}

// flushLater delivers what is pending once the peer reads, with no other
// write coming by.
func TestConnWriterFlushLater(t *testing.T) {
	srv, cli := tcpPair(t)
	var w connWriter
	w.init(srv, nil, 0)
	sent := fillSocket(t, &w, srv, cli)
	w.flushLater()
	b := make([]byte, len(sent))
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(cli, b); err != nil || !bytes.Equal(b, sent) {
		t.Fatalf("peer read %d bytes, %v; want %d in order", len(b), err, len(sent))
	}
}

// A peer that does not read fills the socket: send returns ErrSlow at once
// (it never blocks), keeps the rest, and delivers everything, in order,
// once the peer reads again.
func TestConnWriterFullSocketKeepsTheRest(t *testing.T) {
	srv, cli := tcpPair(t)
	smallBuffers(srv, cli)
	var w connWriter
	w.init(srv, nil, 0)
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

// Small frames sent while others wait behind a full socket are kept whole
// and in order (pending's spare capacity once lost their tails), and the
// node's budget comes back to zero once the peer has read everything.
func TestConnWriterFramesBehindAFullSocketStayWhole(t *testing.T) {
	srv, cli := tcpPair(t)
	budget := &byteBudget{limit: 64 << 20}
	var w connWriter
	w.init(srv, budget, 0)
	sent := fillSocket(t, &w, srv, cli)
	for i := range 500 {
		f := []byte(fmt.Sprintf("<frame %d>", i))
		if err := w.send(f); err != nil && !errors.Is(err, fanout.ErrSlow) {
			t.Fatal(err)
		}
		sent = append(sent, f...)
	}
	w.flushLater()
	got := make([]byte, len(sent))
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("peer read %v; bytes equal: %v", err, bytes.Equal(got, sent))
	}
	wait.For(t, 5*time.Second, func() error {
		if u := budget.Used(); u != 0 {
			return fmt.Errorf("budget used %d after everything was read", u)
		}
		return nil
	})
}

// A stream's head may leave more than the per-connection bound pending; it
// is flushed, and the stream goes on, once the peer reads.
func TestConnWriterLargeHeadThenData(t *testing.T) {
	srv, cli := tcpPair(t)
	smallBuffers(srv, cli)
	var w connWriter
	w.init(srv, nil, 8<<10)
	head := bytes.Repeat([]byte("h"), 256<<10)
	if err := w.sendHead(head); !errors.Is(err, fanout.ErrSlow) {
		t.Fatalf("head: %v, want ErrSlow", err)
	}
	w.flushLater()
	data := []byte("data")
	if err := w.send(data); err != nil && !errors.Is(err, fanout.ErrSlow) {
		t.Fatalf("data behind a large head: %v", err)
	}
	want := append(append([]byte(nil), head...), data...)
	got := make([]byte, len(want))
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(cli, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("peer read %v; bytes equal: %v", err, bytes.Equal(got, want))
	}
}

// smallBuffers shrinks both ends' socket buffers to 4 KiB, so a peer that
// does not read fills them at once.
func smallBuffers(conns ...net.Conn) {
	for _, c := range conns {
		rc, _ := c.(syscall.Conn).SyscallConn()
		_ = rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}
}

// A connection closed with bytes pending (a subscriber sent away in the
// middle of a batch) writes them whole, then the last frame, then closes:
// the peer resumes after a complete batch and sees no tick twice.
func TestConnWriterCloseWritesWhatIsPending(t *testing.T) {
	srv, cli := tcpPair(t)
	budget := &byteBudget{limit: 64 << 20}
	var w connWriter
	w.init(srv, budget, 0)
	sent := fillSocket(t, &w, srv, cli)
	if !w.close([]byte("<goaway>")) {
		t.Fatal("close did not close")
	}
	if w.close(nil) {
		t.Fatal("closed twice")
	}
	if err := w.send([]byte("after")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	sent = append(sent, "<goaway>"...)
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(cli) // to EOF: the socket is closed once all is written
	if err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("peer read %d bytes (%v), want the %d pending and the goaway; equal: %v", len(got), err, len(sent), bytes.Equal(got, sent))
	}
	if u := budget.Used(); u != 0 {
		t.Fatalf("budget used %d after close", u)
	}
}

// A peer that does not read is closed closeLinger after its close, and
// what it was owed is given back to the node's budget.
func TestConnWriterCloseLingersAtMostCloseLinger(t *testing.T) {
	defer func(d time.Duration) { closeLinger = d }(closeLinger)
	closeLinger = 200 * time.Millisecond
	srv, cli := tcpPair(t)
	budget := &byteBudget{limit: 64 << 20}
	var w connWriter
	w.init(srv, budget, 0)
	fillSocket(t, &w, srv, cli)
	if budget.Used() == 0 {
		t.Fatal("nothing pending")
	}
	w.close([]byte("<goaway>"))
	wait.For(t, 5*time.Second, func() error {
		if u := budget.Used(); u != 0 {
			return fmt.Errorf("budget used %d", u)
		}
		if _, err := srv.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("socket still open (%v)", err)
		}
		return nil
	})
}
