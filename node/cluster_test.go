package node_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/simulator"
)

// TestRedisCluster runs the simulator and two nodes on a real three-master,
// three-replica Redis Cluster: subscribers get every symbol; then the master
// holding a shard is killed, its replica is promoted, and the readers carry
// on without a wrong price.
func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	opt, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	const shards = 16
	pub, err := redisstream.NewPublisher(ctx, rdb, redisstream.PublisherConfig{Universe: simulator.Universe(40), Shards: shards, Logger: nodetest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	masters, err := redisstream.ShardMasters(ctx, rdb, shards)
	if err != nil {
		t.Fatal(err)
	}
	spread := map[string]bool{}
	for _, m := range masters {
		spread[m] = true
	}
	if len(spread) != 3 {
		t.Errorf("16 shards on %d masters, want all 3: %v", len(spread), masters)
	}
	sim, err := simulator.New(simulator.Config{GeneratorConfig: simulator.GeneratorConfig{Rate: 400, Symbols: 40, Seed: 5}, Logger: nodetest.Quiet()}, pub)
	if err != nil {
		t.Fatal(err)
	}
	// run starts the simulator and returns what stops it.
	run := func() func() {
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = sim.Run(sctx) }()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
		t.Cleanup(stop)
		return stop
	}
	stop := run()

	a := nodetest.StartNode(t, rdb, nil)
	b := nodetest.StartNode(t, rdb, nil)
	subs := map[string]*nodetest.Sub{
		"a/conflated": nodetest.Subscribe(t, a.URL()+"/stream?symbols=*&interval=50ms"),
		"b/conflated": nodetest.Subscribe(t, b.URL()+"/stream?symbols=*&interval=50ms"),
		"a/raw":       nodetest.Subscribe(t, a.URL()+"/stream?symbols=*&mode=raw"),
	}
	converged := func() { t.Helper(); convergeOn(t, rdb, shards, 30, subs) }
	time.Sleep(time.Second)
	stop()
	converged()

	// Kill the master of shard 0; its replica takes over.
	victim := c.Index(masters[0])
	c.Kill(victim)
	stop = run()
	nodetest.CheckFor(t, 30*time.Second, func() error {
		m, err := redisstream.ShardMasters(ctx, rdb, shards)
		if err != nil {
			return err
		}
		if m[0] == masters[0] {
			rdb.ReloadState(ctx)
			live := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", c.Ports[(victim+1)%6])})
			nodes, _ := live.ClusterNodes(ctx).Result()
			_ = live.Close()
			replicaLog := ""
			for i := range c.Ports {
				if i != victim {
					replicaLog += fmt.Sprintf("--- node %d\n%s\n", i, c.Log(i))
				}
			}
			return errors.New("shard 0 still on the killed master " + masters[0] + ":\n" + nodes + replicaLog)
		}
		return nil
	})
	c.WaitHealthy(30 * time.Second)
	time.Sleep(2 * time.Second)
	stop()
	converged()
	// Raw mode: every tick, or an explicit resync where ticks were lost
	// (written to the killed master, never replicated).
	raw := subs["a/raw"]
	raw.Close()
	if gaps := raw.Gaps(); gaps > 0 && raw.Count("resync") == 0 {
		t.Errorf("raw subscriber saw %d seq gaps and no resync", gaps)
	}
}
