package benchmarks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/simulator"
)

// BenchmarkFeed measures what the feed path costs per tick, each part in
// its own process: the simulator (`tickstream simulate`: generating,
// encoding and publishing), a node (`tickstream serve`: reading, validating,
// handing to the hub and the charts) and redis-server. Each process's CPU
// (utime+stime from /proc/<pid>/stat) over a measured window is divided by
// the ticks the node took in over it (tickstream_hub_ticks_total). 500
// symbols, 16 shards, at 20,000 and 200,000 ticks/s (where the simulator
// cannot keep up, it publishes what it can: ticks/s says how much).
//
// The node paces its reads by its subscribers' need, so sub= says who
// watches: none (reads every 50 ms), one SSE subscriber to every symbol at
// the default interval of 250 ms (reads every 25 ms; its writes, one per
// 250 ms, are in the node's figure), and at 20,000 ticks/s one raw
// subscriber to every symbol (reads every 5 ms; the node's figure then
// includes writing every tick to it).
//
// Beside them runs the publisher's floor (pubfloor_test.go: a process that
// only wakes once a window, writes a batch's bytes to a Redis of its own
// and reads the reply, as cheaply as a program can): pub-floor-µs/tick is
// its CPU over the same ticks, pub÷floor the simulator's as a multiple of
// it. On a machine where waking up is dear, no publisher of batches gets
// below the floor, whatever it does per tick.
//
//	go test -run XXX -bench Feed -benchtime 1x ./benchmarks
//
// TICKSTREAM_BENCH_FEED_SECONDS sets the measured window (default 10);
// TICKSTREAM_BENCH_PUBLISH_EVERY the simulator's batch window (default its
// own, simulator.DefaultWindow);
// TICKSTREAM_BENCH_NODE_PROFILE=path writes the node's CPU profile to
// path.<rate>.
func BenchmarkFeed(b *testing.B) {
	for _, rate := range []int{20_000, 200_000} {
		for _, sub := range []string{"none", "250ms", "raw"} {
			if sub == "raw" && rate > 20_000 {
				continue // the node's figure would be a subscriber's writes
			}
			b.Run(fmt.Sprintf("rate=%dk/sub=%s", rate/1000, sub), func(b *testing.B) {
				for range b.N {
					benchFeed(b, rate, sub)
				}
			})
		}
	}
}

