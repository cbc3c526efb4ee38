package loadgen

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ScaleConfig is the headline scenario: several nodes on one Redis, many
// subscribers opened by several worker processes (a process here holds at
// most ~19,900 sockets).
type ScaleConfig struct {
	Bin         string // the tickstream binary
	RedisURL    string // empty: start a private redis-server
	Subscribers int
	Nodes       int
	Workers     int
	Symbols     int
	Rate        float64
	PerSub      int
	Interval    string
	Transport   string
	Every       time.Duration
	Hold        time.Duration
	ConnectRate int // per second, whole run
	Sample      int
	// AddNodeAfter, if positive, starts one more node this long into the
	// hold and measures how long the cluster takes to balance (every node
	// within BalanceWithin of the mean). The workers then place their
	// reconnects as a least_conn proxy would (WorkerConfig.FollowCluster).
	AddNodeAfter time.Duration
	// BalanceWithin is the tolerance of "balanced". Default 0.15.
	BalanceWithin float64
	// NodeArgs are extra flags for every serve process.
	NodeArgs []string
	Log      io.Writer
}

// NodeResult is one node's resources.
type NodeResult struct {
	Addr          string
	Subscribers   int64
	BaseRSSKB     int64
	RSSKB         int64
	KBPerSub      float64
	CPUPercent    float64
	CPUUsPerWrite float64
}

// ScaleResult aggregates a run.
type ScaleResult struct {
	Config        ScaleConfig
	Connected     int64
	MinReceiving  int64
	UpdatesPerSec float64
	BytesPerSec   float64
	RequestsPerS  float64
	Errors        uint64
	Reconnects    uint64
	ErrorReasons  map[string]uint64 // why connections or requests failed
	P50, P99      time.Duration
	P999          time.Duration
	DelaySamples  uint64
	Nodes         []NodeResult
	TicksPerSec   float64 // ticks that reached each node's hub, per second (the feed as delivered)
	WritesPerSec  float64 // batches the nodes wrote, all nodes, per second
	SlowConsumers float64 // times a subscriber became slow (its socket full) during the hold
	// NodeLagP50 and NodeLagP99 bound, in seconds, the nodes' own lag from a
	// written update's feed timestamp to its write (histogram bucket upper
	// bounds): the delay the nodes add before the load generator reads.
	NodeLagP50, NodeLagP99 float64
	FeedMaxLag             float64     // seconds: the worst feed lag (feed timestamp → read from Redis) on any node
	TCP                    TCPCounters // kernel TCP counters over the run (whole machine)
	TCPMemPeakKB           int64       // kernel TCP buffer memory at its highest
	TCPMemPressKB          int64       // where the kernel starts to squeeze it (tcp_mem)
	LoadgenCPU             float64     // percent of one core, all workers
	SimCPU                 float64
	RedisCPU               float64
	Held                   time.Duration
	// With AddNodeAfter: when the node was added (into the hold), how long
	// the cluster took from then until every node held within
	// BalanceWithin of the mean (-1: not within the hold), and the counts
	// then and at the end.
	AddedAt        time.Duration
	BalancedAfter  time.Duration
	BalancedCounts []int64
	FinalCounts    []int64
	RebalanceMoves float64 // subscribers the nodes sent away (tickstream_rebalance_sent_away_total)
}

type proc struct {
	cmd  *exec.Cmd
	name string
}

func (p *proc) cpu() time.Duration {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return ProcCPU(p.cmd.Process.Pid)
}

// ProcCPU returns a process's user+system CPU time so far, from /proc.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ProcRSSKB returns a process's resident set size in KiB, from /proc (0
// if it cannot be read).
func ProcRSSKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

var listenRE = regexp.MustCompile(`listening on http://([0-9.:]+)/`)

// profile names the CPU profile file of a process when
// TICKSTREAM_LOADGEN_PROFILES names a directory ("" = none).
func profile(name string) string {
	if dir := os.Getenv("TICKSTREAM_LOADGEN_PROFILES"); dir != "" {
		return filepath.Join(dir, name+".prof")
	}
	return ""
}

