package transport_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/tooltest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/node"
)

// Each test here runs one attack on a node while a normal SSE subscriber
// on the same node watches every symbol: it must keep receiving, with no
// silence over maxQuiet, and the node must stay within its bounds.

// maxQuiet is the longest silence the normal subscriber may see while the
// node is attacked (it is sent every symbol every 100 ms).
const maxQuiet = 1500 * time.Millisecond

// watcher is the normal subscriber. Beside it a probe goroutine sleeps
// 10 ms at a time and records how late it wakes: on a machine loaded by
// other work (CPU hogs, the race detector) the whole test process, node
// included, can be off the CPU for a second or more, which is no failure
// of the node's isolation. A silence is held against the node only beyond
// the longest such stall.
type watcher struct {
	mu       sync.Mutex
	last     time.Time
	from     time.Time
	maxGap   time.Duration
	maxStall time.Duration
	events   int
	lagging  int // lagging events: the normal subscriber itself was slow
	cancel   context.CancelFunc
	done     chan struct{}
}

// watch opens a conflated stream of every symbol at base and records the
// longest silence between two events from now on. A token, if given, is
// sent in the Authorization header.
func watch(t *testing.T, base string, token ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/stream?symbols=*&interval=100ms", nil)
	for _, tok := range token {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		t.Fatalf("watcher: %v %v", resp, err)
	}
	w := &watcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer resp.Body.Close()
		d := client.NewDecoder(resp.Body)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			now := time.Now()
			w.mu.Lock()
			if ev.Type == "lagging" {
				w.lagging++
			}
			if !w.from.IsZero() && !w.last.IsZero() {
				w.maxGap = max(w.maxGap, now.Sub(w.last))
			}
			w.last = now
			w.events++
			w.mu.Unlock()
		}
	}()
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for ctx.Err() == nil {
			start := time.Now()
			time.Sleep(10 * time.Millisecond)
			late := time.Since(start) - 10*time.Millisecond
			w.mu.Lock()
			if !w.from.IsZero() {
				w.maxStall = max(w.maxStall, late)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-w.done; <-probeDone })
	wait.For(t, 10*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.events < 2 {
			return fmt.Errorf("watcher got %d events", w.events)
		}
		w.from = time.Now()
		return nil
	})
	return w
}

// check fails the test if the watcher was silent for more than maxQuiet
// since it started, now included.
func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	gap := max(w.maxGap, time.Since(w.last))
	if gap > maxQuiet+w.maxStall {
		t.Errorf("the normal subscriber was silent for %v during the attack (limit %v, plus %v the whole process was off the CPU)",
			gap.Round(time.Millisecond), maxQuiet, w.maxStall.Round(time.Millisecond))
	}
	t.Logf("normal subscriber: %d events (%d lagging), longest silence %v; longest stall of the test process %v",
		w.events, w.lagging, gap.Round(time.Millisecond), w.maxStall.Round(time.Millisecond))
}

// attackNode starts a feed with the simulator running and a node on it.
func attackNode(t *testing.T, mutate func(*node.Config)) (*nodetest.Feed, *node.Node) {
	t.Helper()
	f := nodetest.NewFeed(t)
	f.RunSimulator(2000, 0)
	n := f.StartNode(mutate)
	return f, n
}

// metric sums the samples of a metric (any labels matching sel) on a node.
func metric(t *testing.T, base, name, sel string) float64 {
	t.Helper()
	v, err := nodetest.Metric(base, name, sel)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawWS is a WebSocket client on a bare TCP socket, so a test controls its
// receive buffer and when (if ever) it reads.
type rawWS struct {
	net.Conn
}

// dialRawWS upgrades a TCP connection with a small receive buffer and
// returns it once the server answered 101; nothing after is read.
func dialRawWS(t *testing.T, addr, path string, rcvbuf int) *rawWS {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n",
		path, addr, base64.StdEncoding.EncodeToString(key))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		t.Fatalf("upgrade: %q %v", line, err)
	}
	for line != "\r\n" { // the rest of the head
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return &rawWS{c}
}

// frame writes one masked client frame.
func (c *rawWS) frame(op byte, payload []byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.Write(transport.MaskedFrame(true, op, payload))
	return err
}

