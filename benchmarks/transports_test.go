package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
)

const clients = 1000

// transport is one way of getting prices.
type transport struct {
	name     string // sub-benchmark name
	kind     string // sse, ws, shortpoll, longpoll
	interval string // push: "0" is raw mode
	every    time.Duration
}

var transports = []transport{
	{name: "transport=sse/interval=0", kind: "sse", interval: "0"},
	{name: "transport=sse/interval=100ms", kind: "sse", interval: "100ms"},
	{name: "transport=sse/interval=1s", kind: "sse", interval: "1s"},
	{name: "transport=ws/interval=0", kind: "ws", interval: "0"},
	{name: "transport=ws/interval=100ms", kind: "ws", interval: "100ms"},
	{name: "transport=ws/interval=1s", kind: "ws", interval: "1s"},
	{name: "transport=shortpoll/every=1s", kind: "shortpoll", every: time.Second},
	{name: "transport=shortpoll/every=3s", kind: "shortpoll", every: 3 * time.Second},
	{name: "transport=longpoll", kind: "longpoll"},
}

// BenchmarkTransports runs every transport under every load with 1,000
// clients of 10 symbols each, against a node in its own process, and
// reports per delivered update the node's CPU, the wire bytes, and the
// change-to-screen delay.
func BenchmarkTransports(b *testing.B) {
	for _, l := range loads {
		b.Run("load="+l.name, func(b *testing.B) {
			e := startEnv(b, l)
			for _, tr := range transports {
				b.Run(fmt.Sprintf("%s/clients=%d", tr.name, clients), func(b *testing.B) { runScenario(b, e, tr) })
			}
		})
	}
}

// watchlist picks 10 distinct symbols, by the load's popularity skew.
func watchlist(rng *rand.Rand, names []string, skew float64) []string {
	weights := make([]float64, len(names))
	total := 0.0
	for i := range names {
		weights[i] = 1 / math.Pow(float64(i+1), skew)
		total += weights[i]
	}
	seen := map[string]bool{}
	var out []string
	for len(out) < 10 {
		x := rng.Float64() * total
		i := 0
		for ; i < len(weights)-1 && x > weights[i]; i++ {
			x -= weights[i]
		}
		if !seen[names[i]] {
			seen[names[i]] = true
			out = append(out, names[i])
		}
	}
	return out
}

func runScenario(b *testing.B, e *env, tr transport) {
	// The previous scenario's connections must be gone from the node, or
	// their cleanup is charged to this one.
	waitEmpty(b, e.addr)
	st := &loadgen.Stats{}
	since := &atomic.Int64{}
	since.Store(math.MaxInt64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	rng := rand.New(rand.NewPCG(5, 7))
	// The simulator's popularity order is the universe's definition order.
	names := popularity(e)
	httpc := loadgen.NewHTTPClient(clients, st)
	for i := 0; i < clients; i++ {
		syms := watchlist(rng, names, e.load.skew)
		track := loadgen.NewTracker(e.pub, st, since)
		q := url.Values{"symbols": {strings.Join(syms, ",")}}
		wg.Add(1)
		switch tr.kind {
		case "sse":
			if tr.interval == "0" {
				q.Set("mode", "raw")
			} else {
				q.Set("interval", tr.interval)
			}
			c := &loadgen.SSE{Addr: e.addr, Path: "/stream?" + q.Encode(), Track: track, Stats: st}
			stream(ctx, &wg, &ready, st, c.Run)
		case "ws":
			c := &loadgen.WS{URL: "ws://" + e.addr + "/ws", Symbols: syms, Interval: tr.interval, Raw: tr.interval == "0", Track: track, Stats: st}
			stream(ctx, &wg, &ready, st, c.Run)
		case "shortpoll":
			p := &loadgen.ShortPoller{Client: httpc, URL: "http://" + e.addr + "/api/snapshot?" + q.Encode(), Every: tr.every, Track: track, Stats: st}
			go func() { defer wg.Done(); p.Run(ctx) }()
		case "longpoll":
			p := &loadgen.LongPoller{Client: httpc, URL: "http://" + e.addr + "/api/poll?" + q.Encode(), Track: track, Stats: st}
			go func() { defer wg.Done(); p.Run(ctx) }()
		}
	}
	ready.Wait()
	// Warm up: pollers have made their first request, streams are live.
	warm := time.Second
	if tr.every > warm {
		warm = tr.every
	}
	time.Sleep(warm)
	// One op is one second; at least three, so that a 1 s interval or
	// poll period is seen three times whatever its phase (sparse: 20, to
	// see enough changes at all).
	ops := max(b.N, 3)
	if e.load.name == "sparse" {
		ops = max(ops, 20)
	}
	u0, by0, rq0, em0, ev0 := st.Updates.Load(), st.Bytes.Load(), st.Requests.Load(), st.Empty.Load(), st.Events.Load()
	cpu0 := loadgen.ProcCPU(e.pid)
	start := time.Now()
	since.Store(start.UnixMicro())
	b.ResetTimer()
	time.Sleep(time.Duration(ops) * time.Second)
	b.StopTimer()
	elapsed := time.Since(start)
	cpu := loadgen.ProcCPU(e.pid) - cpu0
	u, by, rq, em := st.Updates.Load()-u0, st.Bytes.Load()-by0, st.Requests.Load()-rq0, st.Empty.Load()-em0
	_ = st.Events.Load() - ev0
	// Let ticks published near the end be delivered before closing.
	time.Sleep(min(tr.every, 1500*time.Millisecond) + 300*time.Millisecond)
	cancel()
	wg.Wait()
	httpc.CloseIdleConnections()

	per := float64(max(u, 1))
	b.ReportMetric(float64(u)/elapsed.Seconds(), "updates/s")
	b.ReportMetric(float64(cpu.Microseconds())/per, "cpu-us/update")
	b.ReportMetric(float64(by)/per, "bytes/update")
	b.ReportMetric(float64(st.Delay.Quantile(0.50))/1e6, "p50-ms")
	b.ReportMetric(float64(st.Delay.Quantile(0.99))/1e6, "p99-ms")
	if tr.kind == "shortpoll" || tr.kind == "longpoll" {
		b.ReportMetric(float64(rq)/elapsed.Seconds(), "req/s")
		b.ReportMetric(100*float64(em)/float64(max(rq, 1)), "empty-%")
	}
	b.ReportMetric(float64(st.Errors.Load()), "errors")
}

// stream runs one streaming client; ready is done once it is live (or
// failed, counted as an error).
func stream(ctx context.Context, wg, ready *sync.WaitGroup, st *loadgen.Stats, run func(context.Context, func()) error) {
	ready.Add(1)
	var once sync.Once
	done := func() { once.Do(ready.Done) }
	go func() {
		defer wg.Done()
		if err := run(ctx, done); err != nil && ctx.Err() == nil {
			st.Errors.Add(1)
		}
		done()
	}()
}

// waitEmpty waits (up to 20s) until the node has no subscribers.
func waitEmpty(b *testing.B, addr string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			var r struct{ Subscribers int }
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if r.Subscribers == 0 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("node still has subscribers after 20s")
}

func popularity(e *env) []string {
	// simulator.Universe sorts by name; the generator's popularity follows
	// the definition order, which Universe(n) does not expose. Watchlists
	// use the sorted order with the same skew: the hottest symbols of the
	// feed and of the watchlists then differ, a harder case for caching.
	return e.uni.Names()
}
