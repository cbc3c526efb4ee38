package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/simulator"
)

// event is one SSE event as a test stream received it.
type event struct {
	typ, id string
	newID   bool // the event carried an id: (the cursor moved)
	data    []byte
	at      time.Time
}

// rawStream is an SSE stream read by a test, event by event.
type rawStream struct {
	mu     sync.Mutex
	events []event
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

// openStream opens url with an optional Last-Event-ID and records its
// events until closed or the test ends.
func openStream(t *testing.T, u, lastID string) *rawStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	s := &rawStream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		defer resp.Body.Close()
		d := client.NewDecoder(resp.Body)
		prev := lastID
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.events = append(s.events, event{typ: ev.Type, id: ev.ID, newID: ev.ID != prev, data: append([]byte(nil), ev.Data...), at: time.Now()})
			s.mu.Unlock()
			prev = ev.ID
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *rawStream) close() { s.cancel(); <-s.done }

// snapshot returns a copy of the events so far.
func (s *rawStream) snapshot() []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event(nil), s.events...)
}

// count returns how many events of type typ arrived.
func (s *rawStream) count(typ string) int {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		panic(err)
	}
	n := 0
	for _, e := range s.snapshot() {
		if e.typ == typ {
			n++
		}
	}
	return n
}

// rssKB reads a process's resident set size.
func rssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

// startServe starts a node process on a free loopback port.
func startServe(t *testing.T, bin, redisURL, name string, extra ...string) (*proc, string) {
	addr := nodetest.FreeAddr(t)
	p := &proc{t: t, args: append([]string{bin, "serve", "--redis", redisURL, "--addr", addr, "--node", name, "--drain", "100ms"}, extra...)}
	p.start()
	t.Cleanup(p.kill)
	return p, "http://" + addr
}

// TestRawResumeOnBehindNodeIsExact: a raw subscriber reads from node A,
// then resumes with its cursor on node B, which was paused (SIGSTOP) while
// A read on, so B's reader is behind the cursor when the request arrives.
// B must continue exactly after the cursor: every symbol's first tick is
// the one after the last the client had, then every tick in order; never
// one at or before the cursor. A resync is allowed (B could not catch up in
// time), a duplicate or a gap is not.
func TestRawResumeOnBehindNodeIsExact(t *testing.T) {
	bin := bintest.Tickstream(t)
	rs := redistest.Start(t)
	sim := &proc{t: t, args: []string{bin, "simulate", "--redis", rs.URL(), "--rate", "800", "--universe", "30"}}
	sim.start()
	t.Cleanup(sim.kill)
	_, a := startServe(t, bin, rs.URL(), "a")
	b, bURL := startServe(t, bin, rs.URL(), "b")
	const q = "/stream?symbols=*&mode=raw"
	resyncs := 0
	for round := range 4 {
		sa := openStream(t, a+q, "")
		nodetest.CheckFor(t, 20*time.Second, func() error {
			if n := sa.count("tick"); n < 300 {
				return fmt.Errorf("node a: %d ticks", n)
			}
			return nil
		})
		b.signal(syscall.SIGSTOP)
		before := sa.count("tick")
		nodetest.CheckFor(t, 20*time.Second, func() error {
			if n := sa.count("tick") - before; n < 400 {
				return fmt.Errorf("node a: %d ticks while b is paused", n)
			}
			return nil
		})
		sa.close()
		// What the client holds: every tick up to the last cursor it got.
		held := map[string]uint64{}
		var cursor string
		var pending []feed.Tick
		for _, e := range sa.snapshot() {
			if e.typ == "tick" {
				tk, err := feed.DecodeTick(e.data)
				if err != nil {
					t.Fatal(err)
				}
				pending = append(pending, tk)
			}
			if e.newID {
				for _, tk := range pending {
					held[tk.Sym] = tk.Seq
				}
				pending, cursor = pending[:0], e.id
			}
		}
		// The request reaches b while it is still paused; b resumes with
		// its reader a second behind.
		sb := openStream(t, bURL+q, cursor)
		time.Sleep(50 * time.Millisecond) // let the request reach b's socket (not a proof of anything)
		b.signal(syscall.SIGCONT)
		nodetest.CheckFor(t, 20*time.Second, func() error {
			if n := sb.count("tick"); n < 400 {
				return fmt.Errorf("node b: %d ticks after the resume", n)
			}
			return nil
		})
		sb.close()
		evs := sb.snapshot()
		if len(evs) > 1 && evs[1].typ == "resync" {
			resyncs++
			t.Logf("round %d: b sent a resync (%s)", round, evs[1].data)
			continue
		}
		next := map[string]uint64{}
		for k, v := range held {
			next[k] = v + 1
		}
		n := 0
		for _, e := range evs {
			if e.typ == "resync" {
				t.Fatalf("round %d: resync in the middle of the stream: %s", round, e.data)
			}
			if e.typ != "tick" {
				continue
			}
			tk, _ := feed.DecodeTick(e.data)
			want, ok := next[tk.Sym]
			if ok && tk.Seq != want {
				what := "a gap"
				if tk.Seq < want {
					what = "a duplicate: at or before the cursor"
				}
				t.Fatalf("round %d: %s seq %d from node b, want %d (%s)", round, tk.Sym, tk.Seq, want, what)
			}
			next[tk.Sym] = tk.Seq + 1
			n++
		}
		t.Logf("round %d: node b continued exactly after the cursor: %d ticks checked", round, n)
	}
	if resyncs == 4 {
		t.Error("node b answered every resume with a resync: it never waited for its reader")
	}
}

