package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tickstream/tickstream/internal/tooltest"
)

// Cluster is a private Redis Cluster of three masters and three replicas
// on loopback, created with redis-cli --cluster create.
type Cluster struct {
	tb    testing.TB
	dir   string
	Ports []int
	cmds  []*exec.Cmd
}

// StartCluster starts six cluster-enabled redis-servers (node timeout 1s,
// so a failover takes a few seconds), creates the cluster and waits until
// every node reports it healthy. It is torn down when the test ends.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	bin := tooltest.Path(tb, "redis-server", "redis-server")
	cli := tooltest.Path(tb, "redis-tools", "redis-cli")
	dir, err := os.MkdirTemp("", "rc")
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{tb: tb, dir: dir}
	tb.Cleanup(func() {
		for i := range c.cmds {
			c.Kill(i)
		}
		_ = os.RemoveAll(dir)
	})
	for len(c.Ports) < 6 {
		p := 20000 + rand.IntN(9000)
		if portFree(p) && portFree(p+10000) {
			c.Ports = append(c.Ports, p)
		}
	}
	for _, p := range c.Ports {
		cmd := exec.Command(bin, "--port", strconv.Itoa(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", p), "--cluster-node-timeout", "1000",
			"--dir", dir, "--save", "", "--appendonly", "no", "--protected-mode", "no", "--repl-diskless-sync-delay", "0",
			"--logfile", filepath.Join(dir, fmt.Sprintf("redis-%d.log", p)))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start redis-server: %v", err)
		}
		c.cmds = append(c.cmds, cmd)
	}
	for _, p := range c.Ports {
		c.waitPing(p)
	}
	args := []string{"--cluster", "create"}
	for _, p := range c.Ports {
		args = append(args, "127.0.0.1:"+strconv.Itoa(p))
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func (c *Cluster) waitPing(p int) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(p)})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			c.tb.Fatalf("redis-server on %d did not start", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL returns the cluster URL in go-redis's form.
func (c *Cluster) URL() string {
	u := "redis://127.0.0.1:" + strconv.Itoa(c.Ports[0])
	for i, p := range c.Ports[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=127.0.0.1:" + strconv.Itoa(p)
	}
	return u
}

// Index returns the index of the node listening on addr (host:port).
func (c *Cluster) Index(addr string) int {
	for i, p := range c.Ports {
		if strings.HasSuffix(addr, ":"+strconv.Itoa(p)) {
			return i
		}
	}
	return -1
}

// Kill kills node i with SIGKILL.
func (c *Cluster) Kill(i int) {
	if c.cmds[i] == nil {
		return
	}
	_ = c.cmds[i].Process.Kill()
	_ = c.cmds[i].Wait()
	c.cmds[i] = nil
}

// WaitHealthy waits until every live node says cluster_state:ok, all 16384
// slots are served and every replica is in sync with its master.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for i, p := range c.Ports {
			if c.cmds[i] == nil {
				continue
			}
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(p)})
			info, err := rdb.ClusterInfo(context.Background()).Result()
			repl, _ := rdb.Info(context.Background(), "replication").Result()
			_ = rdb.Close()
			// A replica that has not finished its first sync cannot take over.
			replicaDown := strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")
			if err != nil || replicaDown || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatal("redis cluster not healthy in time")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log returns the last lines of node i's log, for a failure message.
func (c *Cluster) Log(i int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("redis-%d.log", c.Ports[i])))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
