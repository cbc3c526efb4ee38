package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// sseClient is a raw (or conflated) SSE subscriber on one plain socket and
// one goroutine, as a script would write it: it resumes with
// Last-Event-ID after every disconnect and checks, per symbol, that seqs go
// up by exactly one (raw) or never go down (conflated).
type sseClient struct {
	path  string                                                    // /stream?…
	dial  func(ctx context.Context, local string) (net.Conn, error) // the balancer
	local string                                                    // source address
	raw   bool
	// read, if set, wraps the socket's reader (a slow link).
	read func(io.Reader) io.Reader
	// every, if set, is called after every tick (a slow reader).
	every func(n int)

	mu      sync.Mutex
	lastID  string
	seqs    map[string]uint64
	nodes   []string
	ticks   int
	gaps    int
	dups    []string
	resyncs int
	goaways int
	ready   int
}

// run subscribes until ctx ends.
func (c *sseClient) run(ctx context.Context) {
	c.mu.Lock()
	c.seqs = map[string]uint64{}
	c.mu.Unlock()
	for ctx.Err() == nil {
		if err := c.once(ctx); err != nil && ctx.Err() == nil {
			select {
			case <-time.After(time.Duration(50+rand.IntN(150)) * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

// once is one connection: request, events until it ends.
func (c *sseClient) once(ctx context.Context) error {
	conn, err := c.dial(ctx, c.local)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.mu.Lock()
	last := c.lastID
	c.mu.Unlock()
	req := "GET " + c.path + " HTTP/1.1\r\nHost: tickstream\r\nAccept: text/event-stream\r\n"
	if last != "" {
		req += "Last-Event-ID: " + last + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		return err
	}
	var r io.Reader = conn
	if c.read != nil {
		r = c.read(conn)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(r, 4096), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	d := client.NewDecoder(resp.Body)
	d.SetLastID(last)
	for {
		ev, err := d.Next()
		if err != nil {
			return err
		}
		if err := c.event(ev); err != nil {
			return err
		}
	}
}

// errGoaway ends a connection the node sent away.
var errGoaway = errors.New("goaway")

func (c *sseClient) event(ev client.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Type {
	case "hello":
		var h struct{ Node string }
		_ = json.Unmarshal(ev.Data, &h)
		c.nodes = append(c.nodes, h.Node)
	case "resync":
		c.resyncs++
		clear(c.seqs)
	case "ready":
		c.ready++
	case "goaway":
		c.goaways++
		c.lastID = ev.ID
		return errGoaway
	case "tick":
		var t struct {
			Sym string
			Seq uint64
		}
		if err := json.Unmarshal(ev.Data, &t); err != nil {
			return err
		}
		prev, seen := c.seqs[t.Sym]
		switch {
		case seen && t.Seq <= prev:
			c.dups = append(c.dups, fmt.Sprintf("%s %d->%d", t.Sym, prev, t.Seq))
		case seen && c.raw && t.Seq != prev+1:
			c.gaps++
		}
		c.seqs[t.Sym] = max(prev, t.Seq)
		c.ticks++
		if c.every != nil {
			n := c.ticks
			c.mu.Unlock()
			c.every(n)
			c.mu.Lock()
		}
	}
	c.lastID = ev.ID
	return nil
}

// stats returns what the client saw.
func (c *sseClient) stats() (ticks, gaps int, dups []string, resyncs, ready int, nodes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ticks, c.gaps, append([]string(nil), c.dups...), c.resyncs, c.ready, append([]string(nil), c.nodes...)
}

// seq returns the newest seq the client holds of sym.
func (c *sseClient) seq(sym string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seqs[sym]
}

// balancer dials the first node still in rotation, from a given loopback
// source address: a load balancer in one function. Out takes a node out
// of rotation, as a health check would once it drains.
type balancer struct {
	mu    sync.Mutex
	addrs []string
}

func (b *balancer) dial(ctx context.Context, local string) (net.Conn, error) {
	b.mu.Lock()
	addr := b.addrs[0]
	b.mu.Unlock()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return d.DialContext(ctx, "tcp", addr)
}

func (b *balancer) out(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, a := range b.addrs {
		if a == addr {
			b.addrs = append(b.addrs[:i:i], b.addrs[i+1:]...)
			return
		}
	}
}

// TestDrainMovesRawSubscribersExactly guards raw mode across a routine
// drain: a node holding 2,000 subscribers, 500 of them raw from 20 client
// addresses, stops gracefully while another node is up. Every subscriber
// moves to the other node; the raw ones resume from their cursors with no
// gap, no tick twice and no resync (their replays wait in line for a slot
// instead of being refused), and every subscriber ends with the latest seq
// of each of its symbols.
func TestDrainMovesRawSubscribersExactly(t *testing.T) {
	f := nodetest.NewFeedN(t, 30)
	stopFeed := f.RunSimulator(600, 30)
	cfg := func(name string) func(*node.Config) {
		return func(c *node.Config) { c.Name, c.Drain, c.Cluster.Disabled = name, 2*time.Second, true }
	}
	a := f.StartNode(cfg("a"))
	b := f.StartNode(cfg("b"))
	lb := &balancer{addrs: []string{a.Addr, b.Addr}}
	syms := universe(30)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var raws, all []*sseClient
	for i := range 2000 {
		c := &sseClient{dial: lb.dial, local: fmt.Sprintf("127.0.0.%d", 2+i%20)}
		pick := []string{syms[i%len(syms)], syms[(i*7+3)%len(syms)], syms[(i*11+5)%len(syms)]}
		if i%4 == 0 {
			c.raw = true
			c.path = "/stream?mode=raw&symbols=" + strings.Join(pick, ",")
			if i%100 == 0 {
				c.path = "/stream?mode=raw&symbols=*"
			}
			raws = append(raws, c)
		} else {
			c.path = "/stream?interval=500ms&symbols=" + strings.Join(pick, ",")
		}
		all = append(all, c)
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	nodetest.CheckFor(t, 60*time.Second, func() error {
		if n := a.Hub.Subscribers(); n < len(all) {
			return fmt.Errorf("node a has %d of %d subscribers", n, len(all))
		}
		return nil
	})
	// Let the raw subscribers hold cursors of a busy feed.
	nodetest.CheckFor(t, 30*time.Second, func() error {
		for _, c := range raws {
			if n, _, _, _, _, _ := c.stats(); n < 20 {
				return fmt.Errorf("a raw subscriber has %d ticks", n)
			}
		}
		return nil
	})
	lb.out(a.Addr)
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := a.Shutdown(sctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	scancel()
	// Under a loaded machine (-race beside CPU hogs) the resumes take their
	// turns for a minute or more: waiting is fine, a resync is not.
	nodetest.CheckFor(t, 3*time.Minute, func() error {
		if n := b.Hub.Subscribers(); n < len(all) {
			onB := map[bool]int{}
			for _, c := range all {
				if _, _, _, _, _, nodes := c.stats(); len(nodes) > 0 && nodes[len(nodes)-1] == "b" {
					onB[c.raw]++
				}
			}
			return fmt.Errorf("node b has %d of %d subscribers (hello from b: %d of %d raw, %d of %d conflated; %v resumes sent away for busy replay slots)",
				n, len(all), onB[true], len(raws), onB[false], len(all)-len(raws), metric(t, b.URL(), `tickstream_refused_total{reason="replay_busy"}`))
		}
		return nil
	})
	stopFeed()
	latest := nodetest.RedisLatest(t, f.RDB, nodetest.Shards)
	nodetest.CheckFor(t, 30*time.Second, func() error {
		for _, c := range raws {
			for _, s := range strings.Split(strings.TrimPrefix(c.path[strings.Index(c.path, "symbols=")+8:], ""), ",") {
				if s == "*" {
					s = syms[0]
				}
				if got := c.seq(s); got != latest[s] {
					return fmt.Errorf("a raw subscriber holds %s seq %d, latest %d", s, got, latest[s])
				}
			}
		}
		return nil
	})
	var gaps, resyncs, moved, replayed int
	var dups []string
	for _, c := range raws {
		_, g, d, r, _, nodes := c.stats()
		gaps, resyncs, dups = gaps+g, resyncs+r, append(dups, d...)
		if len(nodes) >= 2 && nodes[0] == "a" && nodes[len(nodes)-1] == "b" {
			moved++
		}
	}
	replayed = int(metric(t, b.URL(), "tickstream_replayed_ticks_total"))
	t.Logf("%d raw subscribers (of %d) moved from a to b: %d gaps, %d ticks twice, %d resyncs; b replayed %d ticks; refused replays on b: %v",
		moved, len(raws), gaps, len(dups), resyncs, replayed, metric(t, b.URL(), `tickstream_refused_total{reason="replay_busy"}`))
	if moved != len(raws) {
		t.Errorf("%d of %d raw subscribers moved from a to b", moved, len(raws))
	}
	if gaps != 0 || len(dups) != 0 || resyncs != 0 {
		t.Errorf("raw subscribers across the drain: %d gaps, %d ticks twice (%.5q), %d resyncs; want none", gaps, len(dups), dups, resyncs)
	}
}

// throttled reads at most rate bytes a second from r (a slow link), in
// reads of at most 4 KiB.
type throttled struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     float64
}

func (t *throttled) Read(p []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	if due := time.Duration(t.n / t.rate * float64(time.Second)); time.Since(t.start) < due {
		time.Sleep(due - time.Since(t.start))
	}
	n, err := t.r.Read(p[:min(len(p), 4096)])
	t.n += float64(n)
	return n, err
}

// smallRecvBuffer dials with a 64 KiB receive buffer, so what the client
// has not read stays on the node's side, as on a slow link.
func smallRecvBuffer(addr string) func(ctx context.Context, local string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10) })
		}}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// TestSlowLinkResumeReachesLive guards a raw resume over a slow link: a
// subscriber of every symbol away 8 s comes back reading at 1.5 times the
// live byte rate. It catches up and reaches live with no tick twice, no
// gap and no resync, while a normal subscriber beside it keeps receiving.
func TestSlowLinkResumeReachesLive(t *testing.T) {
	f := nodetest.NewFeedN(t, 30)
	f.RunSimulator(1000, 30)
	n := f.StartNode(nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	normal := &sseClient{dial: smallRecvBuffer(n.Addr), path: "/stream?mode=raw&symbols=*", raw: true}
	var bytes atomic.Int64
	normal.read = func(r io.Reader) io.Reader { return countReader{r, &bytes} }
	wg.Add(1)
	go func() { defer wg.Done(); normal.run(ctx) }()

	// The subscriber's first stay: long enough to measure the live rate.
	away := &sseClient{dial: smallRecvBuffer(n.Addr), path: "/stream?mode=raw&symbols=*", raw: true}
	actx, acancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); away.run(actx) }()
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if n, _, _, _, ready, _ := normal.stats(); ready == 0 || n < 500 {
			return fmt.Errorf("the normal subscriber has %d ticks", n)
		}
		return nil
	})
	b0, t0 := bytes.Load(), time.Now()
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if time.Since(t0) < 2*time.Second {
			return errors.New("measuring the live byte rate")
		}
		return nil
	})
	rate := float64(bytes.Load()-b0) / time.Since(t0).Seconds()
	acancel()
	<-done
	resumedAt, _, _, _, _, _ := away.stats()
	// Away for 8 s: the feed goes on without it.
	time.Sleep(8 * time.Second)
	away.read = func(r io.Reader) io.Reader { return &throttled{r: r, rate: 1.5 * rate} }
	back := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); away.run(ctx) }()
	// Live: its newest seq of each symbol reaches the normal subscriber's.
	nodetest.CheckFor(t, 90*time.Second, func() error {
		if _, _, _, _, ready, _ := away.stats(); ready < 2 {
			return errors.New("not ready again yet")
		}
		for _, s := range universe(30) {
			if a, b := away.seq(s), normal.seq(s); a+50 < b {
				return fmt.Errorf("%s: seq %d, live %d", s, a, b)
			}
		}
		return nil
	})
	caught := time.Since(back)
	ticks, gaps, dups, resyncs, _, _ := away.stats()
	nticks, ngaps, ndups, nresyncs, _, _ := normal.stats()
	t.Logf("live %.0f KB/s; the subscriber back after 8 s at %.0f KB/s caught up in %v (%d ticks after its return): %d gaps, %d twice, %d resyncs; normal: %d ticks, %d gaps, %d twice, %d resyncs",
		rate/1024, 1.5*rate/1024, caught.Round(time.Millisecond), ticks-resumedAt, gaps, len(dups), resyncs, nticks, ngaps, len(ndups), nresyncs)
	if gaps != 0 || len(dups) != 0 || resyncs != 0 {
		t.Errorf("the resumed subscriber: %d gaps, %d ticks twice (%.5q), %d resyncs; want none", gaps, len(dups), dups, resyncs)
	}
	if ngaps != 0 || len(ndups) != 0 || nresyncs != 0 {
		t.Errorf("the normal subscriber: %d gaps, %d twice, %d resyncs", ngaps, len(ndups), nresyncs)
	}
}

