package transport_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// TestHTTPRequestsCountedByRouteAndStatus guards
// tickstream_http_requests_total{route,code}: every answer is counted
// under its registered route pattern and status, refusals (400, 401, 403,
// 429) included; a path no route matches counts as route "other", the
// dashboard's files as "/"; a stream counts once, at its start (SSE 200,
// WebSocket 101).
func TestHTTPRequestsCountedByRouteAndStatus(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) {
		c.MetricsAddr = "127.0.0.1:0"
		c.Transport.MetricsEvery = -1
		c.Transport.AuthSecret = secret
		c.Transport.MaxPerAddress = 2
	})
	tok, err := transport.MintToken(secret, []string{"AAPL"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, want int) {
		t.Helper()
		resp, err := http.Get(n.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	get("/healthz", 200)
	get("/api/snapshot?symbols=AAPL", 401)
	get("/api/snapshot?symbols=MSFT&access_token="+tok, 403)
	get("/api/snapshot?symbols=NOPE&access_token="+tok, 400)
	get("/api/snapshot?symbols=AAPL&access_token="+tok, 200)
	get("/no/such/path", 404)
	get("/", 200)

	// One SSE stream and one WebSocket fill the address's two streams; a
	// third (a WebSocket) is refused with 429.
	st := openStream(t, n.URL()+"/stream?symbols=AAPL&access_token="+tok, "")
	defer st.cancel()
	wsURL := "ws://" + n.Addr + "/ws?symbols=AAPL&access_token=" + tok
	ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, resp, err := websocket.DefaultDialer.Dial(wsURL, nil); err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("third stream: %v %v, want 429", resp, err)
	}

	want := map[string]float64{
		`code="200",route="/healthz"`:      1,
		`code="401",route="/api/snapshot"`: 1,
		`code="403",route="/api/snapshot"`: 1,
		`code="400",route="/api/snapshot"`: 1,
		`code="200",route="/api/snapshot"`: 1,
		`code="404",route="other"`:         1,
		`code="200",route="/"`:             1,
		`code="200",route="/stream"`:       1,
		`code="101",route="/ws"`:           1,
		`code="429",route="/ws"`:           1,
	}
	metrics := "http://" + n.MetricsAddr
	for sel, w := range want {
		if got, err := nodetest.Metric(metrics, "tickstream_http_requests_total", sel); err != nil || got != w {
			t.Errorf("tickstream_http_requests_total{%s} = %v (%v), want %v", sel, got, err, w)
		}
	}
	if got, _ := nodetest.Metric(metrics, "tickstream_http_requests_total", ""); got != float64(len(want)) {
		t.Errorf("%v requests counted in all, want %d", got, len(want))
	}
	if got, _ := nodetest.Metric(metrics, "tickstream_refused_total", `reason="max_per_address"`); got != 1 {
		t.Errorf("refused max_per_address = %v, want 1", got)
	}
}

// TestRefusalReasonsPresentAtZero guards tickstream_refused_total: every
// reason has a series from the start, at zero, before any refusal.
func TestRefusalReasonsPresentAtZero(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(func(c *node.Config) { c.Transport.MetricsEvery = -1 })
	resp, err := http.Get(n.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	for _, reason := range []string{"max_conns", "max_conns_per_address", "evicted_silent", "max_per_address",
		"message_rate", "slow_replies", "replay_busy", "replay_stalled", "replay_gap", "replay_budget",
		"replay_bad_cursor", "replay_future_cursor", "replay_node_behind"} {
		if line := fmt.Sprintf("tickstream_refused_total{reason=%q} 0\n", reason); !strings.Contains(string(body), line) {
			t.Errorf("no %q in the first scrape", strings.TrimSpace(line))
		}
	}
}