// Attack 1: a WebSocket client subscribed to everything never reads, keeps
// a tiny receive window and sends pings with 60 KB ids 16 times a second.
// Its replies and data wait behind its full socket; nobody else waits.
func TestAttackWebSocketNonReaderWithHugePings(t *testing.T) {
	_, n := attackNode(t, nil)
	w := watch(t, n.URL())
	atk := dialRawWS(t, n.Addr, "/ws?symbols=*&interval=0", 2048)
	ping, _ := json.Marshal(map[string]string{"op": "ping", "id": strings.Repeat("x", 60<<10)})
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if err := atk.frame(websocket.TextMessage, ping); err != nil {
			break // the node dropped it: also fine
		}
		time.Sleep(time.Second / 16)
	}
	w.check(t)
	if p := metric(t, n.URL(), "tickstream_pending_bytes", ""); p > 256<<10 {
		t.Errorf("node holds %.0f bytes pending for one non-reader", p)
	}
}

// dialIdle opens up to k connections to addr that never send a byte
// (those the node resets before connect returns are skipped) and closes
// them when the returned function is called or the test ends.
func dialIdle(t *testing.T, addr string, k int) (closeAll func()) {
	var idle []net.Conn
	for range k {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue // shed before connect returned
		}
		idle = append(idle, c)
	}
	var once sync.Once
	closeAll = func() {
		once.Do(func() {
			for _, c := range idle {
				c.Close()
			}
		})
	}
	t.Cleanup(closeAll)
	return closeAll
}

// Attack 2a: a flood of idle sockets past the node's connection cap
// churns among itself (each newcomer resets the oldest silent socket); the
// node keeps serving and holds no more than its cap.
func TestAttackIdleSocketFloodIsShed(t *testing.T) {
	_, n := attackNode(t, func(c *node.Config) {
		c.Transport.MaxConns = 150
		c.Transport.MaxConnsPerAddress = 10_000
	})
	w := watch(t, n.URL())
	closeIdle := dialIdle(t, n.Addr, 400)
	time.Sleep(time.Second) // the flood held for a while
	w.check(t)
	if v := metric(t, n.URL(), "tickstream_open_connections", ""); v > 150 {
		t.Errorf("%v connections open, cap 150", v)
	}
	closeIdle()
	wait.For(t, 10*time.Second, func() error {
		shed, err := nodetest.Metric(n.URL(), "tickstream_refused_total", `reason="max_conns"`)
		if err != nil {
			return err
		}
		evicted, err := nodetest.Metric(n.URL(), "tickstream_refused_total", `reason="evicted_silent"`)
		if err != nil || shed+evicted < 200 {
			return fmt.Errorf("shed %v and evicted %v connections (%v), want the ~250 over the cap", shed, evicted, err)
		}
		return nil
	})
	select {
	case err := <-n.Done():
		t.Fatalf("the server stopped: %v", err)
	default:
	}
}

// Attack 2b: one address opening more idle sockets than its share.
func TestAttackIdleSocketsPerAddress(t *testing.T) {
	_, n := attackNode(t, func(c *node.Config) { c.Transport.MaxConnsPerAddress = 50 })
	w := watch(t, n.URL()) // one of the 50
	closeIdle := dialIdle(t, n.Addr, 200)
	time.Sleep(time.Second) // the flood held for a while
	w.check(t)
	closeIdle()
	wait.For(t, 10*time.Second, func() error {
		if v, err := nodetest.Metric(n.URL(), "tickstream_refused_total", `reason="max_conns_per_address"`); err != nil || v < 150 {
			return fmt.Errorf("shed %v connections (%v), want 150+", v, err)
		}
		return nil
	})
}