func benchFeed(b *testing.B, rate int, sub string) {
	window := 10 * time.Second
	if s, err := strconv.Atoi(os.Getenv("TICKSTREAM_BENCH_FEED_SECONDS")); err == nil && s > 0 {
		window = time.Duration(s) * time.Second
	}
	srv := redistest.Start(b)
	rdb := srv.Client()
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		b.Fatal(err)
	}
	redisPid := 0
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			redisPid, _ = strconv.Atoi(v)
		}
	}
	if redisPid == 0 {
		b.Fatal("no process_id in INFO server")
	}
	bin := bintest.Tickstream(b)
	simArgs := []string{"simulate", "--redis", srv.URL(), "--rate", strconv.Itoa(rate), "--universe", "500", "--log-level", "error"}
	every := simulator.DefaultWindow
	if d := os.Getenv("TICKSTREAM_BENCH_PUBLISH_EVERY"); d != "" {
		simArgs = append(simArgs, "--publish-every", d)
		if every, err = time.ParseDuration(d); err != nil {
			b.Fatal(err)
		}
	}
	sim := startProc(b, bin, simArgs...)
	// The publisher's floor (pubfloor_test.go), on a Redis of its own: a
	// batch's bytes (~200 a tick with its symbol) once a window.
	floorRedis := redistest.Start(b)
	floor := exec.Command(os.Args[0])
	floor.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%v,%d", pubFloorEnv, strings.TrimPrefix(floorRedis.URL(), "unix://"),
		every, max(1, int(float64(rate)*every.Seconds()*200))))
	floor.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	floor.Stderr = os.Stderr
	if err := floor.Start(); err != nil {
		b.Fatal(err)
	}
	stopProc(b, floor)
	nodeArgs := []string{"serve", "--redis", srv.URL(), "--addr", "127.0.0.1:0", "--node", "feedbench", "--log-level", "error"}
	if p := os.Getenv("TICKSTREAM_BENCH_NODE_PROFILE"); p != "" {
		nodeArgs = append(nodeArgs, "--cpuprofile", fmt.Sprintf("%s.%d", p, rate))
	}
	node := startProc(b, bin, nodeArgs...)
	stdout, err := node.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := node.Start(); err != nil {
		b.Fatal(err)
	}
	stopProc(b, node)
	addr, err := loadgen.WaitListen(stdout, 30*time.Second)
	if err != nil {
		b.Fatalf("node: %v", err)
	}
	base := "http://" + addr
	switch sub {
	case "250ms":
		watch(b, base+"/stream?symbols=*&interval=250ms")
	case "raw":
		watch(b, base+"/stream?symbols=*&mode=raw")
	}
	time.Sleep(3 * time.Second) // warm up: the node has synced, the feed runs at its pace
	ticks0, err := nodetest.Metric(base, "tickstream_hub_ticks_total", "")
	if err != nil {
		b.Fatal(err)
	}
	pids := []int{sim.Process.Pid, node.Process.Pid, redisPid, floor.Process.Pid}
	cpu0 := make([]time.Duration, len(pids))
	for i, p := range pids {
		cpu0[i] = loadgen.ProcCPU(p)
	}
	start := time.Now()
	time.Sleep(window)
	el := time.Since(start)
	cpu1 := make([]time.Duration, len(pids))
	for i, p := range pids {
		cpu1[i] = loadgen.ProcCPU(p)
	}
	ticks1, err := nodetest.Metric(base, "tickstream_hub_ticks_total", "")
	if err != nil {
		b.Fatal(err)
	}
	n := ticks1 - ticks0
	if n <= 0 {
		b.Fatalf("the node took in no tick in %v", el)
	}
	per := func(i int) float64 { return float64((cpu1[i] - cpu0[i]).Microseconds()) / n }
	b.ReportMetric(n/el.Seconds(), "ticks/s")
	b.ReportMetric(per(1), "node-µs/tick")
	b.ReportMetric(per(0), "pub-µs/tick")
	b.ReportMetric(per(2), "redis-µs/tick")
	b.ReportMetric(per(3), "pub-floor-µs/tick")
	if per(3) > 0 {
		b.ReportMetric(per(0)/per(3), "pub÷floor")
	}
	if pace, err := nodetest.Metric(base, "tickstream_redis_read_pace_seconds", ""); err == nil {
		b.ReportMetric(pace*1000, "read-pace-ms")
	}
	b.Logf("rate %d: %.0f ticks/s over %v; CPU simulate %v, node %v, redis %v, publisher's floor %v (a wake, a write and a read every %v)",
		rate, n/el.Seconds(), el.Round(time.Millisecond), cpu1[0]-cpu0[0], cpu1[1]-cpu0[1], cpu1[2]-cpu0[2], cpu1[3]-cpu0[3], every)
}

// watch subscribes to url for the rest of the benchmark, reading and
// discarding what arrives.
func watch(b *testing.B, url string) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s", url, resp.Status)
	}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = io.Copy(io.Discard, resp.Body) }()
	b.Cleanup(func() { cancel(); _ = resp.Body.Close(); <-done })
}

// startProc starts the simulator (it is started here) or prepares a node
// (its caller takes its stdout and starts it).
func startProc(b *testing.B, bin string, args ...string) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	if args[0] == "simulate" {
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		stopProc(b, cmd)
	}
	return cmd
}

// stopProc stops a started process when the benchmark ends.
func stopProc(b *testing.B, cmd *exec.Cmd) {
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
}
