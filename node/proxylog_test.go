package node_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/nginxtest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/node"
)

// TestSampleProxyKeepsTokensOutOfLogs guards deploy/nginx.conf's access
// log: a request's path is logged without its query string and no request
// header is, so neither ?access_token= nor Authorization reaches the log,
// while a subscriber through the proxy keeps receiving.
func TestSampleProxyKeepsTokensOutOfLogs(t *testing.T) {
	secret := []byte("s3cret")
	f := nodetest.NewFeed(t)
	f.RunSimulator(500, 0)
	n := f.StartNode(func(c *node.Config) {
		c.Transport.AuthSecret = secret
		c.Transport.TrustedProxies = []string{"127.0.0.1"}
	})
	proxy := nginxtest.Run(t, []string{n.Addr}, nil)
	mint := func(syms ...string) string { // distinct symbols: distinct tokens
		tok, err := transport.MintToken(secret, syms, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	streamTok, queryTok, headerTok := mint("*"), mint("AAPL"), mint("AAPL", "MSFT")

	// The normal subscriber, through the proxy.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", proxy.URL+"/stream?symbols=AAPL,MSFT&interval=100ms", nil)
	req.Header.Set("Authorization", "Bearer "+streamTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream through the proxy: %v %v", resp, err)
	}
	var ticks atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		d := client.NewDecoder(resp.Body)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			if ev.Type == "tick" {
				ticks.Add(1)
			}
		}
	}()
	defer func() { cancel(); <-done }()
	wait.For(t, 10*time.Second, func() error {
		if ticks.Load() < 2 {
			return fmt.Errorf("%d ticks through the proxy", ticks.Load())
		}
		return nil
	})

	const k = 20
	for i := range k {
		for _, c := range []struct{ url, header string }{
			{proxy.URL + "/api/snapshot?symbols=AAPL&access_token=" + queryTok, ""},
			{proxy.URL + "/api/snapshot?symbols=AAPL", "Bearer " + headerTok},
			{proxy.URL + "/api/snapshot?access_token=NOT-A-TOKEN-SECRET&symbols=AAPL", ""},
		} {
			r, _ := http.NewRequest("GET", c.url, nil)
			if c.header != "" {
				r.Header.Set("Authorization", c.header)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{true: 401, false: 200}[strings.Contains(c.url, "NOT-A-TOKEN")]; resp.StatusCode != want {
				t.Fatalf("request %d %s: %d, want %d", i, c.url, resp.StatusCode, want)
			}
		}
	}
	// Every request is logged (nginx writes the line as it ends).
	var log string
	wait.For(t, 10*time.Second, func() error {
		b, err := os.ReadFile(proxy.AccessLog)
		if err != nil {
			return err
		}
		log = string(b)
		if got := strings.Count(log, "GET /api/snapshot "); got < 3*k {
			return fmt.Errorf("%d snapshot requests logged, want %d", got, 3*k)
		}
		return nil
	})
	errLog, _ := os.ReadFile(filepath.Join(proxy.Dir, "error.log"))
	for name, text := range map[string]string{"access log": log, "error log": string(errLog)} {
		for _, secret := range []string{queryTok, headerTok, streamTok, "NOT-A-TOKEN-SECRET", "access_token", "Bearer"} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s contains %.40q", name, secret)
			}
		}
	}
	// The subscriber kept receiving through it all.
	before := ticks.Load()
	wait.For(t, 10*time.Second, func() error {
		if ticks.Load() < before+2 {
			return fmt.Errorf("the subscriber through the proxy got no tick since %d", before)
		}
		return nil
	})
	t.Logf("access log line: %s", strings.SplitN(log, "\n", 2)[0])
}