// Attack 2d: a wave of idle sockets from several addresses fills the
// node's connection cap and goes on. New connections that send a request,
// /healthz included, still get in and are answered: at the cap a newcomer
// takes the place of the oldest connection that has not sent a byte, and
// none that has spoken (the normal subscriber) is touched.
func TestAttackIdleSocketWaveLeavesRoomForHealthChecks(t *testing.T) {
	const maxConns = 300
	_, n := attackNode(t, func(c *node.Config) {
		c.Transport.MaxConns = maxConns
		c.Transport.ReadTimeout = time.Minute // the idle sockets are not cut by the read timeout
	})
	w := watch(t, n.URL())
	// The wave: idle sockets from 127.0.0.2 … 127.0.0.9, more than the cap,
	// then on until the probes are done (at most 3,000).
	stop := make(chan struct{})
	var dialed sync.WaitGroup
	var mu sync.Mutex
	var idle []net.Conn
	opened := 0
	dialed.Add(1)
	go func() {
		defer dialed.Done()
		for i := 0; i < 3000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", n.Addr)
			if err != nil {
				continue // reset before connect returned
			}
			mu.Lock()
			idle, opened = append(idle, c), opened+1
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		dialed.Wait()
		for _, c := range idle {
			c.Close()
		}
	})
	wait.For(t, 30*time.Second, func() error { // the cap is reached
		mu.Lock()
		k := opened
		mu.Unlock()
		if k < 2*maxConns {
			return fmt.Errorf("%d idle sockets opened", k)
		}
		return nil
	})
	probe := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var worst time.Duration
	for i := range 10 {
		start := time.Now()
		resp, err := probe.Get(n.URL() + "/healthz")
		if err != nil {
			t.Fatalf("/healthz %d during the wave: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/healthz %d during the wave: %s", i, resp.Status)
		}
		worst = max(worst, time.Since(start))
	}
	mu.Lock()
	k := opened
	mu.Unlock()
	evicted := metric(t, n.URL(), "tickstream_refused_total", `reason="evicted_silent"`)
	t.Logf("10 /healthz during a wave of %d idle sockets (cap %d): slowest %v; %v silent connections evicted",
		k, maxConns, worst.Round(time.Millisecond), evicted)
	if evicted == 0 {
		t.Error("no silent connection was evicted: the wave did not reach the cap")
	}
	if v := metric(t, n.URL(), "tickstream_open_connections", ""); v > maxConns {
		t.Errorf("%v connections open, cap %d", v, maxConns)
	}
	w.check(t)
}

// Attack 2c: the process really runs out of descriptors (a node allowed
// more connections than its open-file limit): accept fails with EMFILE,
// which is counted and retried, never fatal; the node serves again once
// the idle sockets go.
func TestAttackDescriptorExhaustionIsNotFatal(t *testing.T) {
	tooltest.Path(t, "util-linux", "prlimit")
	f := nodetest.NewFeed(t)
	f.RunSimulator(2000, 0)
	addr := nodetest.FreeAddr(t)
	cmd := exec.Command("prlimit", "--nofile=300:300", bintest.Tickstream(t), "serve",
		"--redis", f.Redis.URL(), "--addr", addr, "--max-conns", "5000", "--read-timeout", "3s")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	base := "http://" + addr
	wait.For(t, 20*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %s", resp.Status)
		}
		return nil
	})
	w := watch(t, base)
	var idle []net.Conn
	for range 400 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		idle = append(idle, c)
	}
	// The idle ones past ~290 wait in the backlog while accept fails.
	time.Sleep(2 * time.Second) // let the node meet EMFILE for a while
	select {
	case err := <-exited:
		t.Fatalf("the node exited under descriptor exhaustion: %v", err)
	default:
	}
	w.check(t)
	for _, c := range idle {
		c.Close()
	}
	wait.For(t, 20*time.Second, func() error {
		if v, err := nodetest.Metric(base, "tickstream_accept_errors_total", `reason="emfile"`); err != nil || v < 1 {
			return fmt.Errorf("EMFILE counted %v times (%v)", v, err)
		}
		return nil
	})
	wait.For(t, 20*time.Second, func() error { // and it serves new streams
		resp, err := http.Get(base + "/stream?symbols=AAPL")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("stream: %s", resp.Status)
		}
		return nil
	})
}

// Attack 4: clients that reset right after their request. The stream's
// first write fails; its address slot and the gauge are released anyway.
func TestAttackResetAfterRequestLeaksNothing(t *testing.T) {
	_, n := attackNode(t, func(c *node.Config) { c.Transport.MaxPerAddress = 5 })
	w := watch(t, n.URL()) // holds one of the 5 slots
	for range 100 {
		c, err := net.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /stream?symbols=*&interval=0 HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close() // RST
	}
	wait.For(t, 10*time.Second, func() error {
		if v := metric(t, n.URL(), "tickstream_subscribers", `transport="sse"`); v != 1 {
			return fmt.Errorf("%v SSE subscribers counted, want the watcher only", v)
		}
		return nil
	})
	// Four slots are free: four streams open, the fifth is refused.
	for i := range 4 {
		s := openStream(t, n.URL()+"/stream?symbols=AAPL", "")
		s.until("ready")
		defer s.close()
		_ = i
	}
	if err := refusedStream(n.URL() + "/stream?symbols=AAPL"); err != nil {
		t.Errorf("sixth stream from one address: %v", err)
	}
	w.check(t)
}

