package transport_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"tickstream/internal/nodetest"
	"tickstream/node"
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
		resp, err := http.Get(n.URL() + "/stream?symbols=AAPL")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "too many open streams") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("third stream: %s %s", resp.Status, body)
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
	open := func(client string) int {
		req, _ := http.NewRequest("GET", n.URL()+"/stream?symbols=AAPL", nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
		} else {
			t.Cleanup(func() { resp.Body.Close() })
		}
		return resp.StatusCode
	}
	// Two clients behind the same proxy each get their stream; a second
	// stream of the first is over its limit.
	if a, b, a2 := open("203.0.113.7"), open("203.0.113.8"), open("203.0.113.7"); a != 200 || b != 200 || a2 != 429 {
		t.Errorf("statuses %d %d %d, want 200 200 429", a, b, a2)
	}
	// What the client sent itself, left of what the proxy appended, is not
	// believed: the right-most untrusted address names it.
	if forged := open("198.51.100.1, 203.0.113.7"); forged != 429 {
		t.Errorf("a forged X-Forwarded-For head got %d, want 429 (the client is 203.0.113.7)", forged)
	}
	// Trusted hops right of the client are skipped.
	if hop := open("203.0.113.8, 127.0.0.1"); hop != 429 {
		t.Errorf("client behind two trusted proxies got %d, want 429 (the client is 203.0.113.8)", hop)
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
