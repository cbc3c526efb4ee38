package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/cluster"
	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// Tests of what may steer the rebalancer: nodes that do not balance, other
// pools, forged registry records, floods of names, connect/disconnect
// bursts. Nodes announce every 100 ms and decide every 20 ms, so a test
// observes a hundred balancing decisions of every node in a few seconds;
// each one would be a chance to shed.

const steerDecisions = 100

// steerNode configures a node of these tests: announcements every 100 ms
// (a record lives 3 s, so a node starved of CPU for a moment stays
// listed), decisions every 20 ms, any excess of 2 subscribers above 10 %
// of the mean worth shedding; mut adjusts the rest.
func steerNode(name string, mut func(*cluster.Config)) func(*node.Config) {
	return func(c *node.Config) {
		c.Name = name
		c.Cluster = cluster.Config{Interval: 100 * time.Millisecond, TTL: 3 * time.Second, Step: 20 * time.Millisecond, MinExcess: 2}
		if mut != nil {
			mut(&c.Cluster)
		}
	}
}

// subscribeN opens k SSE streams of AAPL (every tick) on n and waits until
// n holds want subscribers.
func subscribeN(t *testing.T, n *node.Node, k, want int) []*nodetest.Sub {
	t.Helper()
	subs := make([]*nodetest.Sub, k)
	for i := range subs {
		subs[i] = nodetest.Subscribe(t, n.URL()+"/stream?symbols=AAPL&interval=0")
	}
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if got := n.Hub.Subscribers(); got != want {
			return fmt.Errorf("%s holds %d subscribers, want %d", n.Name, got, want)
		}
		return nil
	})
	return subs
}

// waitDecisions waits until every node's balancer has taken k more
// decisions than when it was called.
func waitDecisions(t *testing.T, k uint64, nodes ...*node.Node) {
	t.Helper()
	start := make([]uint64, len(nodes))
	for i, n := range nodes {
		start[i] = n.Balancer.View().Decisions
	}
	nodetest.CheckFor(t, 120*time.Second, func() error {
		for i, n := range nodes {
			if d := n.Balancer.View().Decisions - start[i]; d < k {
				return fmt.Errorf("%s took %d of %d decisions", n.Name, d, k)
			}
		}
		return nil
	})
}

// noGoaway fails the test for every node that sent anyone away and every
// subscriber that got a goaway.
func noGoaway(t *testing.T, nodes []*node.Node, subs []*nodetest.Sub) {
	t.Helper()
	for _, n := range nodes {
		if v := n.Balancer.View(); v.SentAway != 0 {
			t.Errorf("%s sent %d subscribers away (mean %.1f over %d nodes)", n.Name, v.SentAway, v.MeanSubscribers, v.Count)
		}
	}
	got := 0
	for _, s := range subs {
		got += s.Count("goaway")
	}
	if got != 0 {
		t.Errorf("subscribers got %d goaways", got)
	}
}

// keepsReceiving stops the publisher and waits until the subscriber holds
// the last tick, having seen no seq go down.
func keepsReceiving(t *testing.T, stop func() map[string]uint64, s *nodetest.Sub) {
	t.Helper()
	want := stop()["AAPL"]
	nodetest.CheckFor(t, 20*time.Second, func() error {
		got, err := s.Snapshot()
		if err != nil {
			t.Fatalf("normal subscriber: %v", err)
		}
		if got["AAPL"] != want {
			return fmt.Errorf("normal subscriber at AAPL seq %d, want %d", got["AAPL"], want)
		}
		return nil
	})
}

// apiNodes reads GET /api/nodes of n.
func apiNodes(t *testing.T, n *node.Node) (cluster.View, int) {
	t.Helper()
	resp, err := http.Get(n.URL() + "/api/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/nodes: %d, %v", resp.StatusCode, err)
	}
	var v cluster.View
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("/api/nodes: %v", err)
	}
	return v, len(body)
}

