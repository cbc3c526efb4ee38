package benchmarks

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
	"github.com/tickstream/tickstream/internal/nodetest"
)

// BenchmarkNonReadingRawSubscribers measures what subscribers that never
// read cost a node: 2,000 raw subscribers of every symbol (500 symbols,
// 20,000 ticks/s) open their streams with a 4 KiB receive buffer and never
// read. It reports the node's peak RSS above its baseline per subscriber,
// how long the node took to drop them all, and its RSS once they are gone
// as a share of the baseline.
//
//	go test -run XXX -bench NonReadingRaw -benchtime 1x ./benchmarks
func BenchmarkNonReadingRawSubscribers(b *testing.B) {
	const subs = 2000
	e := startEnv(b, load{name: "slowraw", symbols: 500, rate: 20000, skew: 1e-9})
	base := "http://" + e.addr
	time.Sleep(10 * time.Second) // the node settles on the feed (its charts and tapes fill)
	baseline := medianRSS(b, e.pid)
	for range b.N {
		conns := make([]net.Conn, 0, subs)
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		start := time.Now()
		for range subs {
			c, err := d.Dial("tcp", e.addr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "GET /stream?symbols=*&mode=raw HTTP/1.1\r\nHost: x\r\n\r\n")
			conns = append(conns, c)
		}
		peak := baseline
		var dropped time.Duration
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			peak = max(peak, rss(b, e.pid))
			if n, err := nodetest.Metric(base, "tickstream_subscribers", `transport="sse"`); err == nil && n == 0 && time.Since(start) > time.Second {
				dropped = time.Since(start)
				break
			}
		}
		if dropped == 0 {
			var state []string
			for _, m := range []string{"tickstream_subscribers", "tickstream_raw_overflows_total", "tickstream_slow_consumer_drops_total",
				"tickstream_pending_bytes", "tickstream_feed_max_lag_seconds", "tickstream_hub_ticks_total", "tickstream_writes_total"} {
				v, _ := nodetest.Metric(base, m, "")
				state = append(state, fmt.Sprintf("%s=%v", m, v))
			}
			b.Fatalf("the non-readers were not all dropped within 60 s: %s", strings.Join(state, " "))
		}
		for _, c := range conns {
			c.Close()
		}
		after := rss(b, e.pid)
		for deadline := time.Now().Add(60 * time.Second); after > baseline*6/5 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			after = rss(b, e.pid)
		}
		b.ReportMetric(float64(peak-baseline)/subs/1024, "peak-KiB/sub")
		b.ReportMetric(dropped.Seconds(), "s-to-drop-all")
		b.ReportMetric(100*float64(after)/float64(baseline), "%-of-baseline-after")
		b.Logf("baseline RSS %d KiB, peak %d KiB, after %d KiB; all %d dropped after %v", baseline>>10, peak>>10, after>>10, subs, dropped.Round(10*time.Millisecond))
	}
}

// rss returns a process's resident set size in bytes.
func rss(b *testing.B, pid int) int64 {
	b.Helper()
	kb := loadgen.ProcRSSKB(pid)
	if kb == 0 {
		b.Fatalf("no VmRSS for process %d", pid)
	}
	return kb << 10
}

// medianRSS is the median of a few samples a little apart.
func medianRSS(b *testing.B, pid int) int64 {
	var s [5]int64
	for i := range s {
		s[i] = rss(b, pid)
		time.Sleep(200 * time.Millisecond)
	}
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
