package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/cluster"
	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nginxtest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// Rebalancing tests: real nodes on a real Redis behind the shipped
// deploy/nginx.conf (least_conn), 3,000 SSE subscribers in this process,
// a tenth of them raw and checked tick by tick.

const (
	rbSubscribers = 3000
	rbRawEvery    = 10 // one raw subscriber in ten
)

var rbSyms = []string{"AAPL", "MSFT"}

// rbNode configures a node of the rebalancing tests: every client comes
// from 127.0.0.1 through nginx, so the per-address limits are raised; the
// cluster announces every second; the rest is the default (rebalancing on,
// threshold 10 %, 50 per second).
func rbNode(t *testing.T, name, addr string) func(*node.Config) {
	return func(c *node.Config) {
		c.Logger = slog.New(&balancerLog{t: t}).With("node", name)
		c.Name, c.Drain = name, 2*time.Second
		if addr != "" {
			c.Addr = addr
		}
		c.Transport.MaxPerAddress = 4 * rbSubscribers
		c.Transport.MaxReplays, c.Transport.MaxReplaysPerAddress = 64, 64
		c.Cluster = cluster.Config{Interval: time.Second}
	}
}

// balancerLog logs the balancers' decisions (and errors) to the test.
type balancerLog struct {
	t     *testing.T
	attrs []slog.Attr
}

func (h *balancerLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *balancerLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelError && !strings.Contains(r.Message, "mean") && !strings.Contains(r.Message, "registry") {
		return nil
	}
	var b strings.Builder
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.t.Logf("%s %s:%s", r.Time.Format("15:04:05.000"), r.Message, b.String())
	return nil
}