// universe returns the names of the test universe of n symbols.
func universe(n int) []string {
	var out []string
	for _, s := range simulator.Universe(n).Symbols() {
		out = append(out, s.Name)
	}
	return out
}

// futureCursor returns cur with every shard an hour ahead of cur's newest
// position: the current epoch, a position no reader will reach.
func futureCursor(cur string) string {
	parts := strings.Split(cur, ".")
	base, _ := strconv.ParseUint(parts[1], 36, 64)
	out := parts[0] + "." + strconv.FormatUint(base+uint64(time.Hour/time.Millisecond), 36)
	for range parts[2:] {
		out += ".0-0"
	}
	return out
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// slowReaderFor is how long TestSlowRawReaderNeverSeesATickTwice reads.
var slowReaderFor = 60 * time.Second

// TestSlowRawReaderNeverSeesATickTwice guards raw mode for a reader slower
// than the feed: a subscriber of every symbol that sleeps 20 ms every 50
// ticks for 60 s on an 8,000 ticks/s feed is closed for overflow, resumes,
// reads its replay as slowly, and never receives a tick twice.
func TestSlowRawReaderNeverSeesATickTwice(t *testing.T) {
	f := nodetest.NewFeedN(t, 30)
	f.RunSimulator(8000, 30)
	n := f.StartNode(func(c *node.Config) { c.Hub.RawQueue = 1024 })
	published := func() (sum uint64) {
		for _, seq := range nodetest.RedisLatest(t, f.RDB, nodetest.Shards) {
			sum += seq
		}
		return sum
	}
	p0, t0 := published(), time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), slowReaderFor)
	defer cancel()
	slow := &sseClient{dial: smallRecvBuffer(n.Addr), path: "/stream?mode=raw&symbols=*", raw: true,
		every: func(n int) {
			if n%50 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}}
	normal := &sseClient{dial: smallRecvBuffer(n.Addr), path: "/stream?symbols=AAPL,MSFT&interval=100ms"}
	var wg sync.WaitGroup
	for _, c := range []*sseClient{slow, normal} {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	wg.Wait()
	ticks, gaps, dups, resyncs, _, conns := slow.stats()
	nticks, _, ndups, _, _, _ := normal.stats()
	feedRate := float64(published()-p0) / time.Since(t0).Seconds()
	t.Logf("feed %.0f ticks/s; slow reader: %d ticks over %d connections (%v closed for overflow), %d gaps, %d twice, %d resyncs; normal: %d ticks, %d twice", feedRate, ticks, len(conns), metric(t, n.URL(), "tickstream_raw_overflows_total"), gaps, len(dups), resyncs, nticks, len(ndups))
	if len(dups) != 0 {
		t.Errorf("the slow reader received %d ticks twice: %.5q", len(dups), dups)
	}
	if len(conns) < 2 {
		t.Errorf("the slow reader connected %d times: the test did not make it resume", len(conns))
	}
	if nticks == 0 || len(ndups) != 0 {
		t.Errorf("the normal subscriber: %d ticks, %d twice", nticks, len(ndups))
	}
}

