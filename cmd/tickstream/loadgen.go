package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
	"github.com/tickstream/tickstream/fanout/transport"
)

// runLoadgen runs the scale scenario: it starts redis-server (unless
// --redis), the simulator, --nodes serve processes and --workers load
// generator processes (this binary with --worker), holds the subscribers
// for --duration and prints what they got and what the nodes spent.
func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("loadgen", "loadgen [--subscribers 100000] [--nodes 6] [--workers 6] [flags]", stderr)
	subs := f.integer("subscribers", 100_000, "concurrent subscribers")
	nodes := f.integer("nodes", 6, "serve processes (each holds at most ~19,900 sockets)")
	workers := f.integer("workers", 6, "load-generator processes")
	universe := f.integer("universe", 500, "universe size (number of symbols) the simulator publishes")
	rate := f.float("rate", 20_000, "ticks per second published")
	perSub := f.integer("per-sub", 10, "symbols per subscriber")
	interval := f.str("interval", "1s", "conflation interval asked by each subscriber (250ms, 1s, or milliseconds)")
	tport := f.choice("transport", "sse", []string{"sse", "ws", "shortpoll"}, "how subscribers subscribe")
	every := f.duration("every", time.Second, "short polling period (with --transport shortpoll)")
	duration := f.duration("duration", 60*time.Second, "how long to hold the subscribers once connected")
	connectRate := f.integer("connect-rate", 10_000, "new connections per second, all workers together")
	sample := f.integer("sample", 100, "measure the change-to-screen delay on one subscriber in this many")
	redisURL := f.str("redis", "", "use this Redis (default: start a private redis-server)")
	addNode := f.duration("add-node-after", 0, "start one more node this long into the hold and report how long until every node holds within 15% of the mean (rebalancing; reconnects go to the least-loaded node, as with a least_conn proxy)")
	follow := f.boolean("follow-cluster", false, "internal: place reconnects on the least-loaded node of /api/nodes, for --worker")
	worker := f.boolean("worker", false, "internal: run as one load-generator process")
	nodeAddrs := f.str("node-addrs", "", "internal: node addresses, for --worker")
	offset := f.integer("offset", 0, "internal: index of this worker's first subscriber")
	cpuprofile := f.str("cpuprofile", "", "internal: write a CPU profile of this worker to this file")
	floor := f.boolean("floor", true, "after the run, measure the floor (the same connections and write size, no product: go run ./benchmarks/floor) and report the nodes' CPU per write as a multiple of it")
	floorRole := f.str("floor-role", "", "internal: run as a floor server or reader")
	floorAddr := f.str("floor-addr", "", "internal: the floor server a floor reader reads")
	floorConns := f.integer("floor-conns", 0, "internal: connections of one floor process")
	floorSize := f.integer("floor-size", 0, "internal: bytes per floor write")
	if err := f.parse(args); err != nil {
		return err
	}
	if _, err := transport.ParseInterval(*interval); err != nil {
		return f.usageErr("--interval: " + err.Error())
	}
	switch {
	case *subs < 1 || *nodes < 1 || *workers < 1 || *universe < 1 || *perSub < 1:
		return usageError{errors.New("loadgen: --subscribers, --nodes, --workers, --universe and --per-sub must be positive")}
	case *perSub > *universe:
		return usageError{fmt.Errorf("loadgen: --per-sub %d exceeds --universe %d", *perSub, *universe)}
	case *subs/(*nodes) > 19_500 || *subs/(*workers) > 19_500:
		return usageError{fmt.Errorf("loadgen: %d subscribers need at least %d nodes and %d workers (a process holds ~19,900 sockets here)", *subs, (*subs+19_499)/19_500, (*subs+19_499)/19_500)}
	}
	switch *floorRole {
	case "server":
		return loadgen.FloorServe(ctx, *floorConns, *floorSize, stdout)
	case "reader":
		return loadgen.FloorRead(ctx, *floorAddr, *floorConns, "epoll")
	case "":
	default:
		return usageError{fmt.Errorf("loadgen: --floor-role %q: want server or reader", *floorRole)}
	}
	if *worker {
		addrs := splitList(*nodeAddrs)
		if len(addrs) == 0 {
			return usageError{errors.New("loadgen --worker needs --node-addrs")}
		}
		names, err := universeOf(ctx, addrs[0])
		if err != nil {
			return err
		}
		stop, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
		return loadgen.RunWorker(ctx, loadgen.WorkerConfig{
			Nodes: addrs, Subscribers: *subs, Offset: *offset, Symbols: names, PerSub: *perSub,
			Interval: *interval, Transport: *tport, Every: *every, ConnectRate: *connectRate,
			Sample: *sample, Hold: *duration, FollowCluster: *follow,
		}, stdout)
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := loadgen.RunScale(ctx, loadgen.ScaleConfig{
		Bin: bin, RedisURL: *redisURL, Subscribers: *subs, Nodes: *nodes, Workers: *workers, Symbols: *universe,
		Rate: *rate, PerSub: *perSub, Interval: *interval, Transport: *tport, Every: *every, Hold: *duration,
		ConnectRate: *connectRate, Sample: *sample, Log: stderr, AddNodeAfter: *addNode,
	})
	if err != nil {
		return err
	}
	res.Print(stdout)
	if *floor && *tport != "shortpoll" && res.WritesPerSec > 0 {
		fl, err := loadgen.RunFloor(ctx, loadgen.FloorConfig{
			Procs: *nodes, Conns: max(1, int(res.Connected)/(*nodes)), Size: max(1, res.BytesPerWrite()),
			Duration: 10 * time.Second, Reader: "epoll",
			Command: func(role string, conns, size int, addr, _ string) *exec.Cmd {
				return exec.CommandContext(ctx, bin, "loadgen", "--floor-role", role, "--floor-conns", strconv.Itoa(conns),
					"--floor-size", strconv.Itoa(size), "--floor-addr", addr)
			},
		})
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: floor not measured: %v\n", err)
		} else {
			loadgen.PrintVsFloor(stdout, res, fl)
		}
	}
	if *addNode > 0 && res.BalancedAfter < 0 {
		return fmt.Errorf("loadgen: the cluster did not balance within the hold after the node was added")
	}
	if res.Errors > 0 || res.Connected < int64(*subs) {
		return fmt.Errorf("loadgen: %d of %d connected, %d errors", res.Connected, *subs, res.Errors)
	}
	return nil
}

// universeOf fetches the symbol names a node serves.
func universeOf(ctx context.Context, addr string) ([]string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/symbols", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch universe: %w", err)
	}
	defer resp.Body.Close()
	var u struct {
		Symbols []struct {
			Sym string `json:"sym"`
		} `json:"symbols"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return nil, fmt.Errorf("decode universe: %w", err)
	}
	names := make([]string, len(u.Symbols))
	for i, s := range u.Symbols {
		names[i] = s.Sym
	}
	return names, nil
}
