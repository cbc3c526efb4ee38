package node_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/simulator"
)

// BenchmarkSeedRSSUnderForgedShard measures the peak RSS (VmHWM) of a node
// process (the tickstream binary; TICKSTREAM_BIN runs another build) that
// starts beside a forged shard of 2,500 entries of 1,000 ticks each
// (~340 MB in Redis), until it has seeded its charts:
//
//	go test -run XXX -bench SeedRSSUnderForgedShard -benchtime 1x ./node
func BenchmarkSeedRSSUnderForgedShard(b *testing.B) {
	f := nodetest.NewFeed(b)
	syms := simulator.Universe(0).Names()
	for range 20 {
		f.Tick(syms...)
	}
	const sym = "AAPL"
	ctx := context.Background()
	js, err := f.RDB.HGet(ctx, redisstream.LastKey(feed.ShardOf(sym, nodetest.Shards)), sym).Result()
	if err != nil {
		b.Fatal(err)
	}
	batch := strings.TrimSuffix(strings.Repeat(js+"\n", redisstream.MaxBatchTicks), "\n")
	for range 25 {
		p := f.RDB.Pipeline()
		for range 100 {
			p.XAdd(ctx, &redis.XAddArgs{Stream: redisstream.StreamKey(feed.ShardOf(sym, nodetest.Shards)), Values: []any{"b", batch}})
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	bin := os.Getenv("TICKSTREAM_BIN")
	if bin == "" {
		bin = bintest.Tickstream(b)
	}
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(bin, "serve", "--redis", f.Redis.URL(), "--addr", "127.0.0.1:0", "--node", "rss")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stderr, _ := cmd.StderrPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		seeded := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stderr)
			closed := false
			for sc.Scan() {
				if !closed && (strings.Contains(sc.Text(), "charts seeded") || strings.Contains(sc.Text(), "cannot seed")) {
					close(seeded)
					closed = true
				}
			}
		}()
		select {
		case <-seeded:
		case <-time.After(5 * time.Minute):
			b.Fatal("the node did not seed its charts in 5 minutes")
		}
		took := time.Since(start)
		hwm := procKB(b, cmd.Process.Pid, "VmHWM")
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		b.ReportMetric(float64(hwm)/1024, "peak-rss-MB")
		b.ReportMetric(took.Seconds(), "seed-s")
	}
}

// procKB reads a field (in kB) of /proc/pid/status.
func procKB(tb testing.TB, pid int, field string) int {
	tb.Helper()
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
