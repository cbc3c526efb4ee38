package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// collector runs a Stream in the background and records its messages.
type collector struct {
	mu    sync.Mutex
	ticks map[string][]uint64
	kinds map[client.Kind]int
	err   error
	done  chan struct{}
	stop  context.CancelFunc
}

func collect(t *testing.T, cfg client.Config) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{ticks: map[string][]uint64{}, kinds: map[client.Kind]int{}, done: make(chan struct{}), stop: cancel}
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	go func() {
		defer close(c.done)
		err := client.Stream(ctx, cfg, func(m client.Message) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.kinds[m.Kind]++
			if m.Kind == client.Tick {
				c.ticks[m.Tick.Sym] = append(c.ticks[m.Tick.Sym], m.Tick.Seq)
			}
			return nil
		})
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func (c *collector) last(sym string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.ticks[sym]
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func (c *collector) waitFor(t *testing.T, sym string, seq uint64) {
	t.Helper()
	nodetest.CheckFor(t, 15*time.Second, func() error {
		if got := c.last(sym); got < seq {
			return fmt.Errorf("%s at %d, want %d", sym, got, seq)
		}
		return nil
	})
}

func TestClientResumesAcrossNodeRestartWithoutGap(t *testing.T) {
	for _, transport := range []string{"sse", "ws"} {
		t.Run(transport, func(t *testing.T) {
			f := nodetest.NewFeed(t)
			f.Tick("AAPL", "MSFT")
			addr := nodetest.FreeAddr(t)
			at := func(c *node.Config) { c.Addr = addr }
			n := f.StartNode(at)
			col := collect(t, client.Config{URL: n.URL(), Symbols: []string{"AAPL", "MSFT"}, Raw: true, Transport: transport})
			for range 3 {
				f.Tick("AAPL", "MSFT")
			}
			col.waitFor(t, "AAPL", 4)
			// The node goes away; ticks keep coming meanwhile.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = n.Shutdown(ctx)
			cancel()
			for range 5 {
				f.Tick("AAPL", "MSFT")
			}
			f.StartNode(at)
			f.Tick("AAPL")
			col.waitFor(t, "AAPL", 10)
			col.waitFor(t, "MSFT", 9)
			col.mu.Lock()
			defer col.mu.Unlock()
			for sym, seqs := range col.ticks {
				for i := 1; i < len(seqs); i++ {
					if seqs[i] != seqs[i-1]+1 {
						t.Fatalf("%s: gap or repeat in %v", sym, seqs)
					}
				}
			}
			if col.kinds[client.Reconnecting] == 0 || col.kinds[client.Resync] != 0 {
				t.Errorf("kinds %v: want a reconnect and no resync", col.kinds)
			}
		})
	}
}

func TestClientConflatedBothTransportsEndAtTheLatest(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "SPY")
	n := f.StartNode(nil)
	sse := collect(t, client.Config{URL: n.URL(), Symbols: []string{"AAPL", "SPY"}, Interval: 20 * time.Millisecond})
	ws := collect(t, client.Config{URL: n.URL(), Symbols: []string{"AAPL", "SPY"}, Interval: 20 * time.Millisecond, Transport: "ws"})
	for range 50 {
		f.Tick("AAPL")
	}
	f.Tick("SPY")
	for _, c := range []*collector{sse, ws} {
		c.waitFor(t, "AAPL", 51)
		c.waitFor(t, "SPY", 2)
	}
}

func TestClientRefused(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	for _, tr := range []string{"sse", "ws"} {
		err := client.Stream(context.Background(), client.Config{URL: n.URL(), Symbols: []string{"NOPE"}, Transport: tr}, func(client.Message) error { return nil })
		if !errors.Is(err, client.ErrRefused) {
			t.Errorf("%s: %v, want ErrRefused", tr, err)
		}
	}
	err := client.Stream(context.Background(), client.Config{URL: "ftp://x", Symbols: []string{"A"}}, func(client.Message) error { return nil })
	if !errors.Is(err, client.ErrRefused) {
		t.Errorf("bad URL: %v", err)
	}
}

// TestClientLeavesASilentNode: a server that stops sending anything (a hung
// node, a dropped network) is left after IdleTimeout, and the client
// reconnects.
func TestClientLeavesASilentNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			// Read the request first: a response before it is one net/http
			// drops as unsolicited. Then headers and one event, then
			// silence; the connection stays open.
			if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
				c.Close()
				continue
			}
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: hello\ndata: {\"node\":\"silent\"}\n\n"))
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reconnects := make(chan error, 10)
	go func() {
		_ = client.Stream(ctx, client.Config{URL: "http://" + l.Addr().String(), Symbols: []string{"AAPL"},
			IdleTimeout: 300 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
			func(m client.Message) error {
				if m.Kind == client.Reconnecting {
					reconnects <- m.Err
				}
				return nil
			})
	}()
	select {
	case err := <-reconnects:
		if err == nil || !strings.Contains(err.Error(), "idle") {
			t.Errorf("reconnected because of %v, want the idle timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client stayed on a silent server")
	}
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if accepted.Load() < 2 {
			return fmt.Errorf("no second connection")
		}
		return nil
	})
}
