package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/bintest"
)

// runCLI runs a command line in process with a short deadline.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = Run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestCLITraps checks each command-line trap that used to surprise users:
// every case is a usage error (exit 2) whose one-line message names the
// problem, with nothing else printed (nothing started). Listen addresses
// are host:port with a port from 0 to 65535.
func TestCLITraps(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"stray word before the flags", []string{"serve", "extra", "--redis", "redis://127.0.0.1:1", "--addr", "127.0.0.1:0"}, nil,
			[]string{`unexpected argument "extra"`, "flags only"}},
		{"stray word after the flags", []string{"simulate", "--rate", "10", "later"}, nil, []string{`unexpected argument "later"`}},
		{"tail with two URLs", []string{"tail", "http://a", "http://b", "--symbols", "AAPL"}, nil, []string{`unexpected argument "http://b"`}},
		{"unknown flag, double-dash spelling", []string{"run", "--no-such-flag"}, nil, []string{"--no-such-flag", "see tickstream run --help"}},
		{"flag without its value", []string{"serve", "--addr"}, nil, []string{"--addr"}},
		{"bad value names the flag", []string{"run", "--rate", "fast"}, nil, []string{`"fast"`, "--rate"}},
		{"redis and cluster together", []string{"serve", "--redis", "redis://127.0.0.1:1", "--redis-cluster", "redis://127.0.0.1:2"}, nil,
			[]string{"--redis and --redis-cluster exclude each other"}},
		{"redis from the environment and cluster from a flag", []string{"simulate", "--redis-cluster", "redis://127.0.0.1:2"},
			map[string]string{"TICKSTREAM_REDIS": "redis://127.0.0.1:1"}, []string{"exclude each other"}},
		{"symbols is not the universe size", []string{"run", "--symbols", "150"}, nil, []string{"--symbols"}},
		{"loadgen's universe size is --universe", []string{"loadgen", "--symbols", "500"}, nil, []string{"--symbols"}},
		{"bad universe from the environment", []string{"run"}, map[string]string{"TICKSTREAM_UNIVERSE": "AAPL,MSFT"}, []string{"TICKSTREAM_UNIVERSE"}},
		{"bad interval flag", []string{"serve", "--max-interval", "soon"}, nil, []string{"--max-interval", "milliseconds"}},
		{"duration without its unit", []string{"serve", "--heartbeat", "15"}, nil, []string{"--heartbeat", "with its unit"}},
		{"bad log format", []string{"serve", "--log-format", "xml"}, nil, []string{"--log-format", "text or json"}},
		{"bad log level", []string{"run", "--log-level", "loud"}, nil, []string{"--log-level"}},
		{"bad tail format", []string{"tail", "http://a", "--symbols", "AAPL", "--format", "xml"}, nil, []string{"--format", "jsonl or csv"}},
		{"bad loadgen interval", []string{"loadgen", "--interval", "-5"}, nil, []string{"--interval"}},
		{"bad redis url", []string{"simulate", "--redis", "ftp://x"}, nil, []string{"--redis"}},
		{"unknown command", []string{"frobnicate"}, nil, []string{`unknown command "frobnicate"`}},
		{"serve address without a colon", []string{"serve", "--redis", "redis://127.0.0.1:1", "--addr", "30084"}, nil, []string{"--addr", `"30084"`, "host:port"}},
		{"run address without a colon", []string{"run", "--addr", "30084"}, nil, []string{"--addr", "host:port"}},
		{"port past 65535", []string{"serve", "--addr", "127.0.0.1:70000"}, nil, []string{"--addr", "0 to 65535"}},
		{"port that is not a number", []string{"run", "--addr", "localhost:http"}, nil, []string{"--addr", "0 to 65535"}},
		{"bad debug address", []string{"serve", "--debug-addr", "6060"}, nil, []string{"--debug-addr", "host:port"}},
		{"bad address from the environment", []string{"run"}, map[string]string{"TICKSTREAM_ADDR": "30084"}, []string{"TICKSTREAM_ADDR", "host:port"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			stdout, stderr, err := runCLI(t, c.args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%v: err %v, want a usage error (exit 2)", c.args, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("message has several lines: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
			if stdout != "" || stderr != "" {
				t.Errorf("printed besides the error: stdout %.200q stderr %.200q", stdout, stderr)
			}
		})
	}
}

