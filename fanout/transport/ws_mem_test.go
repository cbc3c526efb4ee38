//go:build linux

package transport_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/redistest"
)

// BenchmarkIdleSubscribers connects idle subscribers (SSE, then
// WebSocket, each to a node of its own in its own process, one symbol
// each, nothing read after the response head) and reports the node's
// resident memory per subscriber once it has settled, and the time to
// connect them all. The machine is shared: compare the transports of one
// run. TICKSTREAM_BENCH_IDLE sets how many (default 5000);
// TICKSTREAM_BENCH_BIN runs another tickstream binary (an older build);
// TICKSTREAM_BENCH_NODE_PROFILE=path writes the nodes' CPU profiles to
// path.sse and path.ws.
//
//	go test -run '^$' -bench IdleSubscribers -benchtime 1x ./fanout/transport/
func BenchmarkIdleSubscribers(b *testing.B) {
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("TICKSTREAM_BENCH_IDLE")); err == nil && v > 0 {
		n = v
	}
	bin := os.Getenv("TICKSTREAM_BENCH_BIN")
	if bin == "" {
		bin = bintest.Tickstream(b)
	}
	rds := redistest.Start(b)
	// The universe, stored by a simulator, at one tick a second: the
	// subscribers are all but idle.
	sim := exec.Command(bin, "simulate", "--redis", rds.URL(), "--rate", "1")
	sim.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sim.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sim.Process.Kill(); _ = sim.Wait() }()
	for _, tr := range []string{"sse", "ws"} {
		b.Run("transport="+tr, func(b *testing.B) {
			for range b.N {
				kb, took := idleRun(b, bin, rds.URL(), tr, n)
				b.ReportMetric(kb, "KB/subscriber")
				b.ReportMetric(took.Seconds(), "s/connect-all")
			}
		})
	}
}

var listenLine = regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)

// idleRun starts a node, connects n idle subscribers of transport tr and
// returns the node's settled RSS above its baseline per subscriber, and
// how long connecting took.
func idleRun(b *testing.B, bin, redisURL, tr string, n int) (float64, time.Duration) {
	cmd := exec.Command(bin, "serve", "--redis", redisURL, "--addr", "127.0.0.1:0", "--node", "idle-"+tr,
		"--max-subscribers", strconv.Itoa(n+100), "--max-per-address", strconv.Itoa(n+100), "--ws-ping", "10m")
	if p := os.Getenv("TICKSTREAM_BENCH_NODE_PROFILE"); p != "" {
		cmd.Args = append(cmd.Args, "--cpuprofile", p+"."+tr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, _ := cmd.StderrPipe()
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { // SIGTERM: the node writes its profile
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil && strings.Contains(sc.Text(), "serving") {
				addr <- m[1]
			}
		}
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
		b.Fatal("node did not start")
	}
	pid := cmd.Process.Pid
	time.Sleep(2 * time.Second) // the node's start settles
	base := settledRSS(b, pid)

	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	next := make(chan int)
	for range 64 { // 64 handshakes in flight
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := idleDial(a, tr)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
				conns[i] = c
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	took := time.Since(start)
	for subscribersOf(a) < n {
		if time.Since(start) > 2*time.Minute {
			b.Fatalf("%d of %d subscribed", subscribersOf(a), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rss := settledRSS(b, pid)
	kb := float64(rss-base) / float64(n)
	b.Logf("%s: %d idle subscribers connected in %v; node RSS %d KiB before, %d KiB settled: %.1f KB per subscriber",
		tr, n, took.Round(10*time.Millisecond), base, rss, kb)
	return kb, took
}

// idleDial opens one subscriber of AAPL and reads its response head.
func idleDial(addr, tr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tr == "ws" {
		key := make([]byte, 16)
		_, _ = rand.Read(key)
		_, err = fmt.Fprintf(c, "GET /ws?symbols=AAPL HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n",
			addr, base64.StdEncoding.EncodeToString(key))
	} else {
		_, err = fmt.Fprintf(c, "GET /stream?symbols=AAPL HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(c, 256)
	line, err := br.ReadString('\n')
	want := "HTTP/1.1 200"
	if tr == "ws" {
		want = "HTTP/1.1 101"
	}
	if err != nil || !strings.HasPrefix(line, want) {
		c.Close()
		return nil, fmt.Errorf("%s: %q %v", tr, line, err)
	}
	return c, nil
}

// subscribersOf asks a node how many subscribers it holds.
func subscribersOf(addr string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var r struct {
		Subscribers int `json:"subscribers"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r.Subscribers
}

// settledRSS samples a process's RSS (KiB) once a second until it stops
// falling (the runtime returns the memory of a burst of handshakes over a
// few seconds) or 20 s pass, and returns the median of the last 5 samples.
func settledRSS(b *testing.B, pid int) int64 {
	var s []int64
	for i := 0; i < 20; i++ {
		s = append(s, procRSS(b, pid))
		if k := len(s); k >= 6 && s[k-1] >= s[k-6] {
			break
		}
		time.Sleep(time.Second)
	}
	last := append([]int64(nil), s[max(0, len(s)-5):]...)
	sort.Slice(last, func(i, j int) bool { return last[i] < last[j] })
	return last[len(last)/2]
}

func procRSS(b *testing.B, pid int) int64 {
	kb := loadgen.ProcRSSKB(pid)
	if kb == 0 {
		b.Fatalf("no VmRSS for process %d", pid)
	}
	return kb
}
