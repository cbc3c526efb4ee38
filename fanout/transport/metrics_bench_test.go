package transport_test

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// BenchmarkMetricsScrape measures what a flood of /metrics scrapes costs:
// gather=per-scrape gathers and encodes every metric for each scrape (no
// sharing, MetricsEvery < 0); gather=shared is the node's default, one
// gather per second shared by the scrapes waiting for it. 128 scrapers
// over loopback; cpu-us/scrape is the test process's CPU (node and
// scrapers together) per scrape. Run with a fixed count, e.g.
//
//	go test -run XXX -bench MetricsScrape -benchtime 2000x ./fanout/transport
func BenchmarkMetricsScrape(b *testing.B) {
	for _, c := range []struct {
		name  string
		every time.Duration
	}{{"per-scrape", -1}, {"shared", 0}} {
		b.Run("gather="+c.name, func(b *testing.B) {
			f := nodetest.NewFeed(b)
			f.Tick("AAPL", "MSFT")
			n := f.StartNode(func(cfg *node.Config) { cfg.Transport.MetricsEvery = c.every })
			tr := &http.Transport{MaxIdleConnsPerHost: 256}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			g0, cpu0 := transport.MetricsGathers(n.Server), processCPU()
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(64)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := cl.Get(n.URL() + "/metrics")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			b.StopTimer()
			cpu := processCPU() - cpu0
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/scrape")
			b.ReportMetric(float64(transport.MetricsGathers(n.Server)-g0)/float64(b.N), "gathers/scrape")
		})
	}
}

// processCPU returns the CPU time (user and system) the process used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