// Attack 5: raw subscribers to everything that never read. Each is seen
// as slow within its small send buffer, holds at most its bounded pending
// bytes, and is dropped once its queue overflows; the node's pending bytes
// come back to zero.
func TestAttackNonReadingRawSubscribers(t *testing.T) {
	// The benchmark BenchmarkNonReadingRawSubscribers runs 2,000 at full
	// scale; here 50, under the race detector.
	_, n := attackNode(t, func(c *node.Config) { c.Hub.RawQueue = 2048 })
	w := watch(t, n.URL())
	const k = 50
	conns := make([]net.Conn, 0, k)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	for range k {
		c, err := d.Dial("tcp", n.Addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /stream?symbols=*&mode=raw HTTP/1.1\r\nHost: x\r\n\r\n")
		conns = append(conns, c)
	}
	peak := 0.0
	wait.For(t, 30*time.Second, func() error {
		peak = max(peak, metric(t, n.URL(), "tickstream_pending_bytes", ""))
		if v := metric(t, n.URL(), "tickstream_subscribers", `transport="sse"`); v != 1 {
			return fmt.Errorf("%v SSE subscribers, want the watcher only: the %d non-readers dropped", v, k)
		}
		return nil
	})
	if limit := float64(k * (128 << 10)); peak > limit {
		t.Errorf("peak pending %.0f bytes for %d non-readers, bound %.0f", peak, k, limit)
	}
	wait.For(t, 10*time.Second, func() error { // at most the watcher's own
		if p := metric(t, n.URL(), "tickstream_pending_bytes", ""); p > 128<<10 {
			return fmt.Errorf("%v bytes still pending", p)
		}
		return nil
	})
	t.Logf("peak pending %.0f bytes for %d non-readers (%.1f KiB each); %v dropped on overflow, %v as slow consumers", peak, k, peak/k/1024,
		metric(t, n.URL(), "tickstream_raw_overflows_total", ""), metric(t, n.URL(), "tickstream_slow_consumer_drops_total", ""))
	w.check(t)
}

// Attack 6: the smaller ones.
func TestAttackSmallerOnes(t *testing.T) {
	_, n := attackNode(t, func(c *node.Config) { c.Transport.MessageRate = 5 })
	w := watch(t, n.URL())
	wsURL := strings.Replace(n.URL(), "http", "ws", 1) + "/ws"

	t.Run("ping frames count against the message rate", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			for range 100 {
				if c.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
					t.Fatalf("closed with %v, want 1008", err)
				}
				return
			}
		}
	})

	t.Run("invalid UTF-8 closes 1007", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, []byte("{\"op\":\"ping\",\"id\":\"\xff\xfe\"}")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				if !websocket.IsCloseError(err, websocket.CloseInvalidFramePayloadData) {
					t.Fatalf("closed with %v, want 1007", err)
				}
				return
			}
		}
	})

	t.Run("a ping id is echoed up to a bound", func(t *testing.T) {
		c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"ping","id":"`+strings.Repeat("y", 1000)+`"}`))
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"ping","id":7}`))
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got []map[string]any
		for len(got) < 3 { // hello, error, pong
			var m map[string]any
			if err := c.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		if got[1]["type"] != "error" || !strings.Contains(fmt.Sprint(got[1]["error"]), "limit") || got[2]["type"] != "pong" || got[2]["id"] != 7.0 {
			t.Fatalf("got %v", got)
		}
	})

	t.Run("HEAD /stream opens no stream", func(t *testing.T) {
		before := metric(t, n.URL(), "tickstream_subscribers", `transport="sse"`)
		resp, err := http.Head(n.URL() + "/stream?symbols=*")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("HEAD: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		if after := metric(t, n.URL(), "tickstream_subscribers", `transport="sse"`); after != before {
			t.Fatalf("HEAD made a subscriber: %v -> %v", before, after)
		}
	})
	w.check(t)
}

// A hung Redis (stopped, its connections open) makes /readyz fail within
// a few seconds, so a load balancer stops sending new clients; it is ready
// again once Redis answers.
func TestReadyzFailsWhileRedisHangs(t *testing.T) {
	f, n := attackNode(t, nil)
	ready := func() (int, error) {
		resp, err := http.Get(n.URL() + "/readyz")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := ready(); err != nil || code != 200 {
		t.Fatalf("readyz %d %v", code, err)
	}
	f.Redis.Pause()
	paused := time.Now()
	wait.For(t, 10*time.Second, func() error {
		if code, err := ready(); err != nil || code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d %v with Redis stopped", code, err)
		}
		return nil
	})
	t.Logf("readyz failed %v after Redis stopped", time.Since(paused).Round(10*time.Millisecond))
	f.Redis.Resume()
	wait.For(t, 20*time.Second, func() error {
		if code, err := ready(); err != nil || code != 200 {
			return fmt.Errorf("readyz %d %v with Redis back", code, err)
		}
		return nil
	})
}
