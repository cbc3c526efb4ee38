package transport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// stream is an open SSE response read event by event.
type stream struct {
	t      *testing.T
	resp   *http.Response
	events chan client.Event
	cancel context.CancelFunc
}

func openStream(t *testing.T, url, lastID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &stream{t: t, resp: resp, events: make(chan client.Event, 1024), cancel: cancel}
	go func() {
		defer close(s.events)
		d := client.NewDecoder(resp.Body)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			ev.Data = append([]byte(nil), ev.Data...)
			s.events <- ev
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() { s.cancel(); _ = s.resp.Body.Close() }

func (s *stream) next() client.Event {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event within 10s")
	}
	return client.Event{}
}

// until reads events until one of type typ arrives, returning the ones
// before it too.
func (s *stream) until(typ string) (client.Event, []client.Event) {
	s.t.Helper()
	var before []client.Event
	for {
		ev := s.next()
		if ev.Type == typ {
			return ev, before
		}
		before = append(before, ev)
	}
}

func decodeTick(t *testing.T, ev client.Event) feed.Tick {
	t.Helper()
	tk, err := feed.DecodeTick(ev.Data)
	if err != nil {
		t.Fatalf("tick %q: %v", ev.Data, err)
	}
	return tk
}

func TestSSEHelloSnapshotReadyUpdates(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "EURUSD")
	f.Tick("AAPL")
	n := f.StartNode(nil)
	s := openStream(t, n.URL()+"/stream?symbols=AAPL,EURUSD,MSFT&interval=50ms", "")
	for k, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	hello := s.next()
	var h struct {
		Node       string   `json:"node"`
		Mode       string   `json:"mode"`
		IntervalMs int64    `json:"interval_ms"`
		Symbols    []string `json:"symbols"`
	}
	if err := json.Unmarshal(hello.Data, &h); err != nil || hello.Type != "hello" {
		t.Fatalf("first event %s %s: %v", hello.Type, hello.Data, err)
	}
	if h.Mode != "conflated" || h.IntervalMs != 50 || h.Node != n.Name || len(h.Symbols) != 3 {
		t.Errorf("hello %+v", h)
	}
	if hello.Retry <= 0 {
		t.Error("no retry: field before hello")
	}
	ready, snap := s.until("ready")
	if ready.ID == "" {
		t.Error("ready carries no id")
	}
	got := map[string]uint64{}
	for _, ev := range snap {
		tk := decodeTick(t, ev)
		got[tk.Sym] = tk.Seq
	}
	// MSFT has no value yet: the snapshot holds the two that do.
	if fmt.Sprint(got) != "map[AAPL:2 EURUSD:1]" {
		t.Errorf("snapshot %v", got)
	}
	f.Tick("EURUSD")
	ev := s.next()
	if tk := decodeTick(t, ev); tk.Sym != "EURUSD" || tk.Seq != 2 || ev.ID == "" || ev.ID == ready.ID {
		t.Errorf("update %s id %q", ev.Data, ev.ID)
	}
	// Exact decimals, on the wire as strings.
	if !strings.Contains(string(ev.Data), `"bid":"100.02"`) {
		t.Errorf("price not exact: %s", ev.Data)
	}
}

