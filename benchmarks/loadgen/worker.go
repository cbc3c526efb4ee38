package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WorkerConfig is one load-generator process's share of a scale run.
type WorkerConfig struct {
	Nodes       []string      // node addresses host:port; subscribers spread round-robin
	Subscribers int           // how many this worker opens
	Offset      int           // index of its first subscriber (for round-robin and symbols)
	Symbols     []string      // the universe
	PerSub      int           // symbols per subscriber
	Interval    string        // conflation interval
	Transport   string        // sse, ws or shortpoll
	Every       time.Duration // short polling period
	ConnectRate int           // new connections per second
	Sample      int           // measure delay on one subscriber in Sample
	Hold        time.Duration // how long to hold after all are connected
	// FollowCluster places every reconnect on the node with the fewest
	// subscribers, as a least_conn proxy would (NodePicker), and so on
	// nodes added during the run.
	FollowCluster bool
}

// ConnectTimeout bounds the connect phase of a scale run: workers start
// their hold after it even if not every subscriber is connected.
const ConnectTimeout = 120 * time.Second

// Report is what a worker prints, one JSON line a second, and at the end.
type Report struct {
	Connected  int64             `json:"connected"`
	Receiving  int64             `json:"receiving"`
	Updates    uint64            `json:"updates"`
	Bytes      uint64            `json:"bytes"`
	Requests   uint64            `json:"requests"`
	Errors     uint64            `json:"errors"`
	Reconnects uint64            `json:"reconnects"`
	P50        float64           `json:"p50_ms"`
	P99        float64           `json:"p99_ms"`
	P999       float64           `json:"p999_ms"`
	Samples    uint64            `json:"delay_samples"`
	Hist       []uint64          `json:"hist,omitempty"` // at the end: the delay histogram
	Reasons    map[string]uint64 `json:"error_reasons,omitempty"`
	Done       bool              `json:"done"`
}

// RunWorker opens the subscribers, holds them, and writes Reports to out
// until ctx is done or the hold period ends.
func RunWorker(ctx context.Context, cfg WorkerConfig, out io.Writer) error {
	if err := checkPlatform(cfg.Transport); err != nil {
		return err
	}
	if len(cfg.Nodes) == 0 || len(cfg.Symbols) < cfg.PerSub {
		return fmt.Errorf("loadgen worker: %d nodes, %d symbols for %d per subscriber", len(cfg.Nodes), len(cfg.Symbols), cfg.PerSub)
	}
	st := &Stats{}
	pub := NewPublished()
	since := &atomic.Int64{}
	since.Store(time.Now().Add(time.Hour).UnixMicro())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One raw subscriber records when every tick was published, for the
	// delay of the sampled subscribers.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		recordPublished(ctx, cfg.Nodes[0], pub)
	}()
	var connected atomic.Int64
	last := make([]atomic.Int64, cfg.Subscribers)
	if cfg.Transport == "sse" || cfg.Transport == "ws" {
		var pick func() netip.AddrPort
		if cfg.FollowCluster {
			var seeds []netip.AddrPort
			for _, n := range cfg.Nodes {
				if a, err := netip.ParseAddrPort(n); err == nil {
					seeds = append(seeds, a)
				}
			}
			picker := NewPicker(seeds)
			pick = picker.Pick
			wg.Add(1)
			go func() { defer wg.Done(); picker.Run(ctx) }()
		}
		// One event loop reads every stream of this process.
		subs := make([]*EvSub, cfg.Subscribers)
		for i := range subs {
			gi := cfg.Offset + i
			node, err := netip.ParseAddrPort(cfg.Nodes[gi%len(cfg.Nodes)])
			if err != nil {
				return fmt.Errorf("loadgen worker: node address: %w", err)
			}
			tr := NewTracker(cfg.publishedFor(gi, pub), st, since)
			tr.Last = &last[i]
			syms := cfg.symbolsOf(gi)
			q := url.Values{"symbols": {strings.Join(syms, ",")}, "interval": {cfg.Interval}}
			var src netip.Addr
			if node.Addr().IsLoopback() && node.Addr().Is4() {
				a := gi / 100 // 100 connections per source address: 127.1.0.1, 127.1.0.2, …
				src = netip.AddrFrom4([4]byte{127, 1, byte(a / 250 % 250), byte(1 + a%250)})
			}
			path := "/stream?" + q.Encode()
			if cfg.Transport == "ws" {
				path = "/ws"
			}
			subs[i] = &EvSub{Addr: node, Pick: pick, Source: src, Path: path, Track: tr,
				WS: cfg.Transport == "ws", WSSymbols: syms, WSInterval: cfg.Interval,
				Ready: func() {
					if !tr.connected {
						tr.connected = true
						connected.Add(1)
					}
				},
				Failed: func(err error, everReady bool) {
					if everReady {
						st.Reconnect.Add(1)
					} else {
						st.Fail(err)
					}
				},
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := (&EvLoop{Stats: st, Rate: cfg.ConnectRate, Batch: 2 * time.Millisecond}).Run(ctx, subs); err != nil {
				st.Fail(err)
			}
		}()
	} else {
		httpc := NewHTTPClient(cfg.Subscribers, st)
		// Open ConnectRate connections a second, in steps of 10ms, so the
		// nodes' accept queues never overflow.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		perTick := max(cfg.ConnectRate/100, 1)
		opened := 0
		for opened < cfg.Subscribers && ctx.Err() == nil {
			<-tick.C
			for k := 0; k < perTick && opened < cfg.Subscribers; k++ {
				i := opened
				opened++
				wg.Add(1)
				go func() {
					defer wg.Done()
					runPoller(ctx, cfg, i, st, pub, since, &connected, &last[i], httpc)
				}()
			}
		}
	}
	enc := json.NewEncoder(out)
	// Wait until all are connected (bounded), reporting, then measure.
	deadline := time.Now().Add(ConnectTimeout)
	for connected.Load() < int64(cfg.Subscribers) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		_ = enc.Encode(Report{Connected: connected.Load(), Errors: st.Errors.Load()})
	}
	since.Store(time.Now().UnixMicro())
	end := time.Now().Add(cfg.Hold)
	report := func(done bool) {
		var hist []uint64
		if done {
			hist = st.Delay.Counts()
		}
		now := time.Now().UnixNano()
		var recv int64
		for i := range last {
			if now-last[i].Load() < int64(3*time.Second) {
				recv++
			}
		}
		_ = enc.Encode(Report{
			Connected: connected.Load(), Receiving: recv, Updates: st.Updates.Load(), Bytes: st.Bytes.Load(),
			Requests: st.Requests.Load(), Errors: st.Errors.Load(), Reconnects: st.Reconnect.Load(),
			P50: ms(st.Delay.Quantile(0.5)), P99: ms(st.Delay.Quantile(0.99)), P999: ms(st.Delay.Quantile(0.999)),
			Samples: st.Delay.Count(), Hist: hist, Done: done, Reasons: st.Reasons(),
		})
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(time.Second)
		report(false)
	}
	report(true)
	cancel()
	wg.Wait()
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// symbolsOf returns the watchlist of subscriber gi: PerSub distinct
// symbols drawn uniformly, the same on every run.
func (cfg *WorkerConfig) symbolsOf(gi int) []string {
	rng := rand.New(rand.NewPCG(uint64(gi), 99))
	syms := make([]string, 0, cfg.PerSub)
	seen := map[int]bool{}
	for len(syms) < cfg.PerSub {
		k := rng.IntN(len(cfg.Symbols))
		if !seen[k] {
			seen[k] = true
			syms = append(syms, cfg.Symbols[k])
		}
	}
	return syms
}

