package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/internal/browsertest"
	"github.com/tickstream/tickstream/internal/nginxtest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

var drainSyms = []string{"AAPL", "MSFT"}

// named gives a node a name and a drain period (and an address, if not
// empty).
func named(name, addr string, drain time.Duration) func(*node.Config) {
	return func(c *node.Config) {
		c.Name, c.Drain = name, drain
		if addr != "" {
			c.Addr = addr
		}
	}
}

// TestDrainRestartSameAddress: the only node stops gracefully (SIGTERM's
// path) and a new one starts on the same address. Every standard client
// (Chromium's EventSource and WebSocket, the npm eventsource) receives
// again, none gives up, and the raw ones miss nothing.
func TestDrainRestartSameAddress(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick(drainSyms...)
	addr := nodetest.FreeAddr(t)
	first := f.StartNode(named("first", addr, time.Second))
	stop := publisher(t, f, 10*time.Millisecond, drainSyms...)

	cs := newStdClients()
	browser := browsertest.New(t, 800, 600)
	startChromiumClients(t, browser, cs, first.URL(), "/healthz", 4, 2, drainSyms)
	startNPMClients(t, cs, first.URL(), 4, drainSyms)
	start := time.Now()
	cs.waitAll(t, 20*time.Second, start, func(n string) bool { return n == "first" })

	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := first.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	cancel()
	drained := time.Since(t0)
	f.StartNode(named("second", addr, time.Second))
	up := time.Since(t0)
	cs.waitAll(t, 20*time.Second, t0.Add(up), func(n string) bool { return n == "second" })
	back := time.Since(t0)
	last := stop()
	cs.converge(t, func(s string) uint64 { return last[s] })
	t.Logf("drain %v (1 s spread), new node listening at +%v, every client receiving again at +%v", drained.Round(time.Millisecond), up.Round(time.Millisecond), back.Round(time.Millisecond))
	t.Logf("clients: %s", cs.summary())
}

// TestDrainBehindNginx: two nodes behind deploy/nginx.conf as shipped; one
// stops gracefully. Every standard client carries on from the other, none
// sees a fatal answer, and the raw ones miss no tick.
func TestDrainBehindNginx(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick(drainSyms...)
	a := f.StartNode(named("a", "", time.Second))
	b := f.StartNode(named("b", "", time.Second))
	proxy := nginxtest.Run(t, []string{a.Addr, b.Addr}, nil)
	stop := publisher(t, f, 10*time.Millisecond, drainSyms...)

	cs := newStdClients()
	browser := browsertest.New(t, 800, 600)
	startChromiumClients(t, browser, cs, proxy.URL, "/healthz", 4, 2, drainSyms)
	startNPMClients(t, cs, proxy.URL, 6, drainSyms)
	start := time.Now()
	cs.waitAll(t, 20*time.Second, start, func(n string) bool { return n == "a" || n == "b" })
	onA := 0
	_ = cs.each(func(c *stdClient) error {
		if c.onNode() == "a" {
			onA++
		}
		return nil
	})
	if onA == 0 {
		t.Fatal("least_conn put no client on node a: nothing to drain")
	}

	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	cancel()
	drained := time.Since(t0)
	cs.waitAll(t, 20*time.Second, t0.Add(drained), func(n string) bool { return n == "b" })
	moved := time.Since(t0)
	last := stop()
	cs.converge(t, func(s string) uint64 { return last[s] })
	t.Logf("%d of %d clients on the drained node; drain %v (1 s spread); all on b and receiving at +%v",
		onA, len(cs.m), drained.Round(time.Millisecond), moved.Round(time.Millisecond))
	t.Logf("clients: %s", cs.summary())
}

