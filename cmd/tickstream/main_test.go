package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"tickstream/fanout/client"
	"tickstream/internal/nodetest"
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
	return url, stop
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
	t.Setenv("TICKSTREAM_SYMBOLS", "150")
	url, _ := startDemo(t)
	resp, err := http.Get(url + "/api/symbols")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if !strings.Contains(buf.String(), `"count":150`) {
		t.Errorf("TICKSTREAM_SYMBOLS=150 not applied: %.100s", buf.String())
	}
}
