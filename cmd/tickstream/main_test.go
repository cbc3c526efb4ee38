package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/tooltest"
)

// syncBuf is a goroutine-safe bytes.Buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var liveRE = regexp.MustCompile(`live at (http://[0-9.:]+)/`)

// startDemo runs `tickstream run` in process and returns its base URL.
func startDemo(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	url, stop, _ := startDemoLogs(t, args...)
	return url, stop
}

// startDemoLogs is startDemo that also returns what the demo logs.
func startDemoLogs(t *testing.T, args ...string) (string, func() error, *syncBuf) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuf
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, append([]string{"run", "--addr", "127.0.0.1:0", "--drain", "10ms"}, args...), &out, &errOut)
	}()
	var url string
	nodetest.CheckFor(t, 15*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("run exited: %v\n%s", err, errOut.String())
		default:
		}
		m := liveRE.FindStringSubmatch(out.String())
		if m == nil {
			return errors.New("not live yet")
		}
		url = m[1]
		return nil
	})
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("run did not stop within 10s of its context ending")
		}
	}
	t.Cleanup(func() { _ = stop() })
	return url, stop, &errOut
}

func TestRunDemoStreamsAndStops(t *testing.T) {
	url, stop := startDemo(t, "--rate", "500")
	resp, err := http.Get(url + "/stream?symbols=AAPL,EURUSD&interval=50ms")
	if err != nil {
		t.Fatal(err)
	}
	d := client.NewDecoder(resp.Body)
	ticks := 0
	for ticks < 5 {
		ev, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "tick" {
			ticks++
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The node told the subscriber it was going away.
	for {
		ev, err := d.Next()
		if err != nil {
			t.Fatal("stream ended without goaway:", err)
		}
		if ev.Type == "goaway" {
			break
		}
	}
	resp.Body.Close()
}

func TestBadCommandLines(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"frobnicate"}, nil, "unknown command"},
		{[]string{"run", "--rate", "-5"}, nil, "--rate"},
		{[]string{"run", "--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"simulate", "--redis", "ftp://x"}, nil, "--redis"},
		{[]string{"run"}, map[string]string{"TICKSTREAM_SHARDS": "lots"}, "TICKSTREAM_SHARDS"},
		{[]string{"serve", "--redis", "redis://127.0.0.1:1"}, nil, "does not answer"},
		{[]string{"serve", "--redis", "redis://127.0.0.1:1", "--pool", "a b"}, nil, "--pool"},
		{[]string{"run"}, map[string]string{"TICKSTREAM_POOL": "{x}"}, "--pool"},
		{[]string{"serve", "--redis", "redis://127.0.0.1:1", "--cluster-max-nodes", "0"}, nil, "--cluster-max-nodes"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out, errOut syncBuf
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, c.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error()+errOut.String(), c.want) {
				t.Errorf("err %v, stderr %q; want it to mention %q", err, errOut.String(), c.want)
			}
		})
	}
}

func TestEnvironmentFallback(t *testing.T) {
	t.Setenv("TICKSTREAM_UNIVERSE", "150")
	url, _ := startDemo(t)
	resp, err := http.Get(url + "/api/symbols")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if !strings.Contains(buf.String(), `"count":150`) {
		t.Errorf("TICKSTREAM_UNIVERSE=150 not applied: %.100s", buf.String())
	}
}

func TestTailPrintsTicksAndRefusesBadInput(t *testing.T) {
	url, _ := startDemo(t, "--rate", "300")
	for _, format := range []string{"jsonl", "csv"} {
		ctx, cancel := context.WithCancel(context.Background())
		out := &lineCounter{want: 5, done: cancel}
		var errOut syncBuf
		err := Run(ctx, []string{"tail", url, "--symbols", "AAPL,EURUSD", "--interval", "50ms", "--format", format}, out, &errOut)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v %s", format, err, errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if format == "csv" {
			if lines[0] != "sym,seq,bid,ask,last,size,ts" || !regexp.MustCompile(`^(AAPL|EURUSD),\d+,\d+\.\d{2,5},`).MatchString(lines[1]) {
				t.Errorf("csv: %q", lines[:2])
			}
		} else if !strings.HasPrefix(lines[0], `{"sym":"`) {
			t.Errorf("jsonl: %q", lines[0])
		}
		if !strings.Contains(errOut.String(), "connected") {
			t.Errorf("no status on stderr: %q", errOut.String())
		}
	}
	for _, args := range [][]string{
		{"tail", url, "--symbols", "NOPE"},
		{"tail", "not a url", "--symbols", "AAPL"},
		{"tail", url},
		{"tail", url, "--symbols", "AAPL", "--format", "xml"},
	} {
		var out, errOut syncBuf
		err := Run(context.Background(), args, &out, &errOut)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error (exit 2)", args, err)
		}
	}
}

// lineCounter cancels its context after want lines.
type lineCounter struct {
	syncBuf
	want int
	done context.CancelFunc
}

func (l *lineCounter) Write(p []byte) (int, error) {
	n, err := l.syncBuf.Write(p)
	if strings.Count(l.String(), "\n") > l.want {
		l.done()
	}
	return n, err
}

// TestPythonStandardLibraryClient runs the README's Python example (another
// ecosystem's SSE consumer) against the demo.
func TestPythonStandardLibraryClient(t *testing.T) {
	py := tooltest.Path(t, "python3", "python3")
	url, _ := startDemo(t, "--rate", "300")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "../../examples/python/tail.py", url, "AAPL,EURUSD", "--count", "5").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 5 || !regexp.MustCompile(`^(AAPL|EURUSD)\s+seq=\d+\s+bid=\d+\.\d+\s+ask=\d+\.\d+\s+spread=0\.\d+$`).MatchString(lines[0]) {
		t.Errorf("python client printed:\n%s", out)
	}
	out, err = exec.CommandContext(ctx, py, "../../examples/python/tail.py", url, "NOPE").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown symbol") {
		t.Errorf("refused symbol: %v %s", err, out)
	}
}

func TestTokenCommandAndAuthEnforcedByServe(t *testing.T) {
	var out, errOut syncBuf
	if err := Run(context.Background(), []string{"token", "--auth-secret", "k", "--symbols", "AAPL", "--ttl", "10m"}, &out, &errOut); err != nil {
		t.Fatal(err, errOut.String())
	}
	tok := strings.TrimSpace(out.String())
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("not a JWT: %q", tok)
	}
	var e2 syncBuf
	if err := Run(context.Background(), []string{"token"}, &e2, &e2); err == nil {
		t.Error("token without a secret accepted")
	}
	t.Setenv("TICKSTREAM_AUTH_SECRET", "k")
	url, _ := startDemo(t)
	resp, err := http.Get(url + "/stream?symbols=AAPL")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %s", resp.Status)
	}
	resp, err = http.Get(url + "/stream?symbols=AAPL&access_token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with the minted token: %s", resp.Status)
	}
}