// TestDashboardTabsOverHTTP2: eight dashboard tabs through the sample's TLS
// server (HTTP/2) are all live; over HTTP/1.1 a browser would hold at most
// six streams per origin.
func TestDashboardTabsOverHTTP2(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.RunSimulator(150, 0) // light pages: eight of them share two cores
	a := f.StartNode(named("a", "", time.Second))
	b := f.StartNode(named("b", "", time.Second))
	proxy := nginxtest.Run(t, []string{a.Addr, b.Addr}, nil)
	browser := browsertest.New(t, 800, 600, browsertest.IgnoreCertErrors)
	// Light pages (four symbols, one update a second each): eight
	// dashboards share two cores with the nodes, nginx and the feed.
	ctx, cancel := context.WithTimeout(browser, 20*time.Second)
	err := chromedp.Do(ctx, chromedp.Navigate(proxy.TLSURL+"/api/symbols"))
	if err == nil {
		_, err = chromedp.Run(ctx, chromedp.Evaluate[string](
			`localStorage.setItem('tickstream.symbols', '["AAPL","MSFT","EURUSD","GC"]'); localStorage.setItem('tickstream.interval', '"1s"'); ''`))
	}
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	tabs := []context.Context{browser}
	for len(tabs) < 8 {
		tabs = append(tabs, browsertest.NewTab(t, browser))
	}
	for _, tab := range tabs {
		ctx, cancel := context.WithTimeout(tab, 20*time.Second)
		if err := chromedp.Do(ctx, chromedp.Navigate(proxy.TLSURL+"/")); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	eval := func(tab context.Context, js string) (string, error) {
		ctx, cancel := context.WithTimeout(tab, 20*time.Second)
		defer cancel()
		return chromedp.Run(ctx, chromedp.Evaluate[string](js))
	}
	// Live: the page says so and ticks arrive.
	live := func(phase string) {
		t0 := time.Now()
		base := make([]string, len(tabs))
		nodetest.CheckFor(t, 90*time.Second, func() error {
			var errs []error
			for i, tab := range tabs {
				v, err := eval(tab, `document.getElementById('conn-text').textContent + '|' + window.tickstreamStats.received + '|' + window.tickstreamStats.node`)
				if err != nil {
					return fmt.Errorf("tab %d: %v", i+1, err)
				}
				f := strings.Split(v, "|")
				status, n := f[0], f[1]
				switch {
				case !strings.HasPrefix(status, "live · SSE"):
					base[i] = ""
					errs = append(errs, fmt.Errorf("%s: tab %d: %q", phase, i+1, v))
				case base[i] == "":
					base[i] = n
					errs = append(errs, fmt.Errorf("%s: tab %d: live, no tick counted yet: %q", phase, i+1, v))
				case n == base[i]:
					errs = append(errs, fmt.Errorf("%s: tab %d: no tick yet: %q", phase, i+1, v))
				}
			}
			return errors.Join(errs...)
		})
		t.Logf("%s: every tab live and receiving after %v", phase, time.Since(t0).Round(time.Millisecond))
	}
	live("8 tabs")
	for i, tab := range tabs {
		p, err := eval(tab, `performance.getEntriesByType('navigation')[0].nextHopProtocol`)
		if err != nil || p != "h2" {
			t.Errorf("tab %d loaded over %q (%v), want h2", i+1, p, err)
		}
	}
	// At least one stream per tab (the page may hold more than one).
	if got := a.Hub.Subscribers() + b.Hub.Subscribers(); got < 8 {
		t.Errorf("nodes hold %d subscribers, want at least 8", got)
	}
	t.Logf("8 tabs live over h2: node a %d, node b %d subscribers", a.Hub.Subscribers(), b.Hub.Subscribers())

	// One node drains: every tab is live again, all on the other.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_ = a.Shutdown(ctx)
	cancel()
	live("after node a drained")
	if got := b.Hub.Subscribers(); got < 8 {
		t.Errorf("node b holds %d subscribers after a drained, want at least 8", got)
	}
}

// TestDrainRefusals: what a request that still reaches a draining node
// gets. An SSE request: a 200 event stream with retry: and goaway, then its
// end (a standard EventSource reconnects, never gives up); a WebSocket: 1012
// right after the upgrade, or a refusal before it.
func TestDrainRefusals(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick(drainSyms...)
	n := f.StartNode(named("n", "", 10*time.Millisecond))
	if err := n.Hub.Drain(context.Background(), 0); err != nil { // the hub refuses from now on
		t.Fatal(err)
	}

	t.Run("sse gets a goaway stream", func(t *testing.T) {
		resp, err := http.Get(n.URL() + "/stream?symbols=AAPL&mode=raw")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body) // it ends
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%s %q: want 200 text/event-stream", resp.Status, resp.Header.Get("Content-Type"))
		}
		if !resp.Close {
			t.Error("connection kept alive after a refusal")
		}
		if !strings.HasPrefix(string(body), "retry: ") || !strings.Contains(string(body), "event: goaway\ndata: {\"reason\":\"node draining\"}") || strings.Contains(string(body), "id:") {
			t.Errorf("body %q", body)
		}
	})

	t.Run("npm eventsource keeps retrying", func(t *testing.T) {
		cs := newStdClients()
		startNPMClients(t, cs, n.URL(), 2, []string{"AAPL"})
		nodetest.CheckFor(t, 15*time.Second, func() error {
			return cs.each(func(c *stdClient) error {
				if c.fatal != "" {
					t.Fatal(c.fatal)
				}
				if c.goaways < 3 {
					return fmt.Errorf("%d goaways", c.goaways)
				}
				return nil
			})
		})
	})

	t.Run("chromium eventsource keeps retrying", func(t *testing.T) {
		cs := newStdClients()
		startChromiumClients(t, browsertest.New(t, 800, 600), cs, n.URL(), "/healthz", 2, 0, []string{"AAPL"})
		nodetest.CheckFor(t, 20*time.Second, func() error {
			return cs.each(func(c *stdClient) error {
				if c.fatal != "" {
					t.Fatal(c.fatal)
				}
				if c.goaways < 3 {
					return fmt.Errorf("%d goaways", c.goaways)
				}
				return nil
			})
		})
	})

	t.Run("websocket gets 1012 after the upgrade", func(t *testing.T) {
		for _, q := range []string{"?symbols=AAPL", ""} {
			c, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws"+q, nil)
			if err != nil {
				t.Fatal(err)
			}
			if q == "" {
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"subscribe","symbols":["AAPL"]}`))
			}
			var msgs []string
			for {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, m, err := c.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
						t.Fatalf("%q: %v after %q, want close 1012", q, err, msgs)
					}
					break
				}
				msgs = append(msgs, string(m))
			}
			c.Close()
			if len(msgs) == 0 || !strings.Contains(msgs[len(msgs)-1], `"type":"goaway"`) {
				t.Errorf("%q: messages %q, want a goaway last", q, msgs)
			}
		}
	})

	t.Run("websocket refused before the upgrade once the server stops accepting", func(t *testing.T) {
		// A request already being read when the server stops accepting.
		conn, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /ws?symbols=AAPL HTTP/1.1\r\n"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		wait := n.Server.StopAccepting(ctx)
		_, err = io.WriteString(conn, "Host: "+n.Addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
			t.Errorf("%s close=%v, want 503 and the connection closed", resp.Status, resp.Close)
		}
		if err := wait(); err != nil {
			t.Errorf("wait: %v", err)
		}
	})
}

// TestDrainKeepAliveRequest: a /stream request that arrives on a connection
// opened before the drain began gets a 200 stream that ends with goaway
// (never 503), and new connections are refused at once.
func TestDrainKeepAliveRequest(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick(drainSyms...)
	n := f.StartNode(named("n", "", 2*time.Second))
	held := nodetest.Subscribe(t, n.URL()+"/stream?symbols=AAPL") // so the drain lasts its period
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if held.Count("ready") == 0 {
			return fmt.Errorf("no ready")
		}
		return nil
	})
	// Two requests already begun on open connections when the drain starts.
	begin := func(line string) net.Conn {
		conn, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, line); err != nil {
			t.Fatal(err)
		}
		return conn
	}
	conn := begin("GET /stream?symbols=MSFT&mode=raw HTTP/1.1\r\n")
	ready := begin("GET /readyz HTTP/1.1\r\n")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- n.Shutdown(ctx)
	}()
	// Stop accepting comes first: a new connection is refused.
	nodetest.CheckFor(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", n.Addr)
		if err == nil {
			c.Close()
			return fmt.Errorf("still accepting")
		}
		return nil
	})
	// Readiness fails at once.
	if _, err := io.WriteString(ready, "Host: "+n.Addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = ready.SetReadDeadline(time.Now().Add(8 * time.Second))
	rr, err := http.ReadResponse(bufio.NewReader(ready), nil)
	if err != nil {
		t.Fatal(err)
	}
	rr.Body.Close()
	if rr.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %s, want 503", rr.Status)
	}
	if _, err := io.WriteString(conn, "Host: "+n.Addr+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(8 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s %q, want a 200 event stream", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "retry: ") || !strings.Contains(string(body), "event: goaway") {
		t.Errorf("body %q, want retry: and goaway", body)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if held.Count("goaway") != 1 {
		t.Errorf("the open stream got %d goaway events, want 1", held.Count("goaway"))
	}
}
