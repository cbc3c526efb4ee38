//go:build linux

package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nginxtest"
	"github.com/tickstream/tickstream/internal/nodetest"
)

// service is what the tests read of a compose service: its image, command,
// environment and volumes.
type service struct {
	image       string
	command     []string
	environment []string
	volumes     []string
}

// readCompose reads deploy/compose.yaml in the form it keeps for these
// tests: services two spaces in, their keys four; command and environment
// one-line lists of double-quoted strings (YAML flow sequences that are
// also JSON); volumes "      - item" lines.
func readCompose(tb testing.TB) map[string]*service {
	tb.Helper()
	f, err := os.Open(filepath.Join(root(tb), "deploy", "compose.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	services := map[string]*service{}
	var cur *service
	section, key := "", ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		switch {
		case indent == 0:
			section, cur = strings.TrimSuffix(trimmed, ":"), nil
		case indent == 2 && section == "services":
			cur = &service{}
			services[strings.TrimSuffix(trimmed, ":")] = cur
		case indent == 4 && cur != nil:
			k, v, _ := strings.Cut(trimmed, ":")
			key, v = k, strings.TrimSpace(v)
			var dst *[]string
			switch k {
			case "image":
				cur.image = v
			case "command":
				dst = &cur.command
			case "environment":
				dst = &cur.environment
			}
			if dst != nil {
				if err := json.Unmarshal([]byte(v), dst); err != nil {
					tb.Fatalf("deploy/compose.yaml:%d: %s: want a one-line list of double-quoted strings: %v", n, k, err)
				}
			}
		case indent == 6 && cur != nil && key == "volumes" && strings.HasPrefix(trimmed, "- "):
			cur.volumes = append(cur.volumes, strings.TrimPrefix(trimmed, "- "))
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"redis", "simulator", "node1", "node2", "nginx"} {
		if services[name] == nil {
			tb.Fatalf("deploy/compose.yaml: no service %s", name)
		}
	}
	return services
}

// flagValue returns the value following flag in args.
func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// TestComposeFileAccepted guards deploy/compose.yaml's shape: podman-compose
// reads it (`config` where the installed podman-compose has it; Debian 12's
// 1.0.3 has not, and its `ps` parses the whole file without creating
// anything), Redis runs with the recommended settings, the two nodes have
// distinct names and nginx gets the sample configuration.
func TestComposeFileAccepted(t *testing.T) {
	pc := need(t, "podman-compose", "podman-compose")
	need(t, "podman", "podman")
	file := filepath.Join(root(t), "deploy", "compose.yaml")
	out, err := run(t, pc, "-f", file, "config")
	if strings.Contains(out, "invalid choice: 'config'") {
		out, err = run(t, pc, "-f", file, "ps")
	}
	if err != nil {
		t.Fatalf("podman-compose does not accept deploy/compose.yaml: %v\n%s", err, out)
	}

	s := readCompose(t)
	r := s["redis"].command
	for flag, want := range map[string]string{"--appendonly": "yes", "--maxmemory-policy": "noeviction"} {
		if got := flagValue(r, flag); got != want {
			t.Errorf("redis %s %q, want %q", flag, got, want)
		}
	}
	if flagValue(r, "--maxmemory") == "" {
		t.Error("redis has no --maxmemory")
	}
	if a, b := flagValue(s["node1"].command, "--node"), flagValue(s["node2"].command, "--node"); a == "" || a == b {
		t.Errorf("node names %q and %q: want two distinct names", a, b)
	}
	if !slices.Contains(s["nginx"].volumes, "./nginx.conf:/etc/nginx/conf.d/default.conf:ro") {
		t.Errorf("nginx volumes %q: want deploy/nginx.conf mounted as the default server", s["nginx"].volumes)
	}
}

// TestComposeStackStreamsThroughProxy runs deploy/compose.yaml's commands,
// flags and environment as processes (Redis, the simulator, two nodes,
// nginx with deploy/nginx.conf), only the loopback ports changed to free
// ones, and streams ticks through the proxy with the Go client: one stream
// lands on each node (least_conn) and both deliver live ticks.
func TestComposeStackStreamsThroughProxy(t *testing.T) {
	redisServer := need(t, "redis-server", "redis-server")
	s := readCompose(t)
	bin := bintest.Tickstream(t)

	// Redis as the file runs it, on a free port and in a private directory.
	port := strings.TrimPrefix(nodetest.FreeAddr(t), "127.0.0.1:")
	dir := t.TempDir()
	args := slices.Clone(s["redis"].command[1:])
	i := slices.Index(args, "--port")
	if i < 0 || s["redis"].command[0] != "redis-server" {
		t.Fatalf("redis command %q: want redis-server … --port 6379", s["redis"].command)
	}
	args[i+1] = port
	args = append(args, "--dir", dir, "--daemonize", "no")
	start(t, nil, redisServer, args...)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port})
	t.Cleanup(func() { _ = rdb.Close() })
	waitFor(t, func() error { return rdb.Ping(context.Background()).Err() })
	for k, want := range map[string]string{"appendonly": "yes", "maxmemory-policy": "noeviction"} {
		if got := rdb.ConfigGet(context.Background(), k).Val()[k]; got != want {
			t.Errorf("redis %s = %q, want %q", k, got, want)
		}
	}

	// The tickstream services, addresses replaced.
	addrs := strings.NewReplacer("127.0.0.1:6379", "127.0.0.1:"+port, "127.0.0.1:8081", "127.0.0.1:0", "127.0.0.1:8082", "127.0.0.1:0")
	tick := func(name string) *proc {
		args := slices.Clone(s[name].command)
		for i := range args {
			args[i] = addrs.Replace(args[i])
		}
		return start(t, s[name].environment, bin, args...)
	}
	tick("simulator")
	var nodes []string
	for _, name := range []string{"node1", "node2"} {
		p := tick(name)
		base := "http://" + p.addr(t)
		waitReady(t, p, base)
		nodes = append(nodes, strings.TrimPrefix(base, "http://"))
	}
	proxy := nginxtest.Run(t, nodes, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type result struct {
		node string
		err  error
	}
	results := make(chan result, 2)
	hello := make(chan struct{}, 2)
	for range 2 {
		go func() {
			node, live := "", 0
			ready := false
			err := client.Stream(ctx, client.Config{URL: proxy.URL, Symbols: []string{"AAPL", "MSFT"}, Interval: 0}, func(m client.Message) error {
				switch m.Kind {
				case client.Hello:
					node = m.Node
					hello <- struct{}{}
				case client.Ready:
					ready = true
				case client.Tick:
					if ready {
						live++
					}
				case client.Reconnecting:
					return m.Err
				}
				if live == 10 {
					return errDone
				}
				return nil
			})
			if errors.Is(err, errDone) {
				err = nil
			}
			results <- result{node, err}
		}()
		// The second stream opens once the first holds its node.
		select {
		case <-hello:
		case <-ctx.Done():
			t.Fatal("no hello through the proxy")
		}
	}
	var got []string
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatalf("stream through the proxy: %v", r.err)
		}
		got = append(got, r.node)
	}
	slices.Sort(got)
	want := []string{flagValue(s["node1"].command, "--node"), flagValue(s["node2"].command, "--node")}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("streams landed on nodes %q, want one on each of %q", got, want)
	}
}

var errDone = errors.New("done")
