package loadgen_test

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/nodetest"
)

func TestClientsReceiveAndMeasure(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(nil)
	addr := n.Addr
	pub := loadgen.NewPublished()
	since := &atomic.Int64{}
	since.Store(0)
	seq := f.Seq("AAPL")
	for _, kind := range []string{"sse", "ws", "shortpoll", "longpoll"} {
		t.Run(kind, func(t *testing.T) {
			st := &loadgen.Stats{}
			tr := loadgen.NewTracker(pub, st, since)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				switch kind {
				case "sse":
					_ = (&loadgen.SSE{Addr: addr, Path: "/stream?symbols=AAPL,MSFT&interval=10ms", Track: tr, Stats: st}).Run(ctx, func() { close(ready) })
				case "ws":
					_ = (&loadgen.WS{URL: "ws://" + addr + "/ws", Symbols: []string{"AAPL", "MSFT"}, Interval: "10ms", Track: tr, Stats: st}).Run(ctx, func() { close(ready) })
				case "shortpoll":
					close(ready)
					(&loadgen.ShortPoller{Client: loadgen.NewHTTPClient(1, st), URL: "http://" + addr + "/api/snapshot?symbols=AAPL,MSFT", Every: 20 * time.Millisecond, Track: tr, Stats: st}).Run(ctx)
				case "longpoll":
					close(ready)
					(&loadgen.LongPoller{Client: loadgen.NewHTTPClient(1, st), URL: "http://" + addr + "/api/poll?symbols=AAPL,MSFT", Track: tr, Stats: st}).Run(ctx)
				}
			}()
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("not ready")
			}
			time.Sleep(100 * time.Millisecond)
			// Record the publication before publishing, as the benchmark's
			// recording publisher does, so the client cannot see it first.
			seq++
			tk := feed.Tick{Sym: "AAPL", Seq: seq, Bid: decimal.RequireFromString("100.00"), Ask: decimal.RequireFromString("100.02"),
				Last: decimal.RequireFromString("100.01"), Size: 1, TS: time.Now().UnixMicro()}
			pub.Add(tk.Sym, tk.Seq, tk.TS)
			if err := f.Pub.Publish(context.Background(), []feed.Tick{tk}); err != nil {
				t.Fatal(err)
			}
			nodetest.CheckFor(t, 10*time.Second, func() error {
				if st.Updates.Load() < 3 {
					return fmt.Errorf("events %d updates %d bytes %d reqs %d errors %d", st.Events.Load(), st.Updates.Load(), st.Bytes.Load(), st.Requests.Load(), st.Errors.Load())
				}
				return nil
			})
			if kind == "shortpoll" && st.Requests.Load() < 3 {
				t.Errorf("short poller made %d requests", st.Requests.Load())
			}
			cancel()
			<-done
			if d := st.Delay.Quantile(0.5); d <= 0 || d > 5*time.Second || st.Bytes.Load() == 0 {
				t.Errorf("delay %v bytes %d", d, st.Bytes.Load())
			}
		})
	}
}

func TestHistAndEachTick(t *testing.T) {
	var h loadgen.Hist
	for i := 1; i <= 1000; i++ {
		h.Add(time.Duration(i) * time.Millisecond)
	}
	if p := h.Quantile(0.5); math.Abs(float64(p-500*time.Millisecond)) > float64(30*time.Millisecond) {
		t.Errorf("p50 %v", p)
	}
	n := loadgen.EachTick([]byte(`{"type":"tick","cursor":"x","data":[{"sym":"A","seq":1,"ts":5},{"sym":"B","seq":2,"ts":6}]}`), func([]byte, uint64, int64) {})
	if n != 2 {
		t.Errorf("EachTick found %d", n)
	}
}

// TestEvLoopAgainstANode runs the event loop's SSE and WebSocket clients
// against a real node on real Redis: both become ready (the WebSocket one
// after subscribing), receive new ticks, and are counted once.
func TestEvLoopAgainstANode(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(nil)
	addr := netip.MustParseAddrPort(n.Addr)
	st := &loadgen.Stats{}
	var ready atomic.Int64
	var subs []*loadgen.EvSub
	for i, ws := range []bool{false, true, false, true} {
		sub := &loadgen.EvSub{Addr: addr, Source: netip.AddrFrom4([4]byte{127, 1, 0, byte(1 + i)}),
			Path: "/stream?symbols=AAPL,MSFT&interval=10ms", Track: loadgen.NewTracker(nil, st, new(atomic.Int64)),
			Ready: func() { ready.Add(1) }, Failed: func(err error, _ bool) { st.Fail(err) }}
		if ws {
			sub.WS, sub.Path, sub.WSSymbols, sub.WSInterval = true, "/ws", []string{"AAPL", "MSFT"}, "10ms"
		}
		subs = append(subs, sub)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&loadgen.EvLoop{Stats: st, Rate: 100, Batch: time.Millisecond}).Run(ctx, subs) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if ready.Load() < 4 {
			return fmt.Errorf("%d of 4 ready, errors %v", ready.Load(), st.Reasons())
		}
		return nil
	})
	base := st.Updates.Load() // the snapshots: 2 symbols × 4
	if base != 8 {
		t.Errorf("snapshot updates %d, want 8", base)
	}
	f.Tick("AAPL")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if got := st.Updates.Load() - base; got != 4 {
			return fmt.Errorf("%d of 4 clients got the new tick", got)
		}
		return nil
	})
	if st.Errors.Load() != 0 || st.Reconnect.Load() != 0 {
		t.Errorf("errors %d (%v) reconnects %d", st.Errors.Load(), st.Reasons(), st.Reconnect.Load())
	}
}
