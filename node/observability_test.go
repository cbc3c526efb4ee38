package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

const (
	dashboardFile = "../deploy/grafana/tickstream.json"
	alertsFile    = "../deploy/prometheus/alerts.yml"
)

// promtool returns the path of promtool, or skips the test naming the
// Debian package that provides it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: install the Debian package prometheus (scripts/test.sh does)")
	}
	return p
}

// metricNames matches the tickstream metric names in a PromQL expression.
var metricNames = regexp.MustCompile(`\btickstream_[a-z0-9_]+`)

// dashboardExprs returns every PromQL expression of the dashboard: its
// panels' targets (rows' panels included) and its template queries.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	if dash.UID == "" || len(exprs) < 10 {
		t.Fatalf("%s: uid %q, %d expressions", dashboardFile, dash.UID, len(exprs))
	}
	return exprs
}

// alertExprs returns the expr of every rule in the alert rules file (one
// line each).
func alertExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			exprs = append(exprs, strings.TrimSpace(rest))
		}
	}
	if len(exprs) < 5 {
		t.Fatalf("%s: %d rules", alertsFile, len(exprs))
	}
	return exprs
}

// TestAlertRulesPassPromtool guards deploy/prometheus/alerts.yml: promtool
// check rules accepts it.
func TestAlertRulesPassPromtool(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestDashboardAndAlertMetricsExist guards the dashboard and the alert
// rules against the node's metrics: a real node, a little exercised (a
// simulator, a stream, a refused request), exports every metric name their
// PromQL expressions use, and promtool check metrics accepts its scrape.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	pt := promtool(t)
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(func(c *node.Config) {
		c.Transport.MetricsEvery = -1
		c.Cluster.Interval = 100 * time.Millisecond
	})
	stop := f.RunSimulator(500, 0)
	defer stop()
	resp, err := http.Get(n.URL() + "/stream?symbols=AAPL,MSFT&interval=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if r, err := http.Get(n.URL() + "/api/snapshot?symbols=NOPE"); err == nil {
		_ = r.Body.Close()
	}

	var scrape []byte
	have := map[string]bool{}
	nodetest.CheckFor(t, 20*time.Second, func() error {
		r, err := http.Get(n.URL() + "/metrics")
		if err != nil {
			return err
		}
		defer r.Body.Close()
		if scrape, err = io.ReadAll(r.Body); err != nil {
			return err
		}
		clear(have)
		for _, line := range strings.Split(string(scrape), "\n") {
			if line == "" || line[0] == '#' {
				continue
			}
			have[line[:strings.IndexAny(line, "{ ")]] = true
		}
		// Wait for what comes with use: delivery, the announcement.
		for _, name := range []string{"tickstream_delivery_lag_seconds_count", "tickstream_rebalance_announced_subscribers", "tickstream_feed_read_lag_seconds_count"} {
			if !have[name] {
				return fmt.Errorf("no %s yet", name)
			}
		}
		if !bytes.Contains(scrape, []byte("tickstream_delivery_lag_seconds_count 0\n")) {
			return nil
		}
		return errors.New("nothing delivered yet")
	})

	for _, src := range []struct {
		file  string
		exprs []string
	}{{dashboardFile, dashboardExprs(t)}, {alertsFile, alertExprs(t)}} {
		var missing []string
		for _, e := range src.exprs {
			for _, name := range metricNames.FindAllString(e, -1) {
				if !have[name] && !slices.Contains(missing, name) {
					missing = append(missing, name)
				}
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s uses metrics the node does not export: %v", src.file, missing)
		}
	}

	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestBuildInfoAndRebalanceSeriesAreAboutTheNodeItself guards two
// properties of a node's metrics: tickstream_build_info is 1 with the
// configured version and the Go version; and no rebalancing series names
// another node, so a sum over the nodes counts each once (two nodes, one
// subscriber: the announced subscribers sum to 1).
func TestBuildInfoAndRebalanceSeriesAreAboutTheNodeItself(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	cfg := func(name string) func(*node.Config) {
		return func(c *node.Config) {
			c.Name, c.Version = name, "v9.9.9-test"
			c.Transport.MetricsEvery = -1
			c.Cluster.Interval = 100 * time.Millisecond
		}
	}
	a, b := f.StartNode(cfg("node-a")), f.StartNode(cfg("node-b"))
	resp, err := http.Get(a.URL() + "/stream?symbols=AAPL")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	nodetest.CheckFor(t, 20*time.Second, func() error {
		var sum float64
		for _, n := range []*node.Node{a, b} {
			if v, err := nodetest.Metric(n.URL(), "tickstream_cluster_nodes", ""); err != nil || v != 2 {
				return fmt.Errorf("%s sees %v nodes (%v)", n.Name, v, err)
			}
			v, err := nodetest.Metric(n.URL(), "tickstream_rebalance_announced_subscribers", "")
			if err != nil {
				return err
			}
			sum += v
		}
		if sum != 1 {
			return fmt.Errorf("announced subscribers sum to %v over the nodes, want 1", sum)
		}
		return nil
	})
	r, err := http.Get(b.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if bytes.Contains(body, []byte(`"node-a"`)) {
		t.Errorf("node-b's metrics name node-a")
	}
	want := fmt.Sprintf(`goversion=%q`, runtime.Version())
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "tickstream_build_info{") {
			if !strings.Contains(line, want) || !strings.Contains(line, `version="v9.9.9-test"`) || !strings.HasSuffix(line, "} 1") {
				t.Errorf("build info %q, want version v9.9.9-test, %s, value 1", line, want)
			}
			return
		}
	}
	t.Error("no tickstream_build_info")
}