// TestForgedCursorReplaysAreRefused: 8 clients at once ask a node, again and
// again, for a raw replay of everything from the beginning (a forged
// Last-Event-ID: the epoch is public, every shard "from the start"), over
// 90 s of retained history (~100k entries). Each gets a resync quickly; a
// normal SSE subscriber on the same node keeps receiving with no gap over
// 1.5 s, and the node's memory stays bounded.
func TestForgedCursorReplaysAreRefused(t *testing.T) {
	bin := bintest.Tickstream(t)
	rs := redistest.Start(t)
	rdb := rs.Client()
	prefill(t, rdb, 90*time.Second, 1100)
	sim := &proc{t: t, args: []string{bin, "simulate", "--redis", rs.URL(), "--rate", "500", "--universe", "30"}}
	sim.start()
	t.Cleanup(sim.kill)
	n, u := startServe(t, bin, rs.URL(), "n")
	normal := openStream(t, u+"/stream?symbols=AAPL,MSFT,SPY,NVDA&mode=raw", "")
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if normal.count("tick") < 50 {
			return fmt.Errorf("the normal subscriber has %d ticks", normal.count("tick"))
		}
		return nil
	})
	base := rssKB(t, n.cmd.Process.Pid)
	epoch := rdb.Get(t.Context(), "tickstream:epoch").Val()
	forged := epoch + ".0" + strings.Repeat(".x", 16)
	var mu sync.Mutex
	var replies, resyncs int
	var slowest time.Duration
	peak := base
	stop := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				start := time.Now()
				req, _ := http.NewRequest("GET", u+"/stream?symbols=*&mode=raw", nil)
				req.Header.Set("Last-Event-ID", forged)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				d := client.NewDecoder(resp.Body)
				resync := false
				for {
					ev, err := d.Next()
					if err != nil || ev.Type == "ready" {
						break
					}
					resync = resync || ev.Type == "resync"
				}
				resp.Body.Close()
				mu.Lock()
				replies++
				if resync {
					resyncs++
				}
				slowest = max(slowest, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	for time.Now().Before(stop) {
		peak = max(peak, rssKB(t, n.cmd.Process.Pid))
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	peak = max(peak, rssKB(t, n.cmd.Process.Pid))
	// The normal subscriber never waited more than 1.5 s for a tick.
	var gap time.Duration
	var last time.Time
	for _, e := range normal.snapshot() {
		if e.typ != "tick" {
			continue
		}
		if !last.IsZero() {
			gap = max(gap, e.at.Sub(last))
		}
		last = e.at
	}
	refused := metric(t, u, `tickstream_refused_total{reason="replay_budget"}`) + metric(t, u, `tickstream_refused_total{reason="replay_busy"}`)
	t.Logf("forged replays: %d answered, %d with a resync, slowest %v, refused counted %v; node RSS %d MB before, peak %d MB; normal subscriber's longest wait %v",
		replies, resyncs, slowest, refused, base/1024, peak/1024, gap)
	if resyncs != replies || replies == 0 {
		t.Errorf("%d of %d forged replays got a resync, want all", resyncs, replies)
	}
	if gap > 1500*time.Millisecond {
		t.Errorf("the normal subscriber waited %v for a tick, want under 1.5 s", gap)
	}
	if peak-base > 96<<10 {
		t.Errorf("node RSS grew from %d MB to %d MB under forged replays, want under 96 MB more", base/1024, peak/1024)
	}
	if refused < float64(replies) {
		t.Errorf("replays refused counted %v, want %d", refused, replies)
	}
}

// metric reads one sample of a node's /metrics (0 when absent).
func metric(t *testing.T, base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, l := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// prefill writes span of history, ending now, at rate ticks per second into
// the shard streams (explicit IDs in the past) and the latest-value hashes,
// as a feed that has been running that long would have: a simulator
// started after it continues each symbol's seq.
func prefill(t *testing.T, rdb *redis.Client, span time.Duration, rate float64) {
	t.Helper()
	ctx := t.Context()
	g, err := simulator.NewGenerator(simulator.GeneratorConfig{Symbols: 30, Rate: rate, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-span).UnixMilli()
	seqInMS := make([]int, 16)
	latest := map[string]feed.Tick{}
	pipe := rdb.Pipeline()
	queued := 0
	for {
		tk, at := g.Next()
		if at >= span.Seconds() {
			break
		}
		ms := start + int64(at*1000)
		tk.TS = ms * 1000
		sh := feed.ShardOf(tk.Sym, 16)
		seqInMS[sh]++
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: redisstream.StreamKey(sh), ID: fmt.Sprintf("%d-%d", ms, seqInMS[sh]),
			Values: []string{"s", tk.Sym, "q", strconv.FormatUint(tk.Seq, 10), "t", strconv.FormatInt(tk.TS, 10), "d", string(tk.AppendJSON(nil))}})
		latest[tk.Sym] = tk
		if queued++; queued == 2000 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatal(err)
			}
			queued = 0
		}
	}
	for sym, tk := range latest {
		pipe.HSet(ctx, redisstream.LastKey(feed.ShardOf(sym, 16)), sym, string(tk.AppendJSON(nil)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}
