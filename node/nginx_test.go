package node_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nginxtest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// TestBehindNginx runs two nodes behind a real nginx with the repository's
// sample configuration (deploy/nginx.conf).
func TestBehindNginx(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT", "GC")
	quick := func(c *node.Config) {
		c.Hub.Heartbeat = 600 * time.Millisecond
		c.Hub.MaxInterval = 300 * time.Millisecond
		c.Drain = 300 * time.Millisecond
	}
	a := f.StartNode(quick)
	b := f.StartNode(quick)
	// A read timeout shorter than the quiet period below: only heartbeats
	// keep the streams open.
	proxy := nginxtest.Start(t, []string{a.Addr, b.Addr}, map[string]string{
		"proxy_read_timeout 60s;": "proxy_read_timeout 2s;",
		"proxy_read_timeout 75s;": "proxy_read_timeout 2s;",
	})

	t.Run("sse arrives unbuffered and survives a quiet period", func(t *testing.T) {
		s := nodetest.Subscribe(t, proxy+"/stream?symbols=GC&interval=0")
		nodetest.CheckFor(t, 10*time.Second, func() error {
			if s.Count("ready") == 0 {
				return fmt.Errorf("no ready through nginx")
			}
			return nil
		})
		time.Sleep(3500 * time.Millisecond) // quiet: longer than nginx's 2s read timeout
		f.Tick("GC")
		nodetest.CheckFor(t, 3*time.Second, func() error {
			if got, _ := s.Snapshot(); got["GC"] != 2 {
				return fmt.Errorf("GC at %d through nginx after a quiet period", got["GC"])
			}
			return nil
		})
	})

	t.Run("websocket works through nginx", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(strings.Replace(proxy, "http", "ws", 1)+"/ws?symbols=MSFT", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		seen := ""
		for !strings.Contains(seen, `"type":"ready"`) {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, m, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			seen += string(m)
		}
		time.Sleep(3 * time.Second) // quiet, beyond the read timeout: pings keep it
		f.Tick("MSFT")
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, m, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(m), `"seq":2`) {
				break
			}
		}
	})

	t.Run("a draining node's subscribers land on the other", func(t *testing.T) {
		var mu sync.Mutex
		var last uint64
		nodes := map[string]bool{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- client.Stream(ctx, client.Config{URL: proxy, Symbols: []string{"AAPL"}, Raw: true, MinBackoff: 50 * time.Millisecond},
				func(m client.Message) error {
					mu.Lock()
					defer mu.Unlock()
					switch m.Kind {
					case client.Hello:
						nodes[m.Node] = true
					case client.Tick:
						if m.Tick.Seq <= last {
							return fmt.Errorf("seq went from %d to %d", last, m.Tick.Seq)
						}
						last = m.Tick.Seq
					}
					return nil
				})
		}()
		nodetest.CheckFor(t, 10*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(nodes) == 0 {
				return fmt.Errorf("not connected")
			}
			return nil
		})
		// Drain whichever node it is on (both, in turn, is the same test).
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		_ = a.Shutdown(sctx)
		c2()
		for range 3 {
			f.Tick("AAPL")
		}
		want := f.Seq("AAPL")
		nodetest.CheckFor(t, 15*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if last != want {
				return fmt.Errorf("client at AAPL %d, want %d (nodes seen %v)", last, want, nodes)
			}
			return nil
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