// TestMeanCountsOnlyBalancingNodesOfItsPool guards the mean: a node counts
// itself and the rebalancing nodes of its own pool, nothing else. Three
// balanced nodes of 10 subscribers each share a Redis with three
// --rebalance=false nodes and a node of another pool, all empty: over a
// hundred decisions of every node nobody is sent away; the non-balancing
// nodes are listed by /api/nodes as not rebalancing, the other pool's
// node is not listed; a normal subscriber keeps receiving.
func TestMeanCountsOnlyBalancingNodesOfItsPool(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	var bal, all []*node.Node
	for _, name := range []string{"a", "b", "c"} {
		bal = append(bal, f.StartNode(steerNode(name, nil)))
	}
	all = append(all, bal...)
	for _, name := range []string{"direct1", "direct2", "direct3"} {
		all = append(all, f.StartNode(steerNode(name, func(c *cluster.Config) { c.Disabled = true })))
	}
	all = append(all, f.StartNode(steerNode("elsewhere", func(c *cluster.Config) { c.Pool = "other" })))
	var subs []*nodetest.Sub
	for _, n := range bal {
		subs = append(subs, subscribeN(t, n, 10, 10)...)
	}
	nodetest.CheckFor(t, 30*time.Second, func() error {
		for _, n := range all[:6] {
			if v := n.Balancer.View(); v.Count != 3 || len(v.Nodes) != 6 || v.OtherPools != 1 || v.MeanSubscribers != 10 {
				return fmt.Errorf("%s sees %d nodes in its mean of %.1f, lists %d, %d of other pools", n.Name, v.Count, v.MeanSubscribers, len(v.Nodes), v.OtherPools)
			}
		}
		return nil
	})
	stop := publisher(t, f, 20*time.Millisecond, "AAPL")
	waitDecisions(t, steerDecisions, all...)
	noGoaway(t, all, subs)
	v, _ := apiNodes(t, bal[0])
	for _, l := range v.Nodes {
		if want := !strings.HasPrefix(l.Name, "direct"); l.Rebalance != want || l.Pool != cluster.DefaultPool {
			t.Errorf("/api/nodes lists %s with rebalance %v in pool %q", l.Name, l.Rebalance, l.Pool)
		}
	}
	keepsReceiving(t, stop, subs[0])
}