// RunScale runs the scenario and returns its figures.
func RunScale(ctx context.Context, cfg ScaleConfig) (*ScaleResult, error) {
	if err := checkPlatform(cfg.Transport); err != nil {
		return nil, err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(cfg.Log, format+"\n", a...) }
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			stopProcess(p.cmd.Process)
			done := make(chan struct{})
			go func() { _ = p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
	}()
	start := func(name string, args ...string) (*proc, io.Reader, error) {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = childAttr()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = nil
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", name, err)
		}
		p := &proc{cmd: cmd, name: name}
		procs = append(procs, p)
		return p, out, nil
	}
	var redisProc *proc
	redisURL := cfg.RedisURL
	if redisURL == "" {
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			return nil, errors.New("redis-server not found: install it (apt-get install redis-server) or pass --redis")
		}
		dir, err := os.MkdirTemp("", "tsload")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		sock := filepath.Join(dir, "redis.sock")
		redisProc, _, err = start("redis", bin, "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir, "--maxclients", "1000")
		if err != nil {
			return nil, err
		}
		redisURL = "unix://" + sock
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		logf("redis-server started on %s", sock)
	}
	sim, _, err := start("simulate", cfg.Bin, "simulate", "--redis", redisURL, "--rate", fmt.Sprint(cfg.Rate), "--universe", strconv.Itoa(cfg.Symbols))
	if err != nil {
		return nil, err
	}
	// The feed is the experiment's input and would run elsewhere in
	// production: it gets the CPU it needs first, so that the nodes are
	// measured at the tick rate asked (needs root; otherwise it competes).
	for _, p := range []*proc{sim, redisProc} {
		if p != nil {
			if err := raisePriority(p.cmd.Process.Pid); err != nil {
				logf("could not raise the %s's priority (%v): the feed may fall short of %.0f ticks/s on a saturated machine", p.name, err, cfg.Rate)
			}
		}
	}
	maxSubs := cfg.Subscribers/cfg.Nodes + 500
	nodes := make([]*proc, cfg.Nodes)
	addrs := make([]string, cfg.Nodes)
	startNode := func(i int) (*proc, string, error) {
		args := []string{cfg.Bin, "serve", "--redis", redisURL, "--addr", "127.0.0.1:0",
			"--node", fmt.Sprintf("node%d", i), "--max-subscribers", strconv.Itoa(maxSubs), "--drain", "1s",
			"--max-per-address", strconv.Itoa(maxSubs)} // every client comes from 127.0.0.1
		args = append(args, "--cpuprofile", profile(fmt.Sprintf("node%d", i)))
		args = append(args, cfg.NodeArgs...)
		p, out, err := start(fmt.Sprintf("node%d", i), args...)
		if err != nil {
			return nil, "", err
		}
		addr, err := WaitListen(out, 30*time.Second)
		if err != nil {
			return nil, "", fmt.Errorf("node %d: %w", i, err)
		}
		return p, addr, nil
	}
	for i := range nodes {
		p, addr, err := startNode(i)
		if err != nil {
			return nil, err
		}
		nodes[i], addrs[i] = p, addr
	}
	logf("%d nodes serving: %s", cfg.Nodes, strings.Join(addrs, " "))
	time.Sleep(2 * time.Second)
	base := make([]int64, cfg.Nodes)
	for i, n := range nodes {
		base[i] = ProcRSSKB(n.cmd.Process.Pid)
	}
	// Workers.
	type wstate struct {
		last Report
		done bool
	}
	var mu sync.Mutex
	ws := make([]wstate, cfg.Workers)
	workers := make([]*proc, cfg.Workers)
	var wg sync.WaitGroup
	share := cfg.Subscribers / cfg.Workers
	for i := range workers {
		n := share
		if i == cfg.Workers-1 {
			n = cfg.Subscribers - share*(cfg.Workers-1)
		}
		p, out, err := start(fmt.Sprintf("worker%d", i), cfg.Bin, "loadgen", "--worker",
			"--node-addrs", strings.Join(addrs, ","), "--subscribers", strconv.Itoa(n), "--offset", strconv.Itoa(i*share),
			"--per-sub", strconv.Itoa(cfg.PerSub), "--interval", cfg.Interval, "--transport", cfg.Transport,
			"--every", cfg.Every.String(), "--connect-rate", strconv.Itoa(max(cfg.ConnectRate/cfg.Workers, 1)),
			"--sample", strconv.Itoa(cfg.Sample), "--duration", cfg.Hold.String(), "--cpuprofile", profile(fmt.Sprintf("worker%d", i)),
			"--follow-cluster="+strconv.FormatBool(cfg.AddNodeAfter > 0))
		if err != nil {
			return nil, err
		}
		workers[i] = p
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			dec := json.NewDecoder(out)
			for {
				var r Report
				if err := dec.Decode(&r); err != nil {
					mu.Lock()
					ws[i].done = true
					mu.Unlock()
					return
				}
				mu.Lock()
				ws[i].last = r
				if r.Done {
					ws[i].done = true
				}
				mu.Unlock()
			}
		}(i)
	}
	res := &ScaleResult{Config: cfg, MinReceiving: -1}
	tcp0, tcpErr := ReadTCPCounters()
	peakTCPMem := func() {
		used, press := TCPMemKB()
		res.TCPMemPeakKB, res.TCPMemPressKB = max(res.TCPMemPeakKB, used), press
	}
	sum := func() (Report, bool) {
		mu.Lock()
		defer mu.Unlock()
		var t Report
		all := true
		for _, w := range ws {
			t.Connected += w.last.Connected
			t.Receiving += w.last.Receiving
			t.Updates += w.last.Updates
			t.Bytes += w.last.Bytes
			t.Requests += w.last.Requests
			t.Errors += w.last.Errors
			t.Reconnects += w.last.Reconnects
			all = all && w.done
		}
		return t, all
	}
	// Wait for all to connect (workers start their hold then).
	connStart := time.Now()
	for {
		t, done := sum()
		if t.Connected >= int64(cfg.Subscribers) || done || time.Since(connStart) > ConnectTimeout+5*time.Second || ctx.Err() != nil {
			logf("connected %d of %d in %.1fs (errors %d)", t.Connected, cfg.Subscribers, time.Since(connStart).Seconds(), t.Errors)
			break
		}
		time.Sleep(time.Second)
		peakTCPMem()
		used, _ := TCPMemKB()
		logf("connecting: %d of %d (errors %d, kernel TCP buffers %d MB)", t.Connected, cfg.Subscribers, t.Errors, used/1024)
	}
	time.Sleep(3 * time.Second) // let every subscriber have its first updates
	t0, _ := sum()
	at0 := time.Now()
	cpu0 := make([]time.Duration, len(nodes))
	for i, n := range nodes {
		cpu0[i] = n.cpu()
	}
	met0 := nodeMetrics(addrs)
	met1 := met0
	feedMax := 0.0
	var wcpu0 time.Duration
	for _, w := range workers {
		wcpu0 += w.cpu()
	}
	sim0, red0 := sim.cpu(), redisProc.cpu()
	prev, prevAt := t0, at0
	type nodeSample struct {
		subs int64
		rss  int64
		cpu  time.Duration
	}
	samples := make([]nodeSample, len(nodes))
	var sampledAt time.Time
	res.BalancedAfter = -1
	within := cfg.BalanceWithin
	if within <= 0 {
		within = 0.15
	}
	var added time.Time
	for {
		time.Sleep(time.Second)
		if cfg.AddNodeAfter > 0 && added.IsZero() && time.Since(at0) >= cfg.AddNodeAfter {
			p, addr, err := startNode(len(nodes))
			if err != nil {
				return nil, err
			}
			added = time.Now()
			res.AddedAt = added.Sub(at0)
			nodes, addrs = append(nodes, p), append(addrs, addr)
			samples, cpu0, base = append(samples, nodeSample{}), append(cpu0, p.cpu()), append(base, ProcRSSKB(p.cmd.Process.Pid))
			logf("node%d added at %s, %.0fs into the hold", len(nodes)-1, addr, res.AddedAt.Seconds())
		}
		if !added.IsZero() {
			cs := make([]int64, len(addrs))
			var total int64
			for i, a := range addrs {
				cs[i] = subscribersOf(a)
				total += cs[i]
			}
			mean := float64(total) / float64(len(cs))
			ok := total >= int64(cfg.Subscribers)*99/100
			for _, c := range cs {
				ok = ok && math.Abs(float64(c)-mean) <= within*mean
			}
			res.FinalCounts = cs
			if ok && res.BalancedAfter < 0 {
				res.BalancedAfter, res.BalancedCounts = time.Since(added), cs
				logf("balanced %.1fs after the node was added: %v", res.BalancedAfter.Seconds(), cs)
			} else if res.BalancedAfter < 0 {
				logf("balancing: %v", cs)
			}
		}
		peakTCPMem()
		t, done := sum()
		if !done {
			// Nodes are sampled at the peak of subscribers held (workers
			// end their hold at slightly different times).
			cur := make([]nodeSample, len(nodes))
			var total, best int64
			for i, n := range nodes {
				cur[i] = nodeSample{subscribersOf(addrs[i]), ProcRSSKB(n.cmd.Process.Pid), n.cpu()}
				total += cur[i].subs
				best += samples[i].subs
			}
			m := nodeMetrics(addrs) // the feed lag gauge resets on every scrape: keep its max
			feedMax = max(feedMax, m["tickstream_feed_max_lag_seconds"])
			if total >= best {
				samples, sampledAt = cur, time.Now()
				met1 = m
			}
		}
		now := time.Now()
		rate := float64(t.Updates-prev.Updates) / now.Sub(prevAt).Seconds()
		if !done && t.Receiving > 0 && (res.MinReceiving < 0 || t.Receiving < res.MinReceiving) {
			res.MinReceiving = t.Receiving
		}
		logf("%5.0fs  connected %6d  receiving %6d  updates/s %9.0f  errors %d  reconnects %d",
			now.Sub(at0).Seconds(), t.Connected, t.Receiving, rate, t.Errors, t.Reconnects)
		prev, prevAt = t, now
		if done || ctx.Err() != nil {
			break
		}
	}
	held := prevAt.Sub(at0)
	res.Held = held
	tEnd := prev
	res.Connected = tEnd.Connected
	res.UpdatesPerSec = float64(tEnd.Updates-t0.Updates) / held.Seconds()
	res.BytesPerSec = float64(tEnd.Bytes-t0.Bytes) / held.Seconds()
	res.RequestsPerS = float64(tEnd.Requests-t0.Requests) / held.Seconds()
	res.Errors, res.Reconnects = tEnd.Errors, tEnd.Reconnects
	if tcp1, err := ReadTCPCounters(); err == nil && tcpErr == nil {
		res.TCP = tcp1.Sub(tcp0)
	}
	for i := range nodes {
		sm := samples[i]
		nr := NodeResult{Addr: addrs[i], Subscribers: sm.subs, BaseRSSKB: base[i], RSSKB: sm.rss,
			CPUPercent: 100 * (sm.cpu - cpu0[i]).Seconds() / sampledAt.Sub(at0).Seconds()}
		if sm.subs > 0 {
			nr.KBPerSub = float64(sm.rss-base[i]) / float64(sm.subs)
		}
		res.Nodes = append(res.Nodes, nr)
	}
	if el := sampledAt.Sub(at0).Seconds(); el > 0 {
		res.TicksPerSec = (met1["tickstream_hub_ticks_total"] - met0["tickstream_hub_ticks_total"]) / float64(len(nodes)) / el
		res.WritesPerSec = (met1["tickstream_writes_total"] - met0["tickstream_writes_total"]) / el
		res.SlowConsumers = met1["tickstream_slow_consumers_total"] - met0["tickstream_slow_consumers_total"]
		res.NodeLagP50, res.NodeLagP99 = lagQuantile(met0, met1, 0.5), lagQuantile(met0, met1, 0.99)
		res.FeedMaxLag = feedMax
	}
	if !added.IsZero() {
		res.RebalanceMoves = nodeMetrics(addrs)["tickstream_rebalance_sent_away_total"]
	}
	var wcpu time.Duration
	for _, w := range workers {
		wcpu += w.cpu()
	}
	res.LoadgenCPU = 100 * (wcpu - wcpu0).Seconds() / held.Seconds()
	res.SimCPU = 100 * (sim.cpu() - sim0).Seconds() / held.Seconds()
	res.RedisCPU = 100 * (redisProc.cpu() - red0).Seconds() / held.Seconds()
	wg.Wait()
	var h Hist
	res.ErrorReasons = map[string]uint64{}
	for _, w := range ws {
		h.Import(w.last.Hist)
		for msg, n := range w.last.Reasons {
			res.ErrorReasons[msg] += n
		}
	}
	res.P50, res.P99, res.P999, res.DelaySamples = h.Quantile(0.5), h.Quantile(0.99), h.Quantile(0.999), h.Count()
	return res, nil
}

