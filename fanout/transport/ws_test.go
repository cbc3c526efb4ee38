package transport_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// wsMsg is any server message.
type wsMsg struct {
	Type       string            `json:"type"`
	Error      string            `json:"error"`
	Op         string            `json:"op"`
	Symbols    []string          `json:"symbols"`
	IntervalMs int64             `json:"interval_ms"`
	Cursor     string            `json:"cursor"`
	Data       []json.RawMessage `json:"data"`
	ID         json.RawMessage   `json:"id"`
}

func dialWS(t *testing.T, url string, hdr http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(strings.Replace(url, "http://", "ws://", 1), hdr)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", url, err, status)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func readWS(t *testing.T, c *websocket.Conn) wsMsg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m wsMsg
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

// readUntil reads messages until one of type typ.
func readUntil(t *testing.T, c *websocket.Conn, typ string) (wsMsg, []wsMsg) {
	t.Helper()
	var before []wsMsg
	for {
		m := readWS(t, c)
		if m.Type == typ {
			return m, before
		}
		before = append(before, m)
	}
}

func ticksOf(t *testing.T, ms ...wsMsg) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, m := range ms {
		for _, d := range m.Data {
			tk, err := feed.DecodeTick(d)
			if err != nil {
				t.Fatal(err)
			}
			out[tk.Sym] = tk.Seq
		}
	}
	return out
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func TestWSSubscribeUnsubscribeInterval(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT", "SPY")
	n := f.StartNode(nil)
	c := dialWS(t, n.URL()+"/ws", nil)
	if m := readWS(t, c); m.Type != "hello" {
		t.Fatalf("first message %+v", m)
	}
	send(t, c, `{"op":"subscribe","symbols":["AAPL","MSFT"],"interval":"50ms"}`)
	sub := readWS(t, c)
	if sub.Type != "subscribed" || sub.IntervalMs != 50 || len(sub.Symbols) != 2 {
		t.Fatalf("subscribed %+v", sub)
	}
	_, snap := readUntil(t, c, "ready")
	if got := ticksOf(t, snap...); got["AAPL"] != 1 || got["MSFT"] != 1 || len(got) != 2 {
		t.Fatalf("snapshot %v", got)
	}
	f.Tick("AAPL")
	if got := ticksOf(t, readWS(t, c)); got["AAPL"] != 2 {
		t.Fatalf("update %v", got)
	}
	// Add SPY on the open socket: answered, then its snapshot.
	send(t, c, `{"op":"subscribe","symbols":["spy"]}`)
	if m := readWS(t, c); m.Type != "subscribed" || len(m.Symbols) != 3 {
		t.Fatalf("%+v", m)
	}
	if got := ticksOf(t, readWS(t, c)); got["SPY"] != 1 {
		t.Fatalf("SPY snapshot %v", got)
	}
	// Drop AAPL and slow down.
	send(t, c, `{"op":"unsubscribe","symbols":["AAPL"]}`)
	if m := readWS(t, c); m.Type != "subscribed" || strings.Join(m.Symbols, ",") != "MSFT,SPY" {
		t.Fatalf("%+v", m)
	}
	send(t, c, `{"op":"interval","interval":2000}`)
	if m := readWS(t, c); m.Type != "subscribed" || m.IntervalMs != 2000 {
		t.Fatalf("%+v", m)
	}
	f.Tick("AAPL", "MSFT")
	if got := ticksOf(t, readWS(t, c)); got["MSFT"] != 2 || got["AAPL"] != 0 {
		t.Fatalf("after unsubscribe %v", got)
	}
	send(t, c, `{"op":"ping","id":42}`)
	if m := readWS(t, c); m.Type != "pong" || string(m.ID) != "42" {
		t.Fatalf("%+v", m)
	}
}

func TestWSBadRequestsKeepTheSocket(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) { c.Transport.MaxSymbols = 2 })
	c := dialWS(t, n.URL()+"/ws", nil)
	readWS(t, c)
	for _, bad := range []string{
		`not json`,
		`{"symbols":["AAPL"]}`,
		`{"op":"explode"}`,
		`{"op":"unsubscribe","symbols":["AAPL"]}`,
		`{"op":"subscribe","symbols":["NOPE"]}`,
		`{"op":"subscribe","symbols":["AAPL","MSFT","SPY"]}`,
		`{"op":"subscribe","symbols":["AAPL"],"interval":"-1s"}`,
		`{"op":"subscribe","symbols":["AAPL"],"mode":"fast"}`,
	} {
		send(t, c, bad)
		if m := readWS(t, c); m.Type != "error" || m.Error == "" {
			t.Errorf("%s → %+v", bad, m)
		}
	}
	send(t, c, `{"op":"subscribe","symbols":["AAPL"]}`)
	if m := readWS(t, c); m.Type != "subscribed" {
		t.Fatalf("socket unusable after errors: %+v", m)
	}
	// A binary frame closes with 1003, an oversized one with 1009.
	_ = c.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
	if code := closeCode(t, c); code != websocket.CloseUnsupportedData {
		t.Errorf("binary: close %d", code)
	}
	c2 := dialWS(t, n.URL()+"/ws", nil)
	readWS(t, c2)
	_ = c2.WriteMessage(websocket.TextMessage, []byte(`{"op":"ping","id":"`+strings.Repeat("x", 70<<10)+`"}`))
	if code := closeCode(t, c2); code != websocket.CloseMessageTooBig {
		t.Errorf("oversized: close %d", code)
	}
}