// TestFutureCursorIsAnsweredAtOnce guards resumes from a cursor beyond the
// feed (the current epoch, positions an hour ahead): each is answered at
// once with a resync and a fresh snapshot, nothing waits for a position
// that will not come, and a normal subscriber beside 200 of them keeps
// receiving.
func TestFutureCursorIsAnsweredAtOnce(t *testing.T) {
	f := nodetest.NewFeedN(t, 30)
	f.RunSimulator(500, 30)
	n := f.StartNode(func(c *node.Config) { c.Transport.ResumeWait = time.Minute })
	normal := nodetest.Subscribe(t, n.URL()+"/stream?symbols=AAPL&mode=raw")
	defer normal.Close()
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if normal.Count("tick") < 5 {
			return errors.New("the normal subscriber has no ticks yet")
		}
		return nil
	})
	cur := normal.Cursor()
	start := time.Now()
	var slowest time.Duration
	var mu sync.Mutex
	var resyncs int
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			req, _ := http.NewRequest("GET", n.URL()+"/stream?symbols=*&mode=raw", nil)
			req.Header.Set("Last-Event-ID", futureCursor(cur))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			d := client.NewDecoder(resp.Body)
			for {
				ev, err := d.Next()
				if err != nil || ev.Type == "ready" {
					break
				}
				if ev.Type == "resync" {
					mu.Lock()
					resyncs++
					mu.Unlock()
				}
			}
			mu.Lock()
			slowest = max(slowest, time.Since(t0))
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("200 resumes from a cursor an hour ahead: %d resyncs, slowest %v, all in %v", resyncs, slowest.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if resyncs != 200 {
		t.Errorf("%d of 200 future cursors got a resync", resyncs)
	}
	if slowest > 30*time.Second {
		t.Errorf("a future cursor waited %v: it must be answered without waiting for ResumeWait (1 min)", slowest)
	}
	before := normal.Count("tick")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if normal.Count("tick") <= before {
			return errors.New("the normal subscriber stopped receiving")
		}
		return nil
	})
}