func (h *balancerLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &balancerLog{t: h.t, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *balancerLog) WithGroup(string) slog.Handler { return h }

// rbClient is a lightweight SSE client (one goroutine, one socket, no
// http.Transport): it reconnects as an EventSource does (after the
// server's retry:, with Last-Event-ID) and checks what it receives.
type rbClient struct {
	id  int
	raw bool

	mu        sync.Mutex
	node      string // node of the current stream ("" while reconnecting)
	live      bool   // the current stream passed its ready event
	cursor    string
	last      map[string]uint64
	sentAway  int // goaway "rebalancing"
	drained   int // other goaways (a node draining)
	dropped   int // streams that ended without a goaway
	refused   int // connections or requests that failed
	gaps      int // raw: a seq skipped
	dups      int // raw: a seq at or below the last one; conflated: below
	resyncs   int
	firstErr  string
	nodesSeen []string
}

func (c *rbClient) fail(format string, a ...any) {
	if c.firstErr == "" {
		c.firstErr = fmt.Sprintf(format, a...)
	}
}

// run streams until ctx is done.
func (c *rbClient) run(ctx context.Context, addr string) {
	for ctx.Err() == nil {
		delay := c.once(ctx, addr)
		c.mu.Lock()
		c.node, c.live = "", false
		c.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// once runs one connection and returns how long to wait before the next.
func (c *rbClient) once(ctx context.Context, addr string) time.Duration {
	backoff := 200*time.Millisecond + rand.N(300*time.Millisecond)
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.mu.Lock()
		c.refused++
		c.mu.Unlock()
		return backoff
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	q := "symbols=" + strings.Join(rbSyms, ",") + "&interval=1s"
	if c.raw {
		q += "&mode=raw"
	}
	c.mu.Lock()
	cursor := c.cursor
	c.mu.Unlock()
	req := "GET /stream?" + q + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: text/event-stream\r\n"
	if cursor != "" {
		req += "Last-Event-ID: " + cursor + "\r\n"
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		c.mu.Lock()
		c.refused++
		c.mu.Unlock()
		return backoff
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		c.mu.Lock()
		c.refused++
		if err == nil {
			c.fail("client %d: status %d", c.id, resp.StatusCode)
		}
		c.mu.Unlock()
		return backoff
	}
	dec := client.NewDecoder(resp.Body)
	dec.SetLastID(cursor)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		ev, err := dec.Next()
		if err != nil {
			if ctx.Err() == nil {
				c.mu.Lock()
				c.dropped++
				c.mu.Unlock()
			}
			return backoff
		}
		c.mu.Lock()
		retry, done := c.event(ev)
		c.mu.Unlock()
		if done {
			return retry
		}
	}
}

// event handles one event under c.mu; done ends the connection.
func (c *rbClient) event(ev client.Event) (retry time.Duration, done bool) {
	c.cursor = ev.ID
	switch ev.Type {
	case "hello":
		var h struct{ Node string }
		_ = json.Unmarshal(ev.Data, &h)
		c.node = h.Node
		if !slices.Contains(c.nodesSeen, h.Node) {
			c.nodesSeen = append(c.nodesSeen, h.Node)
		}
	case "ready":
		c.live = true
	case "resync":
		c.resyncs++
		c.fail("client %d (raw %v): resync %s", c.id, c.raw, ev.Data)
		clear(c.last)
	case "tick":
		var t struct {
			Sym string
			Seq uint64
		}
		if err := json.Unmarshal(ev.Data, &t); err != nil {
			c.fail("client %d: bad tick %s", c.id, ev.Data)
			return 0, false
		}
		last, ok := c.last[t.Sym]
		switch {
		case !ok:
		case c.raw && t.Seq <= last, !c.raw && t.Seq < last:
			c.dups++
			c.fail("client %d (raw %v) on %s: %s seq %d after %d", c.id, c.raw, c.node, t.Sym, t.Seq, last)
		case c.raw && t.Seq > last+1:
			c.gaps++
			c.fail("client %d (raw) on %s: %s seq %d after %d", c.id, c.node, t.Sym, t.Seq, last)
		}
		c.last[t.Sym] = max(last, t.Seq)
	case "goaway":
		var g struct{ Reason string }
		_ = json.Unmarshal(ev.Data, &g)
		if strings.Contains(g.Reason, "rebalancing") {
			c.sentAway++
		} else {
			c.drained++
		}
		retry := time.Duration(ev.Retry) * time.Millisecond
		if retry <= 0 {
			retry = time.Second
		}
		return retry, true
	}
	return 0, false
}

// rbClients is the whole population.
type rbClients struct {
	cs     []*rbClient
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startRBClients(t *testing.T, addr string) *rbClients {
	ctx, cancel := context.WithCancel(context.Background())
	p := &rbClients{cancel: cancel}
	t.Cleanup(p.stop)
	for i := range rbSubscribers {
		c := &rbClient{id: i, raw: i%rbRawEvery == 0, last: map[string]uint64{}}
		p.cs = append(p.cs, c)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// Spread the first connects over a second or two.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * 500 * time.Microsecond):
			}
			c.run(ctx, addr)
		}()
	}
	return p
}

func (p *rbClients) stop() { p.cancel(); p.wg.Wait() }

// live returns how many clients are past their stream's ready event, and
// how many of them are on each node.
func (p *rbClients) live() (int, map[string]int) {
	n, by := 0, map[string]int{}
	for _, c := range p.cs {
		c.mu.Lock()
		if c.live {
			n++
			by[c.node]++
		}
		c.mu.Unlock()
	}
	return n, by
}

// reset zeroes the per-phase counters (sent away, drained).
func (p *rbClients) reset() {
	for _, c := range p.cs {
		c.mu.Lock()
		c.sentAway, c.drained, c.dropped, c.refused = 0, 0, 0, 0
		c.mu.Unlock()
	}
}

// phase sums what the clients saw in a phase and checks the rules: no raw
// gap, duplicate or resync, nobody sent away more than twice.
func (p *rbClients) phase(t *testing.T, name string) {
	t.Helper()
	hist := map[int]int{}
	var sent, drained, dropped, refused, gaps, dups, resyncs int
	var errs []string
	for _, c := range p.cs {
		c.mu.Lock()
		moves := c.sentAway + c.drained
		hist[moves]++
		sent += c.sentAway
		drained += c.drained
		dropped += c.dropped
		refused += c.refused
		gaps += c.gaps
		dups += c.dups
		resyncs += c.resyncs
		if c.firstErr != "" && len(errs) < 5 {
			errs = append(errs, c.firstErr)
		}
		if moves > 2 {
			t.Errorf("%s: client %d (raw %v) was sent away %d times (rebalancing %d, drain %d); nodes %v", name, c.id, c.raw, moves, c.sentAway, c.drained, c.nodesSeen)
		}
		c.mu.Unlock()
	}
	var hs []string
	for _, k := range slices.Sorted(maps.Keys(hist)) {
		hs = append(hs, fmt.Sprintf("%d×%d", hist[k], k))
	}
	t.Logf("%s: goaways: rebalancing %d, drain %d (clients × times sent away: %s); streams ended without goaway %d; failed connects %d",
		name, sent, drained, strings.Join(hs, " "), dropped, refused)
	if gaps+dups+resyncs > 0 {
		t.Errorf("%s: raw subscribers saw %d gaps, %d duplicates, %d resyncs; first: %v", name, gaps, dups, resyncs, errs)
	}
}

// converge waits until every client holds the last seq published of every
// symbol (the raw ones got every tick in between, checked as they came).
func (p *rbClients) converge(t *testing.T, last map[string]uint64) {
	t.Helper()
	nodetest.CheckFor(t, 60*time.Second, func() error {
		behind := 0
		var first string
		for _, c := range p.cs {
			c.mu.Lock()
			for s, want := range last {
				if c.last[s] != want {
					if behind == 0 {
						first = fmt.Sprintf("client %d (raw %v, on %q): %s at %d, want %d", c.id, c.raw, c.node, s, c.last[s], want)
					}
					behind++
					break
				}
			}
			c.mu.Unlock()
		}
		if behind > 0 {
			return fmt.Errorf("%d clients not at the last tick; %s", behind, first)
		}
		return nil
	})
}

// counts reads each node's subscriber count from its /readyz.
func counts(nodes ...*node.Node) ([]int, error) {
	out := make([]int, len(nodes))
	for i, n := range nodes {
		resp, err := http.Get(n.URL() + "/readyz")
		if err != nil {
			return nil, err
		}
		var r struct {
			Subscribers int    `json:"subscribers"`
			Error       string `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			// Not ready for a moment (its reader behind Redis under load):
			// no count; the callers poll.
			return nil, fmt.Errorf("%s /readyz: %d %s", n.Name, resp.StatusCode, r.Error)
		}
		out[i] = r.Subscribers
	}
	return out, nil
}

// within checks that every count is within frac of the mean of counts,
// and that they add up to at least 99 % of want (while nodes shed, a few
// subscribers are always on their way from one node to another).
func within(cs []int, want int, frac float64) error {
	total := 0
	for _, c := range cs {
		total += c
	}
	if total < want*99/100 || total > want {
		return fmt.Errorf("nodes hold %v = %d subscribers, want %d", cs, total, want)
	}
	mean := float64(total) / float64(len(cs))
	for _, c := range cs {
		if d := float64(c) - mean; d > frac*mean || -d > frac*mean {
			return fmt.Errorf("nodes hold %v: %d is not within %.0f%% of the mean %.0f", cs, c, 100*frac, mean)
		}
	}
	return nil
}

// waitAllLive waits until every client is past ready and the nodes hold
// want subscribers in all.
func waitAllLive(t *testing.T, p *rbClients, timeout time.Duration, nodes ...*node.Node) {
	t.Helper()
	nodetest.CheckFor(t, timeout, func() error {
		n, by := p.live()
		if n != rbSubscribers {
			return fmt.Errorf("%d of %d clients live (%v)", n, rbSubscribers, by)
		}
		cs, err := counts(nodes...)
		if err != nil {
			return err
		}
		total := 0
		for _, c := range cs {
			total += c
		}
		if total != rbSubscribers {
			return fmt.Errorf("nodes hold %v", cs)
		}
		return nil
	})
}

// TestRebalanceAddAndRemoveNode: two nodes behind nginx hold 3,000 SSE
// subscribers (300 raw); a third node starts: within 60 s every node holds
// within 15 % of the mean, no raw subscriber saw a gap or a duplicate and
// none was sent away more than twice. Then one of the three stops
// gracefully: the other two end within 15 % of each other, with the same
// guarantees.
func TestRebalanceAddAndRemoveNode(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 subscribers")
	}
	f := nodetest.NewFeed(t)
	f.Tick(rbSyms...)
	a := f.StartNode(rbNode(t, "a", ""))
	b := f.StartNode(rbNode(t, "b", ""))
	cAddr := nodetest.FreeAddr(t)
	// The third node is in nginx's upstream from the start, as an operator
	// lists the capacity to come: until it listens, nginx's connects to it
	// are refused and retried on the next node.
	proxy := nginxtest.Run(t, []string{a.Addr, b.Addr, cAddr}, nil)
	stop := publisher(t, f, 100*time.Millisecond, rbSyms...)

	p := startRBClients(t, strings.TrimPrefix(proxy.URL, "http://"))
	t.Cleanup(func() {
		if t.Failed() {
			p.phase(t, "at the failure")
			log, _ := os.ReadFile(filepath.Join(proxy.Dir, "error.log"))
			var cLines, resets []string
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, cAddr) && len(cLines) < 8 {
					cLines = append(cLines, l)
				}
				if strings.Contains(l, "reset") && len(resets) < 4 {
					resets = append(resets, l)
				}
			}
			t.Logf("nginx error.log: %d bytes; about c (%s):\n%s\nresets:\n%s", len(log), cAddr, strings.Join(cLines, "\n"), strings.Join(resets, "\n"))
		}
	})
	t0 := time.Now()
	waitAllLive(t, p, 120*time.Second, a, b)
	cs, _ := counts(a, b)
	t.Logf("%d subscribers live after %v on two nodes: %v", rbSubscribers, time.Since(t0).Round(time.Millisecond), cs)

	// Phase 1: a third node starts.
	p.reset()
	t1 := time.Now()
	c := f.StartNode(rbNode(t, "c", cAddr))
	var last []int
	nextLog := time.Now()
	nodetest.CheckFor(t, 60*time.Second, func() error {
		if time.Now().After(nextLog) {
			nextLog = time.Now().Add(5 * time.Second)
			for _, n := range []*node.Node{a, b, c} {
				v := n.Balancer.View()
				t.Logf("%v %s: count %d mean %.0f shedding %v sent %d", time.Since(t1).Round(time.Millisecond), v.Self, n.Hub.Subscribers(), v.MeanSubscribers, v.Shedding, v.SentAway)
			}
		}
		cs, err := counts(a, b, c)
		if err != nil {
			return err
		}
		last = cs
		return within(cs, rbSubscribers, 0.15)
	})
	balanced := time.Since(t1)
	t.Logf("node c started: every node within 15%% of the mean after %v: %v", balanced.Round(time.Millisecond), last)
	waitAllLive(t, p, 30*time.Second, a, b, c)
	// Let the shedding finish (nobody sheds any more), then check the
	// counts again: no node went on shedding below the mean.
	nodetest.CheckFor(t, 60*time.Second, func() error {
		for _, n := range []*node.Node{a, b, c} {
			if v := n.Balancer.View(); v.Shedding {
				return fmt.Errorf("%s still shedding (%d sent away)", v.Self, v.SentAway)
			}
		}
		return nil
	})
	nodetest.CheckFor(t, 20*time.Second, func() error { // a node may be unready for a moment
		var err error
		cs, err = counts(a, b, c)
		return err
	})
	if err := within(cs, rbSubscribers, 0.15); err != nil {
		t.Errorf("after shedding ended: %v", err)
	}
	t.Logf("shedding over: %v (sent away: a %d, b %d, c %d)", cs, a.Balancer.View().SentAway, b.Balancer.View().SentAway, c.Balancer.View().SentAway)
	p.phase(t, "node added")

	// Phase 2: node a stops gracefully.
	p.reset()
	t2 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown a: %v", err)
	}
	cancel()
	waitAllLive(t, p, 60*time.Second, b, c)
	nodetest.CheckFor(t, 60*time.Second, func() error {
		cs, err := counts(b, c)
		if err != nil {
			return err
		}
		last = cs
		hi, lo := max(cs[0], cs[1]), min(cs[0], cs[1])
		if cs[0]+cs[1] != rbSubscribers || float64(hi-lo) > 0.15*float64(hi) {
			return fmt.Errorf("b and c hold %v: not within 15%% of each other", cs)
		}
		return nil
	})
	t.Logf("node a stopped: b and c within 15%% of each other %v after the stop began: %v", time.Since(t2).Round(time.Millisecond), last)

	seqs := stop()
	p.converge(t, seqs)
	p.phase(t, "node removed")
	if v := b.Balancer.View(); v.Count != 2 {
		t.Errorf("b sees %d nodes after a left, want 2: %+v", v.Count, v)
	}
	// /api/nodes through the proxy answers the cluster as JSON.
	resp, err := http.Get(proxy.URL + "/api/nodes")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var v cluster.View
	if err == nil {
		err = json.Unmarshal(body, &v)
	}
	if err != nil || len(v.Nodes) != 2 || resp.StatusCode != http.StatusOK {
		t.Errorf("/api/nodes: %d %s, %v", resp.StatusCode, body, err)
	}
	t.Logf("/api/nodes: %s", body)
}