func closeCode(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			t.Fatalf("read: %v (no close frame)", err)
		}
	}
}

func TestWSHandshakeChecks(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	// Plain GET: 426 with a JSON error.
	resp, err := http.Get(n.URL() + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("plain GET /ws: %s", resp.Status)
	}
	// Another site's page cannot open a socket with a trader's cookies.
	_, resp, err = websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws", http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: %v %v", err, resp)
	}
	// The node's own origin and localhost are fine.
	dialWS(t, n.URL()+"/ws", http.Header{"Origin": {n.URL()}})
	dialWS(t, n.URL()+"/ws", http.Header{"Origin": {"http://localhost:3000"}})
	// Bad query parameters are refused before the upgrade.
	_, resp, err = websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws?symbols=NOPE", nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Errorf("bad symbols: %v %v", err, resp)
	}
}

func TestWSRawQuerySubscribeAndResume(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(nil)
	c := dialWS(t, n.URL()+"/ws?symbols=AAPL&mode=raw", nil)
	readUntil(t, c, "ready")
	f.Tick("AAPL")
	f.Tick("AAPL")
	var cursor string
	got := 0
	for got < 2 {
		m := readWS(t, c)
		got += len(m.Data)
		cursor = m.Cursor
	}
	c.Close()
	f.Tick("AAPL")
	f.Tick("AAPL")
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if l := n.Hub.Latest([]string{"AAPL"})[0]; l.Seq != 5 {
			return errors.New("node not caught up")
		}
		return nil
	})
	c2 := dialWS(t, n.URL()+"/ws", nil)
	readWS(t, c2)
	send(t, c2, `{"op":"subscribe","symbols":["AAPL"],"mode":"raw","cursor":"`+cursor+`"}`)
	readWS(t, c2) // subscribed
	_, replay := readUntil(t, c2, "ready")
	var seqs []uint64
	for _, m := range replay {
		for _, d := range m.Data {
			tk, _ := feed.DecodeTick(d)
			seqs = append(seqs, tk.Seq)
		}
	}
	if len(seqs) != 2 || seqs[0] != 4 || seqs[1] != 5 {
		t.Errorf("replayed %v, want [4 5]", seqs)
	}
}

func TestWSPeerThatStopsAnsweringPingsIsDropped(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) {
		c.Transport.PingInterval = 200 * time.Millisecond
		c.Transport.PongTimeout = 300 * time.Millisecond
	})
	// This client answers pings only while it reads; it reads until ready,
	// then goes silent.
	c := dialWS(t, n.URL()+"/ws?symbols=AAPL", nil)
	readUntil(t, c, "ready")
	if n.Hub.Subscribers() != 1 {
		t.Fatalf("subscribers %d", n.Hub.Subscribers())
	}
	// Within ping + pong timeout (+ slack) the node drops it and releases
	// its subscription.
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if k := n.Hub.Subscribers(); k != 0 {
			return fmt.Errorf("%d subscribers still", k)
		}
		return nil
	})
	// A client that keeps reading (and so answers pings) stays.
	c2 := dialWS(t, n.URL()+"/ws?symbols=AAPL", nil)
	readUntil(t, c2, "ready")
	var pings atomic.Int32
	c2.SetPingHandler(func(d string) error {
		pings.Add(1)
		return c2.WriteControl(websocket.PongMessage, []byte(d), time.Now().Add(time.Second))
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c2.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// Five pings answered span at least 800ms of the node's time, past its
	// ping + pong timeout (500ms): had it meant to drop this peer, it would
	// have by then.
	nodetest.CheckFor(t, 10*time.Second, func() error {
		select {
		case <-done:
			t.Fatal("a peer answering pings was disconnected")
		default:
		}
		if k := pings.Load(); k < 5 {
			return fmt.Errorf("%d pings so far", k)
		}
		return nil
	})
	if n.Hub.Subscribers() != 1 {
		t.Errorf("a peer answering pings was dropped")
	}
	c2.Close()
	<-done
}

// TestWSSnapshotCarriesSessionReference: the subscribe reply's snapshot
// ticks carry prev_close and open (when known), live updates do not.
func TestWSSnapshotCarriesSessionReference(t *testing.T) {
	f, n := refFeed(t)
	c := dialWS(t, n.URL()+"/ws", nil)
	readUntil(t, c, "hello")
	send(t, c, `{"op":"subscribe","symbols":["AAPL","MSFT"],"interval":"50ms"}`)
	_, before := readUntil(t, c, "ready")
	var snap [][]byte
	for _, m := range before {
		for _, d := range m.Data {
			snap = append(snap, d)
		}
	}
	checkRefs(t, "WebSocket", snap)
	f.Tick("AAPL")
	m := readWS(t, c)
	if m.Type != "tick" || len(m.Data) != 1 || strings.Contains(string(m.Data[0]), `"prev_close"`) || strings.Contains(string(m.Data[0]), `"open"`) {
		t.Errorf("live update %+v: want one AAPL tick without the reference", m)
	}
}
