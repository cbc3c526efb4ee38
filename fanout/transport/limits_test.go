package transport_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/esnode"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/node"
)

func TestLimits(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) {
		c.Transport.MaxPerAddress = 2
		c.Transport.MessageRate = 5
		c.Transport.ReadTimeout = 500 * time.Millisecond
	})

	t.Run("streams per address", func(t *testing.T) {
		a := openStream(t, n.URL()+"/stream?symbols=AAPL", "")
		a.until("ready")
		b := dialWS(t, n.URL()+"/ws?symbols=AAPL", nil)
		readUntil(t, b, "ready")
		if err := refusedStream(n.URL() + "/stream?symbols=AAPL"); err != nil {
			t.Errorf("third stream: %v", err)
		}
		// Closing one frees its place.
		b.Close()
		nodetest.CheckFor(t, 5*time.Second, func() error {
			resp, err := http.Get(n.URL() + "/api/poll?symbols=AAPL&after=" + "x~0&timeout=10ms")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests {
				return fmt.Errorf("still limited")
			}
			return nil
		})
		a.close()
	})

	t.Run("websocket message rate", func(t *testing.T) {
		nodetest.CheckFor(t, 5*time.Second, func() error { // the previous streams are gone
			c, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws", nil)
			if err != nil {
				return err
			}
			defer c.Close()
			readWS(t, c)
			for i := 0; i < 50; i++ {
				if err := c.WriteMessage(websocket.TextMessage, []byte(`{"op":"ping","id":1}`)); err != nil {
					break
				}
			}
			for {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, _, err := c.ReadMessage(); err != nil {
					if ce, ok := err.(*websocket.CloseError); ok && ce.Code == websocket.ClosePolicyViolation {
						return nil
					}
					return fmt.Errorf("ended with %v, want close 1008", err)
				}
			}
		})
	})

	t.Run("slow request headers are cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET /api/symbols HTTP/1.1\r\nHost: x\r\n"))
		// Trickle a header byte by byte, never finishing the request.
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		for i := 0; i < 40; i++ {
			select {
			case <-closed:
				return // cut off
			case <-time.After(100 * time.Millisecond):
				_, _ = c.Write([]byte("X"))
			}
		}
		t.Fatal("a client trickling its headers for 4s was not cut off (read timeout 500ms)")
	})
}

func TestTrustedProxyNamesTheClient(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) {
		c.Transport.MaxPerAddress = 1
		c.Transport.TrustedProxies = []string{"127.0.0.1"}
	})
	// open returns the first event of a stream from client: hello (a
	// stream, held open) or goaway (refused over the limit).
	open := func(from string) string {
		req, _ := http.NewRequest("GET", n.URL()+"/stream?symbols=AAPL", nil)
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != 200 {
			return resp.Status
		}
		ev, err := client.NewDecoder(resp.Body).Next()
		if err != nil {
			t.Fatal(err)
		}
		return ev.Type
	}
	// Two clients behind the same proxy each get their stream; a second
	// stream of the first is over its limit.
	if a, b, a2 := open("203.0.113.7"), open("203.0.113.8"), open("203.0.113.7"); a != "hello" || b != "hello" || a2 != "goaway" {
		t.Errorf("first events %s %s %s, want hello hello goaway", a, b, a2)
	}
	// What the client sent itself, left of what the proxy appended, is not
	// believed: the right-most untrusted address names it.
	if forged := open("198.51.100.1, 203.0.113.7"); forged != "goaway" {
		t.Errorf("a forged X-Forwarded-For head got %s, want goaway (the client is 203.0.113.7)", forged)
	}
	// Trusted hops right of the client are skipped.
	if hop := open("203.0.113.8, 127.0.0.1"); hop != "goaway" {
		t.Errorf("client behind two trusted proxies got %s, want goaway (the client is 203.0.113.8)", hop)
	}
}

func TestNodeFullAndOversizedRequests(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) { c.Hub.MaxSubscribers = 1 })
	s := openStream(t, n.URL()+"/stream?symbols=AAPL", "")
	s.until("ready")
	resp, err := http.Get(n.URL() + "/stream?symbols=AAPL")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A full node turns an EventSource away in a way it retries (a 200
	// stream with a later retry: and a goaway, then its end), never with a
	// status the standard makes fatal.
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") ||
		!strings.Contains(string(body), "event: goaway") || !strings.Contains(string(body), "too many subscribers") || !strings.Contains(string(body), "retry: ") {
		t.Errorf("full node: %s %q", resp.Status, body)
	}
	req, _ := http.NewRequest("GET", n.URL()+"/api/symbols", nil)
	req.Header.Set("X-Huge", strings.Repeat("x", 16<<10))
	resp, err = http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("16 KiB of headers: %s", resp.Status)
		}
	}
	if k := n.Hub.Subscribers(); k != 1 {
		t.Errorf("%d subscribers", k)
	}
}