// forgeRecord stores a registry record as a Redis writer could: the name in the
// set, the value under the node's key, no expiry.
func forgeRecord(t *testing.T, f *nodetest.Feed, name, value string) {
	t.Helper()
	ctx := context.Background()
	if err := f.RDB.SAdd(ctx, "tickstream:{nodes}", name).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.RDB.Set(ctx, "tickstream:{nodes}:"+name, value, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestForgedRecordsIgnored guards the registry's trust boundary: a record
// out of bounds (negative or implausible counts, longer
// than 4 KiB, under another name's key, a bad name or pool) or naming a
// URL that is not a plain http(s) URL on an allowed host, or a key of
// another type, is ignored: it is
// in no mean,
// /api/nodes does not list it (so no client follows it), and over a
// hundred decisions no node sends anyone away. A normal subscriber keeps
// receiving.
func TestForgedRecordsIgnored(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	allow := func(c *cluster.Config) { c.URLAllow = []string{"127.0.0.1"} }
	nodes := []*node.Node{f.StartNode(steerNode("a", allow)), f.StartNode(steerNode("b", allow))}
	var subs []*nodetest.Sub
	for _, n := range nodes {
		subs = append(subs, subscribeN(t, n, 10, 10)...)
	}
	rec := func(name, url string, subs, sse int, extra string) string {
		return fmt.Sprintf(`{"name":%q,"url":%q,"pool":"default","subscribers":%d,"sse":%d,"rebalance":true,"at":%d%s}`,
			name, url, subs, sse, time.Now().UnixMilli(), extra)
	}
	forged := map[string]string{
		"negative":     rec("negative", "http://127.0.0.1:1", -1000000, 0, ""),
		"implausible":  rec("implausible", "http://127.0.0.1:1", 1e9, 0, ""),
		"negative-sse": rec("negative-sse", "http://127.0.0.1:1", 0, -50, ""),
		"in-flight":    rec("in-flight", "http://127.0.0.1:1", 0, 0, `,"in_flight":-500`),
		"long":         rec("long", "http://127.0.0.1:1", 0, 0, `,"pad":"`+strings.Repeat("x", 5000)+`"`),
		"other-key":    rec("someone-else", "http://127.0.0.1:1", 0, 0, ""),
		"attacker":     rec("attacker", "http://attacker.example:8080", 0, 0, ""),
		"userinfo":     rec("userinfo", "http://user:pw@127.0.0.1:8080", 0, 0, ""),
		"query":        rec("query", "http://127.0.0.1:8080/?cursor=x", 0, 0, ""),
		"fragment":     rec("fragment", "http://127.0.0.1:8080/#x", 0, 0, ""),
		"scheme":       rec("scheme", "javascript:alert(1)", 0, 0, ""),
		"nohost":       rec("nohost", "http:///stream", 0, 0, ""),
		"badpool":      rec("badpool", "http://127.0.0.1:1", 0, 0, `,"pool":"a b"`),
		"not-json":     `{"name":"not-json",`,
		"bad name{x}":  rec("bad name{x}", "http://127.0.0.1:1", 0, 0, ""),
	}
	for name, v := range forged {
		forgeRecord(t, f, name, v)
	}
	// A key of another type under a name in the set.
	forged["hash"] = ""
	if err := f.RDB.SAdd(context.Background(), "tickstream:{nodes}", "hash").Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.RDB.HSet(context.Background(), "tickstream:{nodes}:hash", "subscribers", "-1000000").Err(); err != nil {
		t.Fatal(err)
	}
	// A name no node could hold leaves the set at the first listing; the
	// other records stay, ignored at every listing.
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if ok, err := f.RDB.SIsMember(context.Background(), "tickstream:{nodes}", "bad name{x}").Result(); err != nil || ok {
			return fmt.Errorf("a name with a space and braces is still in the set (%v)", err)
		}
		for _, n := range nodes {
			if v := n.Balancer.View(); v.Invalid != len(forged)-1 || v.Count != 2 {
				return fmt.Errorf("%s: %d records ignored of %d forged, %d nodes in the mean", n.Name, v.Invalid, len(forged)-1, v.Count)
			}
		}
		return nil
	})
	stop := publisher(t, f, 20*time.Millisecond, "AAPL")
	waitDecisions(t, steerDecisions, nodes...)
	noGoaway(t, nodes, subs)
	for _, n := range nodes {
		v, _ := apiNodes(t, n)
		if len(v.Nodes) != 2 || v.Nodes[0].Name != "a" || v.Nodes[1].Name != "b" || v.MeanSubscribers != 10 {
			t.Errorf("%s: /api/nodes lists %+v, mean %.1f; want a and b, mean 10", n.Name, v.Nodes, v.MeanSubscribers)
		}
		if got, err := nodetest.Metric(n.URL(), "tickstream_cluster_records_ignored_total", `reason="invalid"`); err != nil || got < float64(len(forged)) {
			t.Errorf("%s: tickstream_cluster_records_ignored_total{reason=invalid} = %v (%v)", n.Name, got, err)
		}
	}
	keepsReceiving(t, stop, subs[0])
}

