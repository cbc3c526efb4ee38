package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testRegistry(t *testing.T, rdb redis.UniversalClient, ttl time.Duration) {
	ctx := context.Background()
	reg := NewRegistry(rdb, ttl)
	for _, n := range []string{"a", "b:8080"} {
		if err := reg.Announce(ctx, Load{Name: n, URL: "http://" + n, Subscribers: len(n)}); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := reg.List(ctx)
	if err != nil || len(ls) != 2 || ls[0].Name != "a" || ls[1].Name != "b:8080" || ls[1].Subscribers != 6 {
		t.Fatalf("list = %+v, %v; want a and b:8080", ls, err)
	}
	if err := reg.Leave(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if ls, _ := reg.List(ctx); len(ls) != 1 || ls[0].Name != "b:8080" {
		t.Fatalf("after a left: %+v", ls)
	}
	// A node that stops announcing disappears once its entry expires, and
	// its name leaves the set.
	wait.For(t, 10*time.Second, func() error {
		ls, err := reg.List(ctx)
		if err != nil || len(ls) != 0 {
			return fmt.Errorf("still listed: %+v, %v", ls, err)
		}
		return nil
	})
	if n, err := rdb.SCard(ctx, setKey).Result(); err != nil || n != 0 {
		t.Errorf("set holds %d names (%v) after every entry expired", n, err)
	}
	if err := reg.Announce(ctx, Load{Name: "bad{name}"}); err == nil {
		t.Error("a name with a hash tag was accepted")
	}
}

// TestRegistry: announce, list, leave, expire, on one Redis.
func TestRegistry(t *testing.T) {
	testRegistry(t, redistest.Start(t).Client(), 300*time.Millisecond)
}

// TestRegistryOnCluster: the same on a Redis Cluster (every key in one
// slot, so MGET and MULTI work).
func TestRegistryOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t)
	opt, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(opt)
	defer rdb.Close()
	testRegistry(t, rdb, 300*time.Millisecond)
}

// fakeNode is a node's subscriber count; SendAway moves subscribers into
// a shared pool of reconnecting clients, which a balancer (least
// connections) hands to the lightest node after a delay.
type fakeNode struct {
	c    *fakeCluster
	name string
	mu   sync.Mutex
	subs int
	sent int
	// maxStep is the most SendAway was asked for in one call.
	maxStep int
}

func (n *fakeNode) counts() Counts {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Counts{Subscribers: n.subs, SSE: n.subs}
}

func (n *fakeNode) Sweep() int { return n.counts().Subscribers }

func (n *fakeNode) SendAway(k int, _ time.Duration) int {
	n.mu.Lock()
	k = min(k, n.subs)
	n.subs -= k
	n.sent += k
	n.maxStep = max(n.maxStep, k)
	n.mu.Unlock()
	n.c.reconnect(n, k)
	return k
}

type fakeCluster struct {
	back  bool // the clients sent away come back to their node
	mu    sync.Mutex
	nodes []*fakeNode
	delay time.Duration
	wg    sync.WaitGroup
}

// reconnect places k clients, after the delay, one by one on the node
// holding the fewest (nginx's least_conn).
func (c *fakeCluster) reconnect(from *fakeNode, k int) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		time.Sleep(c.delay)
		for range k {
			c.mu.Lock()
			var best *fakeNode
			least := 0
			if c.back {
				best = from
			}
			for _, n := range c.nodes {
				if c.back {
					break
				}
				n.mu.Lock()
				if best == nil || n.subs < least {
					best, least = n, n.subs
				}
				n.mu.Unlock()
			}
			best.mu.Lock()
			best.subs++
			best.mu.Unlock()
			c.mu.Unlock()
		}
	}()
}

func (c *fakeCluster) add(t *testing.T, rdb redis.UniversalClient, name string, subs int, cfg Config) *fakeNode {
	n, _ := c.addB(t, rdb, name, subs, cfg)
	return n
}

func (c *fakeCluster) addB(t *testing.T, rdb redis.UniversalClient, name string, subs int, cfg Config) (*fakeNode, *Balancer) {
	n := &fakeNode{c: c, name: name, subs: subs}
	b, err := NewBalancer(NewRegistry(rdb, cfg.TTL), name, "http://"+name, n.counts, n, cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; c.wg.Wait() })
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, b
}