func TestSSEBadInput(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(func(c *node.Config) { c.Transport.MaxSymbols = 3 })
	cases := []struct{ query, param string }{
		{"", "symbols"},
		{"symbols=", "symbols"},
		{"symbols=NOPE", "symbols"},
		{"symbols=AAPL,a%20b!", "symbols"},
		{"symbols=" + strings.Repeat("X", 40), "symbols"},
		{"symbols=AAPL,MSFT,EURUSD,SPY", "symbols"},
		{"symbols=AAPL&interval=soon", "interval"},
		{"symbols=AAPL&interval=-5ms", "interval"},
		{"symbols=AAPL&mode=turbo", "mode"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			resp, err := http.Get(n.URL() + "/stream?" + c.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var e struct{ Error, Param string }
			if resp.StatusCode != 400 || json.Unmarshal(body, &e) != nil || e.Error == "" || e.Param != c.param {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestSSEIntervalIsBoundedAndReported(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(func(c *node.Config) {
		c.Hub.MinInterval = 100 * time.Millisecond
		c.Hub.MaxInterval = 2 * time.Second
	})
	for ask, want := range map[string]int64{"10ms": 100, "1h": 2000, "500": 500} {
		s := openStream(t, n.URL()+"/stream?symbols=AAPL&interval="+ask, "")
		var h struct {
			IntervalMs int64 `json:"interval_ms"`
		}
		_ = json.Unmarshal(s.next().Data, &h)
		if h.IntervalMs != want {
			t.Errorf("asked %s: granted %dms, want %d", ask, h.IntervalMs, want)
		}
		s.close()
	}
}

func TestSSERawResumeReplaysMissedTicks(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(nil)
	s := openStream(t, n.URL()+"/stream?symbols=AAPL,MSFT&mode=raw", "")
	s.until("ready")
	for range 3 {
		f.Tick("AAPL", "MSFT", "SPY")
	}
	var lastID string
	seen := 0
	for seen < 6 {
		ev := s.next()
		if ev.Type == "tick" {
			seen++
			lastID = ev.ID
		}
	}
	s.close()
	// Missed while disconnected:
	for range 5 {
		f.Tick("AAPL", "MSFT", "SPY")
	}
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if l := n.Hub.Latest([]string{"AAPL"})[0]; l == nil || l.Seq != 9 {
			return fmt.Errorf("node not caught up")
		}
		return nil
	})
	s2 := openStream(t, n.URL()+"/stream?symbols=AAPL,MSFT&mode=raw", lastID)
	hello := s2.next()
	if !strings.Contains(string(hello.Data), `"resumed":true`) {
		t.Errorf("hello %s", hello.Data)
	}
	_, replay := s2.until("ready")
	want := map[string]uint64{"AAPL": 5, "MSFT": 5}
	for _, ev := range replay {
		if ev.Type != "tick" {
			t.Fatalf("unexpected %s %s during replay", ev.Type, ev.Data)
		}
		tk := decodeTick(t, ev)
		if tk.Seq != want[tk.Sym] {
			t.Fatalf("replayed %s seq %d, want %d (gap-free, no duplicates)", tk.Sym, tk.Seq, want[tk.Sym])
		}
		if strings.Contains(string(ev.Data), `"prev_close"`) {
			t.Errorf("a replayed tick is not a snapshot: %s", ev.Data)
		}
		want[tk.Sym]++
	}
	if want["AAPL"] != 10 || want["MSFT"] != 10 {
		t.Errorf("replay ended at %v, want both at 10", want)
	}
	f.Tick("AAPL")
	if tk := decodeTick(t, s2.next()); tk.Sym != "AAPL" || tk.Seq != 10 {
		t.Errorf("live after replay: %+v", tk)
	}
}

func TestSSEResumeAfterRedisLostHistoryResyncs(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(nil)
	s := openStream(t, n.URL()+"/stream?symbols=AAPL&mode=raw", "")
	ready, _ := s.until("ready")
	s.close()
	s2 := openStream(t, n.URL()+"/stream?symbols=AAPL&mode=raw", "otherepoch.1.x.x.x.x")
	s2.next()
	ev := s2.next()
	if ev.Type != "resync" {
		t.Fatalf("want resync, got %s %s", ev.Type, ev.Data)
	}
	if tk := decodeTick(t, s2.next()); tk.Seq != 1 {
		t.Errorf("fresh snapshot %+v", tk)
	}
	_ = ready
}

func TestSSEClosedQuietClientIsReleased(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) {
		c.Hub.Heartbeat = 800 * time.Millisecond
		c.Hub.MaxInterval = 500 * time.Millisecond
	})
	s := openStream(t, n.URL()+"/stream?symbols=AAPL", "")
	s.until("ready")
	if n.Hub.Subscribers() != 1 {
		t.Fatal("not subscribed")
	}
	// The client goes; nothing is published, so no write would notice.
	s.close()
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if k := n.Hub.Subscribers(); k != 0 {
			return fmt.Errorf("%d subscribers", k)
		}
		return nil
	})
	if n.Hub.Stats().PeersGone.Load() == 0 && n.Hub.Stats().Delivered.Load() == 0 {
		t.Log("released by a heartbeat write rather than the probe")
	}
}