// TestRegistryFloodBounded guards the bound on the registry's reads: with
// 50,000 forged names (valid records of empty nodes in the same pool,
// each a pull on the mean) a listing reads at most 1,000 records, the node
// knows its listing is incomplete and does not shed, and /api/nodes lists
// at most 128 nodes. A normal subscriber keeps receiving.
func TestRegistryFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50,000 records")
	}
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	nodes := []*node.Node{f.StartNode(steerNode("a", nil)), f.StartNode(steerNode("b", nil))}
	var subs []*nodetest.Sub
	for _, n := range nodes {
		subs = append(subs, subscribeN(t, n, 10, 10)...)
	}
	const forged = 50_000
	ctx := context.Background()
	for lo := 0; lo < forged; lo += 5000 {
		p := f.RDB.Pipeline()
		for i := lo; i < lo+5000; i++ {
			name := fmt.Sprintf("forged-%05d", i)
			p.SAdd(ctx, "tickstream:{nodes}", name)
			p.Set(ctx, "tickstream:{nodes}:"+name, fmt.Sprintf(`{"name":%q,"url":"http://127.0.0.1:%d","subscribers":0,"rebalance":true}`, name, 1+i%60000), 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	nodetest.CheckFor(t, 30*time.Second, func() error {
		for _, n := range nodes {
			if v := n.Balancer.View(); v.Unread < forged-cluster.DefaultMaxNodes {
				return fmt.Errorf("%s: %d names unread", n.Name, v.Unread)
			}
		}
		return nil
	})
	stop := publisher(t, f, 20*time.Millisecond, "AAPL")
	waitDecisions(t, steerDecisions, nodes...)
	noGoaway(t, nodes, subs)
	t0 := time.Now()
	ls, err := cluster.NewRegistry(f.RDB, 0).Scan(ctx, cluster.DefaultMaxNodes, nil)
	took := time.Since(t0)
	if err != nil || len(ls.Nodes) > cluster.DefaultMaxNodes || ls.Complete() {
		t.Errorf("a listing read %d records (complete %v, %v); want at most %d, incomplete", len(ls.Nodes), ls.Complete(), err, cluster.DefaultMaxNodes)
	}
	v, size := apiNodes(t, nodes[0])
	t.Logf("one listing of %d names: %d records read in %v; /api/nodes: %d bytes, %d nodes listed, %d omitted, %d unread",
		ls.Names, len(ls.Nodes)+ls.Invalid, took.Round(time.Millisecond), size, len(v.Nodes), v.Omitted, v.Unread)
	if len(v.Nodes) > cluster.MaxListed || size > cluster.MaxListed*(cluster.MaxRecordBytes+64)+4096 {
		t.Errorf("/api/nodes: %d bytes, %d nodes", size, len(v.Nodes))
	}
	keepsReceiving(t, stop, subs[0])
}

// burstSub is an SSE stream of a connect/disconnect burst; it notes when
// it connected and when a goaway arrived.
type burstSub struct {
	start  time.Time
	goaway atomic.Int64 // UnixNano; 0: none
	cancel context.CancelFunc
	done   chan struct{}
}

func openBurst(t *testing.T, url string) *burstSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &burstSub{start: time.Now(), cancel: cancel, done: make(chan struct{})}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("burst stream: %v", err)
	}
	go func() {
		defer close(b.done)
		defer resp.Body.Close()
		d := client.NewDecoder(resp.Body)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			if ev.Type == "goaway" {
				b.goaway.CompareAndSwap(0, time.Now().UnixNano())
			}
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *burstSub) close() { b.cancel(); <-b.done }

// burstOf opens k streams to n at once.
func burstOf(t *testing.T, n *node.Node, k int, query string) []*burstSub {
	t.Helper()
	out := make([]*burstSub, k)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					mu.Lock()
					failed = fmt.Errorf("%v", r)
					mu.Unlock()
				}
			}()
			out[i] = openBurst(t, n.URL()+"/stream?"+query)
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	return out
}

