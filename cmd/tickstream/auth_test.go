package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/internal/nodetest"
)

// TestAudienceIssuerAndMetricsAddrFlags guards the flags of serve and run
// and their environment variables: --auth-audience and --auth-issuer make
// the node refuse tokens without those claims, tickstream token mints them,
// and --metrics-addr moves /metrics off the client port onto its own
// listener, while a subscriber with a good token keeps receiving.
func TestAudienceIssuerAndMetricsAddrFlags(t *testing.T) {
	mint := func(args ...string) string {
		t.Helper()
		var out, errOut syncBuf
		if err := Run(context.Background(), append([]string{"token", "--auth-secret", "k", "--symbols", "AAPL"}, args...), &out, &errOut); err != nil {
			t.Fatal(err, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	good := mint("--auth-audience", "tickstream", "--auth-issuer", "login.example")
	bare := mint()
	t.Setenv("TICKSTREAM_AUTH_SECRET", "k")
	t.Setenv("TICKSTREAM_AUTH_AUDIENCE", "tickstream")
	metricsAddr := nodetest.FreeAddr(t)
	url, _ := startDemo(t, "--auth-issuer", "login.example", "--metrics-addr", metricsAddr)

	req, _ := http.NewRequest("GET", url+"/stream?symbols=AAPL&interval=0", nil)
	req.Header.Set("Authorization", "Bearer "+good)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream with a good token: %v %v", resp, err)
	}
	defer resp.Body.Close()
	d := client.NewDecoder(resp.Body)
	nextTick := func() {
		t.Helper()
		for {
			ev, err := d.Next()
			if err != nil {
				t.Fatalf("the subscriber's stream ended: %v", err)
			}
			if ev.Type == "tick" {
				return
			}
		}
	}
	nextTick()

	get := func(u, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", u, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		name, url, token string
		want             int
	}{
		{"a token without aud and iss", url + "/api/snapshot?symbols=AAPL", bare, 401},
		{"a token with both", url + "/api/snapshot?symbols=AAPL", good, 200},
		{"metrics on the client port", url + "/metrics", good, 404},
		{"metrics on their own listener", "http://" + metricsAddr + "/metrics", "", 200},
	} {
		if got := get(c.url, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	nextTick()
}