// refFeed stores a universe where AAPL's session reference is known
// (previous close 187.5, open 188: on its 0.01 grid "187.50" and "188.00")
// and MSFT's is not, publishes a tick of each and starts a node on it.
func refFeed(t *testing.T) (*nodetest.Feed, *node.Node) {
	t.Helper()
	f := nodetest.NewFeed(t)
	syms := append([]feed.Symbol(nil), simulator.Universe(0).Symbols()...)
	for i := range syms {
		switch syms[i].Name {
		case "AAPL":
			syms[i].PrevClose, syms[i].Open = decimal.RequireFromString("187.5"), decimal.RequireFromString("188")
		case "MSFT":
			syms[i].PrevClose, syms[i].Open = decimal.Decimal{}, decimal.Decimal{}
		}
	}
	u, err := feed.NewUniverse(syms)
	if err != nil {
		t.Fatal(err)
	}
	// A second publisher stores this universe in place of the feed's.
	if _, err := redisstream.NewPublisher(context.Background(), f.RDB, redisstream.PublisherConfig{
		Universe: u, Shards: nodetest.Shards, MaxLen: 10_000, Logger: nodetest.Quiet(),
	}); err != nil {
		t.Fatal(err)
	}
	f.Tick("AAPL", "MSFT")
	return f, f.StartNode(nil)
}

// checkRefs checks the session reference members of snapshot ticks: AAPL's
// both, on its grid, MSFT's (unknown) none; each tick still a valid tick.
func checkRefs(t *testing.T, where string, ticks [][]byte) {
	t.Helper()
	seen := map[string]bool{}
	for _, b := range ticks {
		tk, err := feed.DecodeTick(b)
		if err != nil {
			t.Fatalf("%s: %s: %v", where, b, err)
		}
		var refs struct {
			PrevClose *string `json:"prev_close"`
			Open      *string `json:"open"`
		}
		if err := json.Unmarshal(b, &refs); err != nil {
			t.Fatalf("%s: %s: %v", where, b, err)
		}
		seen[tk.Sym] = true
		switch tk.Sym {
		case "AAPL":
			if refs.PrevClose == nil || *refs.PrevClose != "187.50" || refs.Open == nil || *refs.Open != "188.00" {
				t.Errorf("%s: AAPL snapshot tick %s, want prev_close \"187.50\" and open \"188.00\"", where, b)
			}
		case "MSFT":
			if refs.PrevClose != nil || refs.Open != nil {
				t.Errorf("%s: MSFT has no session reference, its tick says %s", where, b)
			}
		}
	}
	if !seen["AAPL"] || !seen["MSFT"] {
		t.Errorf("%s: snapshot held %v, want AAPL and MSFT", where, seen)
	}
}

// TestSSESnapshotCarriesSessionReference: the snapshot's ticks carry each
// symbol's prev_close and open (when known); live updates do not (their
// bytes are the feed's).
func TestSSESnapshotCarriesSessionReference(t *testing.T) {
	f, n := refFeed(t)
	for _, mode := range []string{"conflated", "raw"} {
		s := openStream(t, n.URL()+"/stream?symbols=AAPL,MSFT&interval=50ms&mode="+mode, "")
		_, before := s.until("ready")
		var snap [][]byte
		for _, ev := range before {
			if ev.Type == "tick" {
				snap = append(snap, ev.Data)
			}
		}
		checkRefs(t, mode+" SSE", snap)
		f.Tick("AAPL")
		ev := s.next()
		if tk := decodeTick(t, ev); tk.Sym != "AAPL" || strings.Contains(string(ev.Data), `"prev_close"`) || strings.Contains(string(ev.Data), `"open"`) {
			t.Errorf("%s live update %s: want AAPL without the reference", mode, ev.Data)
		}
		s.close()
	}
}
