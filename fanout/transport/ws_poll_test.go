//go:build linux

package transport_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// These tests cover the node's WebSocket poller (ws_poll_linux.go): client
// frames read by one epoll loop, parsed when the socket is readable.

// polledWS is a WebSocket client on a bare TCP socket that writes frames
// exactly as a test builds them and reads the server's frames one by one.
type polledWS struct {
	net.Conn
	br *bufio.Reader
}

// dialPolledWS upgrades a TCP connection; early is written right behind
// the handshake, in the same write.
func dialPolledWS(t testing.TB, addr, path string, early []byte) *polledWS {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n",
		path, addr, base64.StdEncoding.EncodeToString(key))
	if _, err := c.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("upgrade: %q %v", line, err)
	}
	for line != "\r\n" {
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return &polledWS{c, br}
}

func (c *polledWS) write(t testing.TB, b []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// next reads one server frame (servers do not mask).
func (c *polledWS) next(t testing.TB) (byte, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		_, _ = io.ReadFull(c.br, e[:])
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		_, _ = io.ReadFull(c.br, e[:])
		n = binary.BigEndian.Uint64(e[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, p
}

// message reads frames until a text message, answering nothing.
func (c *polledWS) message(t testing.TB) wsMsg {
	t.Helper()
	for {
		op, p := c.next(t)
		switch op {
		case websocket.TextMessage:
			var m wsMsg
			if err := json.Unmarshal(p, &m); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			return m
		case websocket.CloseMessage:
			t.Fatalf("closed: %v", p)
		}
	}
}

// closeCode reads frames until the close frame and returns its code.
func (c *polledWS) closeCode(t testing.TB) int {
	t.Helper()
	for {
		if op, p := c.next(t); op == websocket.CloseMessage {
			if len(p) < 2 {
				return websocket.CloseNoStatusReceived
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

func TestWSPolledFragmentsWithControlFramesBetween(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	c := dialPolledWS(t, n.Addr, "/ws", nil)
	if m := c.message(t); m.Type != "hello" {
		t.Fatalf("first message %+v", m)
	}
	// One write holding it all, then the same spread over writes.
	frames := [][]byte{
		transport.MaskedFrame(false, websocket.TextMessage, []byte(`{"op":"pi`)),
		transport.MaskedFrame(true, websocket.PingMessage, []byte("still there?")),
		transport.MaskedFrame(false, 0, []byte(`ng","id"`)),
		transport.MaskedFrame(true, websocket.PongMessage, nil),
		transport.MaskedFrame(true, 0, []byte(`:5}`)),
	}
	for _, spread := range []bool{false, true} {
		var all []byte
		for _, fr := range frames {
			if spread {
				c.write(t, fr)
			} else {
				all = append(all, fr...)
			}
		}
		if !spread {
			c.write(t, all)
		}
		if op, p := c.next(t); op != websocket.PongMessage || string(p) != "still there?" {
			t.Fatalf("spread %v: want the pong frame, got op %d %q", spread, op, p)
		}
		if m := c.message(t); m.Type != "pong" || string(m.ID) != "5" {
			t.Fatalf("spread %v: %+v", spread, m)
		}
	}
}

func TestWSPolledByteByByte(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(nil)
	c := dialPolledWS(t, n.Addr, "/ws", nil)
	c.message(t) // hello
	msg := append(transport.MaskedFrame(true, websocket.PingMessage, []byte("x")),
		transport.MaskedFrame(true, websocket.TextMessage, []byte(`{"op":"subscribe","symbols":["AAPL"]}`))...)
	for i := range msg {
		c.write(t, msg[i:i+1])
		if i%8 == 0 {
			time.Sleep(time.Millisecond) // let the node read what came so far on its own
		}
	}
	if op, _ := c.next(t); op != websocket.PongMessage {
		t.Fatalf("op %d, want a pong", op)
	}
	if m := c.message(t); m.Type != "subscribed" || len(m.Symbols) != 1 {
		t.Fatalf("%+v", m)
	}
}

// Frames sent right behind the handshake, before the 101 is read, sit in
// fasthttp's reader: the node takes them from it.
func TestWSPolledFramesBehindTheHandshake(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	early := append(transport.MaskedFrame(true, websocket.TextMessage, []byte(`{"op":"ping","id":"a"}`)),
		transport.MaskedFrame(true, websocket.TextMessage, []byte(`{"op":"ping","id":"b"}`))...)
	c := dialPolledWS(t, n.Addr, "/ws", early)
	if m := c.message(t); m.Type != "hello" {
		t.Fatalf("%+v", m)
	}
	for _, id := range []string{`"a"`, `"b"`} {
		if m := c.message(t); m.Type != "pong" || string(m.ID) != id {
			t.Fatalf("%+v, want pong %s", m, id)
		}
	}
}

func TestWSPolledProtocolErrorsClose(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	unmasked := transport.MaskedFrame(true, websocket.TextMessage, []byte(`{"op":"ping"}`))
	unmasked[1] &^= 0x80
	for _, tc := range []struct {
		name  string
		bytes []byte
		code  int
	}{
		{"unmasked", unmasked, websocket.CloseProtocolError},
		// Only the header of a 1 MB message: refused before its payload.
		{"oversize header", transport.MaskedFrame(true, websocket.TextMessage, make([]byte, 1<<20))[:14], websocket.CloseMessageTooBig},
		{"oversize fragments", append(transport.MaskedFrame(false, websocket.TextMessage, make([]byte, 40<<10)),
			transport.MaskedFrame(false, 0, make([]byte, 40<<10))...), websocket.CloseMessageTooBig},
		{"long control frame", transport.MaskedFrame(true, websocket.PingMessage, make([]byte, 126)), websocket.CloseProtocolError},
		{"continuation first", transport.MaskedFrame(true, 0, []byte("x")), websocket.CloseProtocolError},
		{"binary", transport.MaskedFrame(true, websocket.BinaryMessage, []byte{1}), websocket.CloseUnsupportedData},
		{"invalid UTF-8", transport.MaskedFrame(true, websocket.TextMessage, []byte("\xff")), websocket.CloseInvalidFramePayloadData},
		{"bad close code", transport.MaskedFrame(true, websocket.CloseMessage, []byte{0x03, 0xed}), websocket.CloseProtocolError},
	} {
		c := dialPolledWS(t, n.Addr, "/ws", nil)
		c.message(t) // hello
		c.write(t, tc.bytes)
		if code := c.closeCode(t); code != tc.code {
			t.Errorf("%s: close %d, want %d", tc.name, code, tc.code)
		}
	}
}

// A client's clean close is answered with its code and releases its
// subscriber and its place in the per-address count.
func TestWSPolledCleanCloseReleases(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) { c.Transport.MaxPerAddress = 1 })
	for i := range 3 { // the one place is free again each time
		c := dialPolledWS(t, n.Addr, "/ws?symbols=AAPL", nil)
		for c.message(t).Type != "ready" {
		}
		if k := n.Hub.Subscribers(); k != 1 {
			t.Fatalf("round %d: %d subscribers", i, k)
		}
		c.write(t, transport.MaskedFrame(true, websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")))
		if code := c.closeCode(t); code != websocket.CloseNormalClosure {
			t.Fatalf("round %d: close echoed %d", i, code)
		}
		// The node closes the socket after its close frame.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("round %d: after the close frame: %v, want EOF", i, err)
		}
		nodetest.CheckFor(t, 5*time.Second, func() error {
			if k := n.Hub.Subscribers(); k != 0 {
				return fmt.Errorf("%d subscribers", k)
			}
			if v := metric(t, n.URL(), "tickstream_subscribers", `transport="ws"`); v != 0 {
				return fmt.Errorf("ws subscribers gauge %v", v)
			}
			return nil
		})
	}
}

// Idle WebSockets cost no goroutine: after 1,000 connect and subscribe,
// the process's goroutine count comes back to where it was (fasthttp's
// workers park for a while after serving the handshakes).
func TestWSPolledIdleSocketsHoldNoGoroutine(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 sockets")
	}
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	// No pings within the test: the raw clients never answer them.
	n := f.StartNode(func(c *node.Config) { c.Transport.PingInterval = time.Hour })
	warm := dialPolledWS(t, n.Addr, "/ws?symbols=AAPL", nil)
	for warm.message(t).Type != "ready" {
	}
	var before int
	nodetest.CheckFor(t, 30*time.Second, func() error { // the node settled after its start
		g1 := runtime.NumGoroutine()
		time.Sleep(200 * time.Millisecond)
		before = runtime.NumGoroutine()
		if before > g1 {
			return fmt.Errorf("goroutines still rising: %d -> %d", g1, before)
		}
		return nil
	})
	const k = 1000
	conns := make([]*polledWS, 0, k)
	for range k {
		conns = append(conns, dialPolledWS(t, n.Addr, "/ws?symbols=AAPL", nil))
	}
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if s := n.Hub.Subscribers(); s != k+1 {
			return fmt.Errorf("%d subscribers", s)
		}
		return nil
	})
	peak := runtime.NumGoroutine()
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > before+50 {
			return fmt.Errorf("%d goroutines with %d idle WebSockets, %d before", g, k, before)
		}
		return nil
	})
	t.Logf("goroutines: %d before, %d at the peak of the handshakes, %d with %d idle WebSockets", before, peak, runtime.NumGoroutine(), k)
	// Still served: a ping on the last socket is answered.
	last := conns[k-1]
	last.write(t, transport.MaskedFrame(true, websocket.TextMessage, []byte(`{"op":"ping","id":1}`)))
	for last.message(t).Type != "pong" {
	}
	for _, c := range conns {
		c.Close()
	}
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if s := n.Hub.Subscribers(); s != 1 {
			return fmt.Errorf("%d subscribers after the clients left", s)
		}
		return nil
	})
}

// Shutdown closes the WebSockets still open without a subscription (those
// with one were drained by the hub before) with 1001.
func TestWSPolledShutdownClosesIdle(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	c := dialPolledWS(t, n.Addr, "/ws", nil)
	c.message(t) // hello
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = n.Shutdown(ctx) }()
	if code := c.closeCode(t); code != websocket.CloseGoingAway {
		t.Fatalf("close %d, want 1001", code)
	}
}