// TestBalancerNewNode: two nodes hold 3,000 subscribers, a third joins;
// the two shed down to the mean, never below it, a few at a time, and all
// end within 15 % of the mean.
func TestBalancerNewNode(t *testing.T) {
	rdb := redistest.Start(t).Client()
	cfg := Config{Interval: 200 * time.Millisecond, Rate: 200, Step: 50 * time.Millisecond, Tau: time.Second}
	c := &fakeCluster{delay: 300 * time.Millisecond}
	a := c.add(t, rdb, "a", 1500, cfg)
	b := c.add(t, rdb, "b", 1500, cfg)
	var low int
	low = 1500
	watch := func() error {
		a.mu.Lock()
		b.mu.Lock()
		low = min(low, a.subs, b.subs)
		b.mu.Unlock()
		a.mu.Unlock()
		return nil
	}
	_ = watch()
	nc := c.add(t, rdb, "c", 0, cfg)
	t0 := time.Now()
	wait.For(t, 30*time.Second, func() error {
		_ = watch()
		var s []int
		for _, n := range []*fakeNode{a, b, nc} {
			s = append(s, n.counts().Subscribers)
		}
		for _, v := range s {
			if v < 850 || v > 1150 {
				return fmt.Errorf("counts %v: not within 15%% of 1000", s)
			}
		}
		return nil
	})
	took := time.Since(t0)
	// Settle: shedding stops (nothing sent away for a while).
	sent := func() int { a.mu.Lock(); b.mu.Lock(); defer a.mu.Unlock(); defer b.mu.Unlock(); return a.sent + b.sent }
	prev := sent()
	deadline := time.Now().Add(20 * time.Second)
	for quiet := time.Now(); time.Since(quiet) < 2*time.Second; {
		time.Sleep(100 * time.Millisecond)
		_ = watch()
		if s := sent(); s != prev {
			prev, quiet = s, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("still shedding after 20 s: sent %d", prev)
		}
	}
	for _, n := range []*fakeNode{a, b, nc} {
		n.mu.Lock()
		defer n.mu.Unlock()
	}
	t.Logf("balanced in %v: a %d, b %d, c %d; sent away a %d, b %d; lowest of a and b %d; largest step %d/%d",
		took.Round(time.Millisecond), a.subs, b.subs, nc.subs, a.sent, b.sent, low, a.maxStep, b.maxStep)
	if low < 1000-5 {
		t.Errorf("a shedding node went to %d, below the mean 1000", low)
	}
	if a.sent+b.sent > 1000+60 {
		t.Errorf("sent away %d in all, the excess was 1000", a.sent+b.sent)
	}
	// Never more than MaxFraction (5 %) of 1500 per second: one step of
	// 50 ms holds at most that second's share.
	if m := max(a.maxStep, b.maxStep); m > 75 {
		t.Errorf("a step sent %d away at once", m)
	}
	if nc.sent != 0 {
		t.Errorf("the new node sent %d away", nc.sent)
	}
}

// TestBalancerDisabled: with shedding off the nodes announce but shed
// nothing; with it on, an excess below MinExcess is not shed either.
func TestBalancerDisabled(t *testing.T) {
	off := Config{Interval: 100 * time.Millisecond, Step: 20 * time.Millisecond, Disabled: true}
	on := off
	on.Disabled = false
	for _, tc := range []struct {
		name       string
		cfg        Config
		heavy, low int
	}{{"off", off, 1000, 0}, {"small excess", on, 30, 10}} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			c := &fakeCluster{}
			a := c.add(t, rdb, "a", tc.heavy, tc.cfg)
			b := c.add(t, rdb, "b", tc.low, tc.cfg)
			// Wait on progress: both listed, then ten more announcements
			// of each (each one a chance to shed).
			reg := NewRegistry(rdb, time.Second)
			var first int64
			wait.For(t, 20*time.Second, func() error {
				ls, err := reg.List(context.Background())
				if err != nil || len(ls) != 2 {
					return fmt.Errorf("listed %+v, %v", ls, err)
				}
				if first == 0 {
					first = max(ls[0].At, ls[1].At)
				}
				if oldest := min(ls[0].At, ls[1].At); oldest < first+10*off.Interval.Milliseconds() {
					return fmt.Errorf("waiting for ten announcements of each")
				}
				if ls[0].Shedding || ls[1].Shedding {
					t.Errorf("a node announced it sheds: %+v", ls)
				}
				return nil
			})
			a.mu.Lock()
			b.mu.Lock()
			defer a.mu.Unlock()
			defer b.mu.Unlock()
			if a.sent != 0 || b.sent != 0 {
				t.Errorf("sent away: a %d, b %d; want none", a.sent, b.sent)
			}
		})
	}
}

// TestBalancerFutile: the clients a node sends away come back to it (a
// balancer that is not least_conn): it sends away about its excess, sees
// its count did not fall, and pauses instead of churning.
func TestBalancerFutile(t *testing.T) {
	rdb := redistest.Start(t).Client()
	cfg := Config{Interval: 100 * time.Millisecond, Rate: 500, Step: 20 * time.Millisecond, Tau: 200 * time.Millisecond, Cooldown: time.Hour,
		TTL: 5 * time.Second} // a listing late under load must not end the episode early
	c := &fakeCluster{back: true, delay: 50 * time.Millisecond}
	a, ba := c.addB(t, rdb, "a", 1000, cfg)
	c.add(t, rdb, "b", 0, cfg)
	// Wait on progress: a starts shedding, then stops.
	started := false
	wait.For(t, 30*time.Second, func() error {
		v := ba.View()
		if v.Shedding {
			started = true
		}
		if !started || v.Shedding {
			return fmt.Errorf("shedding %v, started %v, sent %d", v.Shedding, started, v.SentAway)
		}
		return nil
	})
	a.mu.Lock()
	sent := a.sent
	a.mu.Unlock()
	t.Logf("a sent %d away (excess 500) and paused", sent)
	if sent < 400 || sent > 600 {
		t.Errorf("a sent %d away, want about its excess, 500", sent)
	}
}