// WaitListen reads a tickstream serve process's output until it says where
// it listens, and returns that address (host:port). It keeps reading the
// output afterwards, so the process never blocks on a full pipe.
func WaitListen(out io.Reader, d time.Duration) (string, error) {
	ch := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				ch <- m[1]
			}
		}
	}()
	select {
	case a := <-ch:
		return a, nil
	case <-time.After(d):
		return "", errors.New("did not start listening")
	}
}

// nodeMetrics sums the nodes' counters that explain a run (from /metrics).
func nodeMetrics(addrs []string) map[string]float64 {
	want := []string{"tickstream_hub_ticks_total", "tickstream_writes_total", "tickstream_slow_consumers_total", "tickstream_feed_max_lag_seconds", "tickstream_rebalance_sent_away_total"}
	const lag = `tickstream_delivery_lag_seconds_bucket{le="`
	out := map[string]float64{}
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if ok && (slices.Contains(want, name) || strings.HasPrefix(name, lag)) {
				v, _ := strconv.ParseFloat(val, 64)
				if name == "tickstream_feed_max_lag_seconds" {
					out[name] = max(out[name], v) // the worst node
					continue
				}
				out[name] += v
			}
		}
		resp.Body.Close()
	}
	return out
}

// lagQuantile returns the upper bound (seconds) of the nodes' delivery-lag
// bucket holding quantile q of what was written between m0 and m1; +Inf
// if it is past the last bucket, 0 if nothing was written.
func lagQuantile(m0, m1 map[string]float64, q float64) float64 {
	const lag = `tickstream_delivery_lag_seconds_bucket{le="`
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m1 {
		if le, ok := strings.CutPrefix(k, lag); ok {
			f, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
			if err == nil {
				bs = append(bs, bucket{f, v - m0[k]})
			}
		}
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0
	}
	total := bs[len(bs)-1].n // le="+Inf" is cumulative: everything
	for _, b := range bs {
		if b.n >= q*total {
			return b.le
		}
	}
	return math.Inf(1)
}

