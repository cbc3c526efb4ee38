package node_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/nginxtest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// TestSampleProxyHeaders checks what deploy/nginx.conf passes to the nodes
// and what it keeps from the public: /metrics is not served, Host keeps its
// port (the node compares a browser's Origin with it), a client's own
// X-Forwarded-For is replaced (it cannot dodge the per-address limit), and
// the TLS server speaks HTTP/2.
func TestSampleProxyHeaders(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick(drainSyms...)
	n := f.StartNode(func(c *node.Config) {
		c.Name = "n"
		c.Transport.TrustedProxies = []string{"127.0.0.1"}
		c.Transport.MaxPerAddress = 2
	})
	proxy := nginxtest.Run(t, []string{n.Addr}, nil)

	t.Run("metrics not public", func(t *testing.T) {
		if code := get(t, n.URL()+"/metrics"); code != 200 {
			t.Fatalf("node's own /metrics: %d", code)
		}
		for _, p := range []string{"/metrics", "/METRICS", "//metrics", "/metrics/", "/%6Detrics", "/metrics?x=1"} {
			if code := get(t, proxy.URL+p); code != 404 {
				t.Errorf("GET %s through the proxy: %d, want 404", p, code)
			}
		}
		if code := get(t, proxy.URL+"/healthz"); code != 200 {
			t.Errorf("/healthz through the proxy: %d", code)
		}
	})

	t.Run("host keeps its port for the origin check", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(proxy.URL, "http://"))
		host := "tick.example:" + port
		status := rawGet(t, strings.TrimPrefix(proxy.URL, "http://"), "/ws?symbols=AAPL",
			"Host: "+host, "Origin: http://"+host, "Upgrade: websocket", "Connection: Upgrade",
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")
		if status != 101 {
			t.Errorf("WebSocket from the proxy's own origin %s: %d, want 101", host, status)
		}
	})

	t.Run("a client's X-Forwarded-For is replaced", func(t *testing.T) {
		// The WebSocket above holds one of the address's two slots until the
		// node has seen it close.
		nodetest.CheckFor(t, 10*time.Second, func() error {
			if sse, ws := n.Server.Streams(); sse+ws > 0 {
				return fmt.Errorf("the node still holds %d SSE and %d WebSocket streams", sse, ws)
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var held []*http.Response
		defer func() {
			for _, r := range held {
				r.Body.Close()
			}
		}()
		for i := range 3 {
			req, _ := http.NewRequestWithContext(ctx, "GET", proxy.URL+"/stream?symbols=AAPL", nil)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("stream %d with a forged X-Forwarded-For: %s, want 200", i+1, resp.Status)
			}
			if i == 2 { // the limit is 2 per address: a goaway stream, then its end
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), "event: goaway") || !strings.Contains(string(body), "max-per-address") {
					t.Fatalf("stream 3 with a forged X-Forwarded-For: %q, want a goaway naming max-per-address", body)
				}
			}
		}
	})

	t.Run("tls server speaks http/2", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the test's self-signed certificate
			ForceAttemptHTTP2: true,
		}, Timeout: 10 * time.Second}
		resp, err := c.Get(proxy.TLSURL + "/api/symbols")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Errorf("%s over %s, want 200 over HTTP/2", resp.Status, resp.Proto)
		}
	})
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// rawGet sends a GET with exactly these headers (Host included) and
// returns the status.
func rawGet(t *testing.T, addr, path string, headers ...string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\n"+strings.Join(headers, "\r\n")+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