// TestSymbolListEnvironmentDoesNotBreakRun: TICKSTREAM_SYMBOLS is a list
// (for tail and token) and TICKSTREAM_UNIVERSE a size (for run), so a
// shell that sets both for their commands runs both.
func TestSymbolListEnvironmentDoesNotBreakRun(t *testing.T) {
	t.Setenv("TICKSTREAM_SYMBOLS", "AAPL,EURUSD")
	t.Setenv("TICKSTREAM_UNIVERSE", "120")
	t.Setenv("TICKSTREAM_LOG_FORMAT", "json")
	url, stop, logs := startDemoLogs(t)
	resp, err := http.Get(url + "/api/symbols")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(buf.String(), `"count":120`) {
		t.Errorf("TICKSTREAM_UNIVERSE=120 not applied: %.100s", buf.String())
	}
	// tail reads its list from the same environment, and its interval as
	// plain milliseconds.
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineCounter{want: 2, done: cancel}
	var errOut syncBuf
	if err := Run(ctx, []string{"tail", url, "--interval", "50"}, out, &errOut); err != nil {
		t.Fatalf("tail: %v %s", err, errOut.String())
	}
	cancel()
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !strings.HasPrefix(l, `{"sym":"AAPL"`) && !strings.HasPrefix(l, `{"sym":"EURUSD"`) {
			t.Errorf("tail printed %q", l)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// --log-format json: every log line is a JSON object.
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("not a JSON log line: %q", l)
		}
		n++
	}
	if n == 0 {
		t.Error("no log lines")
	}
}

// TestTailNamesEveryUnknownSymbol: the node's refusal names them all.
func TestTailNamesEveryUnknownSymbol(t *testing.T) {
	url, _ := startDemo(t, "--rate", "100")
	_, _, err := runCLI(t, "tail", url, "--symbols", "AAPL,NOPE,ZZZZ")
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "NOPE") || !strings.Contains(err.Error(), "ZZZZ") {
		t.Errorf("err %v: want a usage error naming NOPE and ZZZZ", err)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		stdout, _, err := runCLI(t, args...)
		if err != nil || !strings.HasPrefix(stdout, "tickstream ") || !strings.Contains(stdout, "go1.") {
			t.Errorf("%v: %q %v", args, stdout, err)
		}
	}
}

// TestBinaryExitCodes runs the built binary: a bad command line exits 2
// with one line on stderr, --help exits 0, --version names a VCS revision
// when built from a checkout.
func TestBinaryExitCodes(t *testing.T) {
	bin := bintest.Tickstream(t)
	cases := []struct {
		args  []string
		code  int
		lines int // lines on stderr; -1: any
	}{
		{[]string{"run", "--nope"}, 2, 1},
		{[]string{"serve", "extra", "--redis", "redis://127.0.0.1:1"}, 2, 1},
		{[]string{"serve", "--redis", "redis://127.0.0.1:1", "--redis-cluster", "redis://127.0.0.1:2"}, 2, 1},
		{[]string{"serve", "--addr", "30084"}, 2, 1},
		{[]string{"run", "--addr", "30084"}, 2, 1}, // refused before the embedded store and the simulator start
		{[]string{"serve", "--help"}, 0, -1},
		{[]string{"--version"}, 0, 0},
	}
	for _, c := range cases {
		cmd := exec.Command(bin, c.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(stderr.String(), "\n")
		if code != c.code || (c.lines >= 0 && lines != c.lines) {
			t.Errorf("%v: exit %d with %d stderr lines %.300q; want exit %d, %d lines", c.args, code, lines, stderr.String(), c.code, c.lines)
		}
		if c.args[0] == "--version" && !strings.Contains(stdout.String(), "revision ") {
			t.Logf("--version without a revision (built outside a git checkout?): %q", stdout.String())
		}
	}
}
