package transport_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// TestSlowConsumerOverARealSocket: a client with a tiny receive buffer that
// stops reading is conflated harder and dropped after the deadline, while a
// client that reads keeps getting every update promptly.
func TestSlowConsumerOverARealSocket(t *testing.T) {
	f := nodetest.NewFeed(t)
	syms := simulator.Universe(0).Names()
	f.Tick(syms...)
	n := f.StartNode(func(c *node.Config) {
		c.Hub.SlowDropAfter = time.Second
	})
	// The slow one: 4 KiB receive buffer, reads the head, then never again.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow, err := d.Dial("tcp", n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /stream?symbols=*&interval=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(slow)
	if line, err := br.ReadString('\n'); err != nil || line[:12] != "HTTP/1.1 200" {
		t.Fatalf("%q %v", line, err)
	}
	// The fast one reads everything.
	fast := openStream(t, n.URL()+"/stream?symbols=*&interval=0", "")
	fast.until("ready")

	// Flood: every symbol changes many times (big prices make big frames).
	seq := map[string]uint64{}
	for _, s := range syms {
		seq[s] = f.Seq(s)
	}
	big := decimal.RequireFromString("123456789") // on every symbol's tick grid
	// The fast one keeps reading during the flood (its events are taken off
	// as they come; a reader that stopped would be a slow consumer too).
	last := syms[len(syms)-1]
	var lastSeen uint64
	take := func(ev client.Event) {
		if ev.Type == "tick" {
			if tk := decodeTick(t, ev); tk.Sym == last {
				lastSeen = tk.Seq
			}
		}
	}
	drain := func() {
		for {
			select {
			case ev, ok := <-fast.events:
				if !ok {
					t.Fatal("the fast stream ended during the flood")
				}
				take(ev)
			default:
				return
			}
		}
	}
	// Until the kernel's send buffer for the slow socket (it autotunes up to
	// a few MB) is full and the drop deadline has passed; bounded.
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end) && n.Hub.Stats().SlowDrops.Load() == 0; {
		ticks := make([]feed.Tick, 0, len(syms))
		for _, s := range syms {
			seq[s]++
			ticks = append(ticks, feed.Tick{Sym: s, Seq: seq[s], Bid: big, Ask: big.Add(decimal.NewFromInt(1)), Last: big, Size: 1, TS: time.Now().UnixMicro()})
		}
		if err := f.Pub.Publish(context.Background(), ticks); err != nil {
			t.Fatal(err)
		}
		drain()
		time.Sleep(5 * time.Millisecond)
		drain()
	}
	st := n.Hub.Stats()
	nodetest.CheckFor(t, 10*time.Second, func() error {
		drain()
		if st.SlowDrops.Load() != 1 || st.Lagging.Load() < 1 {
			return fmt.Errorf("slow consumers %d, dropped %d", st.Lagging.Load(), st.SlowDrops.Load())
		}
		return nil
	})
	// The fast reader was not held back: it has the last value of a symbol.
	for want := seq[last]; lastSeen != want; {
		take(fast.next())
	}
	if n.Hub.Subscribers() != 1 {
		t.Errorf("%d subscribers left, want the fast one", n.Hub.Subscribers())
	}
}