// subscribersOf reads a node's subscriber gauge from /metrics.
func subscribersOf(addr string) int64 {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var r struct {
		Subscribers int64 `json:"subscribers"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return r.Subscribers
}

// Print writes the result as a table.
func (r *ScaleResult) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\nscale run: %d %s subscribers × %d symbols at %s, %d nodes, %d load-generator processes, %d symbols at %.0f ticks/s, held %.0fs\n\n",
		c.Subscribers, c.Transport, c.PerSub, c.Interval, c.Nodes, c.Workers, c.Symbols, c.Rate, r.Held.Seconds())
	fmt.Fprintf(w, "  connected            %d of %d\n", r.Connected, c.Subscribers)
	fmt.Fprintf(w, "  receiving (minimum)  %d\n", r.MinReceiving)
	fmt.Fprintf(w, "  updates delivered    %.0f /s\n", r.UpdatesPerSec)
	if r.WritesPerSec > 0 && c.Transport != "shortpoll" {
		fmt.Fprintf(w, "  node writes          %.0f /s (%.1f updates each), %.0f slow-consumer episodes\n", r.WritesPerSec, r.UpdatesPerSec/r.WritesPerSec, r.SlowConsumers)
		fmt.Fprintf(w, "  node write lag       p50 ≤ %g s, p99 ≤ %g s (feed timestamp → write, newest tick of each update)\n", r.NodeLagP50, r.NodeLagP99)
	}
	fmt.Fprintf(w, "  feed at the nodes    %.0f ticks/s (asked %.0f), read at most %.2f s after publication\n", r.TicksPerSec, c.Rate, r.FeedMaxLag)
	if r.RequestsPerS > 0 {
		fmt.Fprintf(w, "  requests             %.0f /s\n", r.RequestsPerS)
	}
	fmt.Fprintf(w, "  wire bytes           %.1f MB/s\n", r.BytesPerSec/1e6)
	fmt.Fprintf(w, "  delay p50/p99/p99.9  %.0f / %.0f / %.0f ms  (%d samples, 1 subscriber in %d)\n",
		ms(r.P50), ms(r.P99), ms(r.P999), r.DelaySamples, c.Sample)
	fmt.Fprintf(w, "  errors, reconnects   %d, %d\n", r.Errors, r.Reconnects)
	for _, msg := range slices.Sorted(maps.Keys(r.ErrorReasons)) {
		fmt.Fprintf(w, "    %6d × %s\n", r.ErrorReasons[msg], msg)
	}
	fmt.Fprintf(w, "  kernel TCP           %d segments retransmitted, %d receive-queue drops, %d memory-pressure episodes; buffers peaked at %d MB (pressure at %d MB)\n",
		r.TCP.RetransSegs, r.TCP.RcvQDrop, r.TCP.MemoryPressures, r.TCPMemPeakKB/1024, r.TCPMemPressKB/1024)
	fmt.Fprintf(w, "  load generator CPU   %.0f%% of a core; simulator %.0f%%; redis %.0f%%\n", r.LoadgenCPU, r.SimCPU, r.RedisCPU)
	if c.AddNodeAfter > 0 {
		within := c.BalanceWithin
		if within <= 0 {
			within = 0.15
		}
		if r.BalancedAfter >= 0 {
			fmt.Fprintf(w, "  node added           at %.0f s into the hold; every node within %.0f%% of the mean %.1f s later %v; at the end %v; %.0f subscribers sent away\n",
				r.AddedAt.Seconds(), 100*within, r.BalancedAfter.Seconds(), r.BalancedCounts, r.FinalCounts, r.RebalanceMoves)
		} else {
			fmt.Fprintf(w, "  node added           at %.0f s into the hold; NOT within %.0f%% of the mean by the end of the hold: %v; %.0f subscribers sent away\n",
				r.AddedAt.Seconds(), 100*within, r.FinalCounts, r.RebalanceMoves)
		}
	}
	fmt.Fprintf(w, "\n  node                 subscribers   RSS MB   KB/subscriber   CPU %%\n")
	for _, n := range r.Nodes {
		if c.Transport == "shortpoll" { // pollers hold no subscription
			fmt.Fprintf(w, "  %-20s %11s %8.0f %15s %7.0f\n", n.Addr, "-", float64(n.RSSKB)/1024, "-", n.CPUPercent)
			continue
		}
		fmt.Fprintf(w, "  %-20s %11d %8.0f %15.1f %7.0f\n", n.Addr, n.Subscribers, float64(n.RSSKB)/1024, n.KBPerSub, n.CPUPercent)
	}
}