// publishedFor returns pub for the subscribers whose delay is sampled.
func (cfg *WorkerConfig) publishedFor(gi int, pub *Published) *Published {
	if cfg.Sample > 0 && gi%cfg.Sample == 0 {
		return pub
	}
	return nil
}

// runPoller runs short-polling client i until ctx is done (streams run on
// the event loop).
func runPoller(ctx context.Context, cfg WorkerConfig, i int, st *Stats, pub *Published, since *atomic.Int64,
	connected *atomic.Int64, last *atomic.Int64, httpc *http.Client) {
	gi := cfg.Offset + i
	node := cfg.Nodes[gi%len(cfg.Nodes)]
	tr := NewTracker(cfg.publishedFor(gi, pub), st, since)
	tr.Last = last
	q := url.Values{"symbols": {strings.Join(cfg.symbolsOf(gi), ",")}}
	connected.Add(1)
	last.Store(time.Now().UnixNano())
	// ShortPoller counts its failed requests and carries on until ctx ends.
	(&ShortPoller{Client: httpc, URL: "http://" + node + "/api/snapshot?" + q.Encode(), Every: cfg.Every, Track: tr, Stats: st}).Run(ctx)
}

// recordPublished follows every symbol in raw mode and records each
// tick's publication time.
func recordPublished(ctx context.Context, node string, pub *Published) {
	for ctx.Err() == nil {
		c, err := dialer(new(atomic.Uint64))(ctx, "tcp", node)
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		fmt.Fprintf(c, "GET /stream?symbols=*&mode=raw HTTP/1.1\r\nHost: %s\r\n\r\n", node)
		r := bufio.NewReaderSize(c, 64<<10)
		if chunked, err := readHead(r); err == nil {
			var body io.Reader = r
			if chunked {
				body = &chunkReader{r: r}
			}
			sc := bufio.NewScanner(body)
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Bytes()
				if len(line) > 6 && string(line[:6]) == "data: " {
					if sym, seq, ts, ok := ScanTick(line[6:]); ok {
						pub.Add(string(sym), seq, ts)
					}
				}
			}
		}
		stop()
		_ = c.Close()
	}
}
