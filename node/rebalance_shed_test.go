package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/cluster"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// TestShedAsClientsSeeIt: what a subscriber sent away to rebalance gets,
// on each transport, and who is sent away first. An SSE stream ends with
// retry: and a goaway event whose reason says rebalancing (no id:, so the
// client keeps its Last-Event-ID); a WebSocket gets a goaway message and
// close code 1012. The most recently arrived go first, and none connected
// for less than the minimum age. /api/nodes and the metrics show the node.
func TestShedAsClientsSeeIt(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) { c.Name = "solo"; c.Cluster = cluster.Config{Interval: 200 * time.Millisecond} })
	shed := n.Hub.NewShedder()

	// The oldest: an SSE stream (kept), then a WebSocket; then a newer SSE
	// stream.
	type sse struct {
		r    *bufio.Reader
		body func() error
	}
	openSSE := func() sse {
		resp, err := http.Get(n.URL() + "/stream?symbols=AAPL")
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Close {
			t.Errorf("SSE response without Connection: close (the node closes a stream's socket)")
		}
		return sse{bufio.NewReader(resp.Body), resp.Body.Close}
	}
	kept := openSSE()
	defer kept.body()
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws?symbols=AAPL", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if got := n.Hub.Subscribers(); got != 2 {
			return fmt.Errorf("%d subscribers", got)
		}
		return nil
	})
	young := openSSE()
	defer young.body()
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if got := n.Hub.Subscribers(); got != 3 {
			return fmt.Errorf("%d subscribers", got)
		}
		return nil
	})

	if got := shed.SendAway(3, time.Hour); got != 0 {
		t.Fatalf("SendAway(3, 1h) = %d: subscribers younger than the minimum age were sent away", got)
	}
	if got := shed.SendAway(2, 0); got != 2 {
		t.Fatalf("SendAway(2, 0) = %d", got)
	}
	// The young SSE stream: retry:, goaway (rebalancing), end of stream.
	var lines []string
	for {
		l, err := young.r.ReadString('\n')
		if err != nil {
			break
		}
		lines = append(lines, strings.TrimRight(l, "\n"))
	}
	tail := strings.Join(lines[max(0, len(lines)-6):], "|")
	if !strings.Contains(tail, "retry: ") || !strings.Contains(tail, "event: goaway") || !strings.Contains(tail, "rebalancing") {
		t.Errorf("young SSE stream ended with %q, want retry: and a goaway saying rebalancing", tail)
	}
	if i := strings.LastIndex(tail, "event: goaway"); strings.Contains(tail[i:], "id: ") {
		t.Errorf("the goaway carries an id: %q", tail)
	}
	// The WebSocket: a goaway message, then close 1012.
	var msgs []string
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
				t.Fatalf("websocket: %v after %q, want close 1012", err, msgs)
			}
			break
		}
		msgs = append(msgs, string(m))
	}
	if len(msgs) == 0 || !strings.Contains(msgs[len(msgs)-1], `"type":"goaway"`) || !strings.Contains(msgs[len(msgs)-1], "rebalancing") {
		t.Errorf("websocket messages %q, want a goaway saying rebalancing last", msgs)
	}
	// The oldest stream is still there.
	if got := n.Hub.Subscribers(); got != 1 {
		t.Errorf("%d subscribers left, want the oldest one", got)
	}
	if got := shed.Shed(); got != 2 {
		t.Errorf("Shed() = %d", got)
	}

	// The cluster as the node sees it: itself, with its counts.
	nodetest.CheckFor(t, 10*time.Second, func() error {
		resp, err := http.Get(n.URL() + "/api/nodes")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v cluster.View
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return err
		}
		if v.Self != "solo" || v.Count != 1 || len(v.Nodes) != 1 || v.Nodes[0].Subscribers != 1 || v.Nodes[0].SSE != 1 || !v.Rebalance {
			return fmt.Errorf("/api/nodes: %+v", v)
		}
		return nil
	})
	// The announcement expires by itself (a node that dies disappears):
	// three announce intervals.
	if ttl, err := f.RDB.PTTL(context.Background(), "tickstream:{nodes}:solo").Result(); err != nil || ttl <= 0 || ttl > 600*time.Millisecond {
		t.Errorf("announcement TTL %v (%v), want (0, 600ms]", ttl, err)
	}
	for name, want := range map[string]float64{"tickstream_cluster_nodes": 1, "tickstream_rebalance_announced_subscribers": 1, "tickstream_rebalance_shedding": 0} {
		if got, err := nodetest.Metric(n.URL(), name, ""); err != nil || got != want {
			t.Errorf("%s = %v (%v), want %v", name, got, err, want)
		}
	}
}
