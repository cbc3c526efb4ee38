//go:build linux

package deploy_test

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
)

const unitBinary = "/usr/local/bin/tickstream"

// readUnit returns deploy/tickstream.service's [Service] settings, each
// key's values in order.
func readUnit(tb testing.TB) map[string][]string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root(tb), "deploy", "tickstream.service"))
	if err != nil {
		tb.Fatal(err)
	}
	set := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			set[k] = append(set[k], v)
		}
	}
	return set
}

// execStart returns the unit's ExecStart arguments after the binary.
func execStart(tb testing.TB, unit map[string][]string) []string {
	tb.Helper()
	if len(unit["ExecStart"]) != 1 {
		tb.Fatalf("ExecStart %q: want one", unit["ExecStart"])
	}
	f := strings.Fields(unit["ExecStart"][0])
	if f[0] != unitBinary || len(f) < 2 || f[1] != "serve" {
		tb.Fatalf("ExecStart %q: want %s serve …", unit["ExecStart"][0], unitBinary)
	}
	return f[1:]
}

// TestServiceUnitVerifies guards deploy/tickstream.service: systemd accepts
// every line (systemd-analyze verify, with the binary's path pointed at a
// real build), and it keeps what a production node needs: its own user,
// 65536 open files, restarts on failure, a stop timeout above the drain,
// site settings from the environment file (the auth secret never on the
// command line) and the hardening options.
func TestServiceUnitVerifies(t *testing.T) {
	unit := readUnit(t)
	for k, want := range map[string]string{
		"LimitNOFILE": "65536", "Restart": "on-failure", "DynamicUser": "yes",
		"EnvironmentFile": "-/etc/tickstream/tickstream.env", "NoNewPrivileges": "yes",
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
	} {
		if got := strings.Join(unit[k], " "); got != want {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
	args := execStart(t, unit)
	drain, err := time.ParseDuration(flagValue(args, "--drain"))
	if err != nil {
		t.Fatalf("ExecStart --drain: %v", err)
	}
	stop, err := time.ParseDuration(strings.Join(unit["TimeoutStopSec"], ""))
	if err != nil || stop < 2*drain {
		t.Errorf("TimeoutStopSec=%v (%v): want at least twice --drain %v", unit["TimeoutStopSec"], err, drain)
	}
	if strings.Contains(unit["ExecStart"][0], "auth-secret") {
		t.Error("ExecStart names --auth-secret: the secret belongs in the environment file")
	}

	analyze := need(t, "systemd-analyze", "systemd")
	b, err := os.ReadFile(filepath.Join(root(t), "deploy", "tickstream.service"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tickstream.service")
	text := strings.ReplaceAll(string(b), unitBinary, bintest.Tickstream(t))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify warns about unknown or bad lines without failing: any output
	// is a failure here.
	if out, err := run(t, analyze, "verify", path); err != nil || out != "" {
		t.Errorf("systemd-analyze verify deploy/tickstream.service: %v\n%s", err, out)
	}
}

// TestServiceExecStartRuns guards the unit's command line and its sample
// environment file (deploy/tickstream.env): the real binary knows every
// variable of the file and every flag of ExecStart, and the command, with
// the file's environment and only its loopback ports changed, serves
// (/readyz 200, /metrics on --metrics-addr) and drains within
// TimeoutStopSec of SIGTERM.
func TestServiceExecStartRuns(t *testing.T) {
	bin := bintest.Tickstream(t)
	unit := readUnit(t)
	args := execStart(t, unit)

	help, err := run(t, bin, "serve", "--help")
	if err != nil {
		t.Fatalf("tickstream serve --help: %v\n%s", err, help)
	}
	b, err := os.ReadFile(filepath.Join(root(t), "deploy", "tickstream.env"))
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t, redistest.WithTCP())
	var env []string
	varRE := regexp.MustCompile(`^#?(TICKSTREAM_[A-Z_]+)=(.*)$`)
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		m := varRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if !strings.Contains(help, "("+m[1]+")") {
			t.Errorf("deploy/tickstream.env: %s is no variable of tickstream serve", m[1])
		}
		if sc.Text()[0] == '#' {
			continue
		}
		v := m[2]
		if m[1] == "TICKSTREAM_REDIS" {
			v = rs.TCPURL()
		}
		env = append(env, m[1]+"="+v)
	}
	if out, err := run(t, bin, append(args, "--help")...); err != nil {
		t.Fatalf("ExecStart's flags: %v\n%s", err, out)
	}

	metrics := nodetest.FreeAddr(t)
	ports := strings.NewReplacer("127.0.0.1:8081", "127.0.0.1:0", "127.0.0.1:9091", metrics)
	for i := range args {
		args[i] = ports.Replace(args[i])
	}
	start(t, nil, bin, "simulate", "--redis", rs.TCPURL(), "--rate", "100")
	node := start(t, env, bin, args...)
	waitReady(t, node, "http://"+node.addr(t))
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatalf("--metrics-addr: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("--metrics-addr /metrics: %s", resp.Status)
	}

	stop, _ := time.ParseDuration(strings.Join(unit["TimeoutStopSec"], ""))
	began := time.Now()
	_ = node.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-node.done:
		t.Logf("stopped %v after SIGTERM", time.Since(began).Round(time.Millisecond))
		if !node.cmd.ProcessState.Success() {
			t.Errorf("exit after SIGTERM: %v\n%s", node.cmd.ProcessState, node.output())
		}
	case <-time.After(stop):
		t.Errorf("the node did not stop within TimeoutStopSec=%v of SIGTERM", stop)
	}
}