// refusedStream opens url and checks the per-address refusal of a stream:
// 200, an event stream holding retry: (2–7 s) and a goaway event naming the
// limit, then its end.
func refusedStream(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body) // the refusal ends its response
	if err != nil {
		return fmt.Errorf("read the refusal: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return fmt.Errorf("%s %s %q, want 200 text/event-stream", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var retry int
	if _, err := fmt.Sscanf(string(body), "retry: %d\n", &retry); err != nil || retry < 2000 || retry > 7000 {
		return fmt.Errorf("body %q: want a first line retry: of 2000 to 7000 ms", body)
	}
	d := client.NewDecoder(strings.NewReader(string(body)))
	ev, err := d.Next()
	if err != nil || ev.Type != "goaway" || !strings.Contains(string(ev.Data), "max-per-address") {
		return fmt.Errorf("body %q: want a goaway event naming max-per-address", body)
	}
	if ev, err := d.Next(); err != io.EOF {
		return fmt.Errorf("after the goaway: %+v %v, want the end of the stream", ev, err)
	}
	return nil
}

// TestStreamLimitPerAddressIsRetryable guards the refusal of /stream past
// --max-per-address: a standard EventSource treats any non-200 answer as
// fatal, so the node answers 200 with retry: (2–7 s, jittered) and a
// goaway event naming the limit, then ends the stream; the EventSource
// reconnects and gets its stream once a place is free. Long polls and
// WebSocket upgrades, which are not EventSource, get 429 with Retry-After.
// Every refusal counts in tickstream_refused_total{reason="max_per_address"}.
// A normal subscriber (one of the address's streams) keeps receiving.
func TestStreamLimitPerAddressIsRetryable(t *testing.T) {
	_, n := attackNode(t, func(c *node.Config) { c.Transport.MaxPerAddress = 2 })
	w := watch(t, n.URL())
	held := openStream(t, n.URL()+"/stream?symbols=AAPL", "")
	held.until("ready")
	refused := func() float64 { return metric(t, n.URL(), "tickstream_refused_total", `reason="max_per_address"`) }
	before := refused()

	if err := refusedStream(n.URL() + "/stream?symbols=AAPL"); err != nil {
		t.Fatalf("third stream: %v", err)
	}
	_, first := get(t, n.URL()+"/api/poll?symbols=AAPL", nil) // a snapshot takes no place
	resp, _ := get(t, n.URL()+"/api/poll?symbols=AAPL&after="+first.Token, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("long poll over the limit: %s Retry-After %q, want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	_, wsResp, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws?symbols=AAPL", nil)
	if err == nil || wsResp == nil || wsResp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("WebSocket over the limit: %v %v, want 429", wsResp, err)
	}
	if got := refused() - before; got != 3 {
		t.Errorf("refused_total{max_per_address} grew by %v, want 3", got)
	}

	// npm eventsource: refused, it reports an error it retries (not
	// CLOSED), and gets its stream once the held one is gone.
	var mu sync.Mutex
	var seen []esnode.Event
	esnode.Start(t, []esnode.Client{{Name: "es", URL: n.URL() + "/stream?symbols=AAPL"}}, func(ev esnode.Event) {
		mu.Lock()
		seen = append(seen, ev)
		mu.Unlock()
	})
	has := func(typ string) (esnode.Event, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range seen {
			if ev.Type == "error" && ev.ReadyState == esnode.Closed {
				t.Fatalf("the EventSource gave up for good: %+v (events %+v)", ev, seen)
			}
		}
		for _, ev := range seen {
			if ev.Type == typ {
				return ev, true
			}
		}
		return esnode.Event{}, false
	}
	wait.For(t, 20*time.Second, func() error {
		if _, ok := has("error"); !ok {
			return fmt.Errorf("the EventSource saw no goaway and end of stream yet")
		}
		return nil
	})
	if ev, ok := has("goaway"); !ok || !strings.Contains(ev.Data, "max-per-address") {
		t.Errorf("goaway %+v, want one naming max-per-address", ev)
	}
	held.close()
	wait.For(t, 30*time.Second, func() error {
		if _, ok := has("ready"); !ok {
			return fmt.Errorf("the EventSource has not reconnected to a stream yet")
		}
		return nil
	})
	w.check(t)
}