// TestShedCountsOnlyLiveStreams guards the count a shedding decision rests
// on: streams whose client has gone are not load. Two nodes hold 10
// subscribers each; 40 streams open on one of them and close at once, on
// a symbol that never ticks and with a heartbeat of minutes, so only the
// balancer's sweep can notice them: the node releases them without a
// goaway, and over a hundred decisions of each node nobody is sent away.
func TestShedCountsOnlyLiveStreams(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	slowHB := func(c *node.Config) { c.Hub.Heartbeat = 10 * time.Minute }
	start := func(name string) *node.Node {
		return f.StartNode(func(c *node.Config) { steerNode(name, nil)(c); slowHB(c) })
	}
	a, b := start("a"), start("b")
	nodes := []*node.Node{a, b}
	subs := append(subscribeN(t, a, 10, 10), subscribeN(t, b, 10, 10)...)
	stop := publisher(t, f, 20*time.Millisecond, "AAPL")
	burst := burstOf(t, a, 40, "symbols=MSFT")
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if got := a.Hub.Subscribers(); got != 50 {
			return fmt.Errorf("a holds %d subscribers, want 50", got)
		}
		return nil
	})
	for _, s := range burst {
		s.close()
	}
	waitDecisions(t, steerDecisions, nodes...)
	if got := a.Hub.Subscribers(); got != 10 {
		t.Errorf("a holds %d subscribers after the burst closed, want 10", got)
	}
	noGoaway(t, nodes, subs)
	keepsReceiving(t, stop, subs[0])
}

// TestShedNewestFirstNeverYoungerThanSettle guards who is sent away: a
// node above the mean sends away the most recently arrived subscribers
// first, and none connected for less than the settle time. Two nodes hold
// 10 subscribers each; a burst of 40 streams stays open on one of them:
// it sends away 20 or more (down to the mean; those sent away do not come
// back here, so the mean falls), all from the burst, each at least the
// settle time after it connected; the 10 that were there before get no
// goaway and keep receiving.
func TestShedNewestFirstNeverYoungerThanSettle(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	const settle = time.Second
	fast := func(c *cluster.Config) { c.Settle, c.MaxFraction, c.Tau = settle, 1, 200*time.Millisecond }
	a, b := f.StartNode(steerNode("a", fast)), f.StartNode(steerNode("b", fast))
	old := append(subscribeN(t, a, 10, 10), subscribeN(t, b, 10, 10)...)
	// A calm cluster first: both nodes see the mean of 10 and neither sheds.
	nodetest.CheckFor(t, 30*time.Second, func() error {
		for _, n := range []*node.Node{a, b} {
			if v := n.Balancer.View(); v.Count != 2 || v.MeanSubscribers != 10 || v.Shedding {
				return fmt.Errorf("%s sees %d nodes, mean %.1f, shedding %v", n.Name, v.Count, v.MeanSubscribers, v.Shedding)
			}
		}
		return nil
	})
	stop := publisher(t, f, 20*time.Millisecond, "AAPL")
	burst := burstOf(t, a, 40, "symbols=AAPL&interval=0")
	nodetest.CheckFor(t, 60*time.Second, func() error {
		if v := a.Balancer.View(); v.SentAway < 18 || v.Shedding {
			return fmt.Errorf("a sent %d away, shedding %v", v.SentAway, v.Shedding)
		}
		return nil
	})
	waitDecisions(t, steerDecisions, a, b)
	// The goaways sent are the ones the burst streams received.
	sent := 0
	nodetest.CheckFor(t, 20*time.Second, func() error {
		sent = 0
		for _, s := range burst {
			if s.goaway.Load() != 0 {
				sent++
			}
		}
		if v := a.Balancer.View(); sent != int(v.SentAway) || v.Shedding {
			return fmt.Errorf("burst streams got %d goaways, a sent %d away (shedding %v)", sent, v.SentAway, v.Shedding)
		}
		return nil
	})
	for i, s := range burst {
		if at := s.goaway.Load(); at != 0 && time.Duration(at-s.start.UnixNano()) < settle {
			t.Errorf("burst stream %d sent away %v after it connected, before the settle time %v", i, time.Duration(at-s.start.UnixNano()), settle)
		}
	}
	t.Logf("a sent %d of the 40 newest away (the ones sent away do not come back: the mean falls to 20); b sent %d", sent, b.Balancer.View().SentAway)
	noGoaway(t, []*node.Node{b}, old)
	keepsReceiving(t, stop, old[0])
}
