package transport_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/node"
)

// authSecret is the HMAC secret of the nodes in these tests.
var authSecret = []byte("s3cret")

// authNode starts a node with auth on, the simulator feeding it, and a
// normal subscriber (a token for every symbol) watching it.
func authNode(t *testing.T, mutate func(*node.Config)) (*node.Node, *watcher) {
	t.Helper()
	_, n := attackNode(t, func(c *node.Config) {
		c.Transport.AuthSecret = authSecret
		if mutate != nil {
			mutate(c)
		}
	})
	all := mint(t, []string{"*"})
	return n, watch(t, n.URL(), all)
}

// mint makes a token for symbols, valid for an hour.
func mint(t *testing.T, symbols []string, opts ...transport.MintOption) string {
	t.Helper()
	tok, err := transport.MintToken(authSecret, symbols, time.Hour, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answer is a response's status and its JSON error, if any.
type answer struct {
	status int
	err    string
	body   string
}

// getWith sends GET url with a bearer token (none if empty).
func getWith(t *testing.T, url, token string) answer {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct{ Error string }
	_ = json.Unmarshal(body, &e)
	return answer{status: resp.StatusCode, err: e.Error, body: string(body)}
}

// received returns how many events the normal subscriber has received.
func (w *watcher) received() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// TestEveryRouteNeedsATokenUnlessPublic guards the public list: with auth
// on, every registered route is either one of transport.PublicRoutes or
// answers 401 with a JSON reason to a request without a token, whatever
// the spelling of its path. A route added later without protection fails
// here. The dashboard's files stay public.
func TestEveryRouteNeedsATokenUnlessPublic(t *testing.T) {
	n, w := authNode(t, nil)
	public := transport.PublicRoutes()
	paths := transport.RoutePaths(n.Server)
	if len(paths) < 10 {
		t.Fatalf("only %d routes found: %v", len(paths), paths)
	}
	for _, p := range paths {
		variants := []string{p, strings.ToUpper(p), p + "?symbols=AAPL&symbol=AAPL"}
		for _, v := range variants {
			a := getWith(t, n.URL()+v, "")
			switch {
			case slices.Contains(public, p):
				if a.status == http.StatusUnauthorized {
					t.Errorf("GET %s (public): %d %s", v, a.status, a.body)
				}
			case a.status != http.StatusUnauthorized || !strings.Contains(a.err, "token is required"):
				t.Errorf("GET %s without a token: %d %s, want 401 naming the token", v, a.status, a.body)
			}
		}
		if !slices.Contains(public, p) {
			req, _ := http.NewRequest("HEAD", n.URL()+p, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("HEAD %s without a token: %d, want 401", p, resp.StatusCode)
			}
		}
	}
	for _, p := range []string{"/", "/app.js", "/style.css"} {
		if a := getWith(t, n.URL()+p, ""); a.status != http.StatusOK {
			t.Errorf("dashboard file %s: %d", p, a.status)
		}
	}
	w.check(t)
}

// TestBarsNeedToken guards the charts' routes: with auth on, /api/bars and
// /api/trades answer 401 without a token and 403 naming the symbol for a
// token that does not allow it, however often they are asked; a token for
// the symbol reads them.
func TestBarsNeedToken(t *testing.T) {
	n, w := authNode(t, nil)
	aapl := mint(t, []string{"AAPL"})
	wait.For(t, 10*time.Second, func() error { // the tape has ticks
		if a := getWith(t, n.URL()+"/api/trades?symbol=AAPL", aapl); a.status != 200 || !strings.Contains(a.body, `"price"`) {
			return fmt.Errorf("trades with a token: %d %.200s", a.status, a.body)
		}
		return nil
	})
	if a := getWith(t, n.URL()+"/api/bars?symbol=AAPL&tf=5s", aapl); a.status != 200 || !strings.Contains(a.body, `"bars":[{`) {
		t.Errorf("bars with a token: %d %.200s", a.status, a.body)
	}
	// A poller without a token, or with one for another symbol, learns
	// nothing however often it asks: it polls until the normal subscriber
	// has received 400 more events (about two seconds of its stream).
	until := w.received() + 400
	for i := 0; i < 200 || w.received() < until; i++ {
		for _, route := range []string{"/api/trades?symbol=MSFT", "/api/bars?symbol=MSFT&tf=5s"} {
			if a := getWith(t, n.URL()+route, ""); a.status != 401 || !strings.Contains(a.err, "token is required") {
				t.Fatalf("request %d, %s without a token: %d %.200s", i, route, a.status, a.body)
			}
			if a := getWith(t, n.URL()+route+"&access_token="+aapl, ""); a.status != 403 || a.err != "token does not allow MSFT" {
				t.Fatalf("request %d, %s with an AAPL token: %d %.200s", i, route, a.status, a.body)
			}
		}
	}
	w.check(t)
}

// TestNodesAndMetricsNeedToken guards the cluster view and the metrics on
// the client port: with auth on, both answer 401 without a token and serve
// any valid token.
func TestNodesAndMetricsNeedToken(t *testing.T) {
	n, w := authNode(t, nil)
	aapl := mint(t, []string{"AAPL"})
	for _, route := range []string{"/api/nodes", "/metrics"} {
		if a := getWith(t, n.URL()+route, ""); a.status != 401 {
			t.Errorf("%s without a token: %d %.200s", route, a.status, a.body)
		}
		if a := getWith(t, n.URL()+route, aapl); a.status != 200 {
			t.Errorf("%s with a token: %d %.200s", route, a.status, a.body)
		}
	}
	w.check(t)
}

// TestMetricsApart guards --metrics-addr: the metrics are served on their
// own listener, without a token, and not at all on the client port.
func TestMetricsApart(t *testing.T) {
	n, w := authNode(t, func(c *node.Config) { c.MetricsAddr = "127.0.0.1:0" })
	if n.MetricsAddr == "" {
		t.Fatal("no metrics listener")
	}
	if a := getWith(t, n.URL()+"/metrics", mint(t, []string{"*"})); a.status != 404 {
		t.Errorf("/metrics on the client port: %d, want 404", a.status)
	}
	if a := getWith(t, "http://"+n.MetricsAddr+"/metrics", ""); a.status != 200 || !strings.Contains(a.body, "tickstream_subscribers") {
		t.Errorf("/metrics on its listener: %d %.200s", a.status, a.body)
	}
	if v, err := nodetest.Metric("http://"+n.MetricsAddr, "tickstream_subscribers", `transport="sse"`); err != nil || v != 1 {
		t.Errorf("subscribers on the metrics listener: %v %v, want the watcher", v, err)
	}
	w.check(t)
}

// TestMetricsScrapeFloodSharesGathers guards the cost of /metrics: however
// many scrapes arrive, the node gathers at most once per MetricsEvery, the
// scrapes waiting share one gather, and each answer is gathered after its
// request arrived (a count made before a scrape is in it).
func TestMetricsScrapeFloodSharesGathers(t *testing.T) {
	const every = 200 * time.Millisecond
	_, n := attackNode(t, func(c *node.Config) { c.Transport.MetricsEvery = every })
	w := watch(t, n.URL())
	// Fresh: a snapshot request is counted in the very next scrape.
	for range 3 {
		before := metric(t, n.URL(), "tickstream_poll_requests_total", `kind="snapshot"`)
		if a := getWith(t, n.URL()+"/api/snapshot?symbols=AAPL", ""); a.status != 200 {
			t.Fatalf("snapshot: %d", a.status)
		}
		if after := metric(t, n.URL(), "tickstream_poll_requests_total", `kind="snapshot"`); after != before+1 {
			t.Fatalf("snapshots counted %v then %v, want one more", before, after)
		}
	}
	// A flood: 64 scrapers, 5 scrapes each.
	g0, start := transport.MetricsGathers(n.Server), time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				resp, err := http.Get(n.URL() + "/metrics")
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), "tickstream_hub_ticks_total") {
					errs <- fmt.Errorf("scrape: %d %.100s", resp.StatusCode, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	el := time.Since(start)
	gathers := transport.MetricsGathers(n.Server) - g0
	if limit := uint64(el/every) + 2; gathers > limit {
		t.Errorf("320 scrapes in %v made %d gathers, want at most %d (one per %v)", el, gathers, limit, every)
	}
	if gathers < 5 {
		t.Errorf("320 scrapes, 5 per scraper one after another, made only %d gathers: a scrape was answered from before it arrived", gathers)
	}
	t.Logf("320 scrapes in %v: %d gathers", el.Round(time.Millisecond), gathers)
	w.check(t)
}

// signRaw signs payload (a JSON object, as written) with HS256, so a test
// can send claims that MintToken would never write.
func signRaw(payload string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, authSecret)
	mac.Write([]byte(head))
	return head + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestTokenClaimsParsedStrictly guards the claims' shape: a payload that
// repeats a key or spells a known claim in another case is refused with
// 401 naming it (a decoder matching keys case-insensitively, last wins,
// would grant "*"), and so are symbols that are not symbol names.
func TestTokenClaimsParsedStrictly(t *testing.T) {
	n, w := authNode(t, nil)
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name, payload, want string
		status              int
	}{
		{"case variant", `{"symbols":["AAPL"],"SYMBOLS":["*"],"exp":%d}`, `invalid token: claim "SYMBOLS" must be spelled "symbols"`, 401},
		{"title case", `{"Symbols":["*"],"exp":%d}`, `invalid token: claim "Symbols" must be spelled "symbols"`, 401},
		{"unicode fold", `{"symbols":["AAPL"],"ſymbols":["*"],"exp":%d}`, `invalid token: claim "ſymbols" must be spelled "symbols"`, 401},
		{"duplicate", `{"symbols":["AAPL"],"symbols":["*"],"exp":%d}`, `invalid token: duplicate claim "symbols"`, 401},
		{"escaped duplicate", `{"symbols":["AAPL"],"symbol\u0073":["*"],"exp":%d}`, `invalid token: duplicate claim "symbols"`, 401},
		{"exp variant", `{"symbols":["*"],"exp":%d,"EXP":99999999999}`, `invalid token: claim "EXP" must be spelled "exp"`, 401},
		{"bad symbol", `{"symbols":["AAPL","A B"],"exp":%d}`, `invalid token: symbols:`, 401},
		{"strict and narrow", `{"symbols":["aapl"],"exp":%d}`, `token does not allow MSFT`, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := signRaw(fmt.Sprintf(c.payload, exp))
			for _, route := range []string{"/api/snapshot?symbols=MSFT", "/stream?symbols=MSFT", "/api/trades?symbol=MSFT"} {
				if a := getWith(t, n.URL()+route, tok); a.status != c.status || !strings.Contains(a.err, c.want) {
					t.Errorf("%s: %d %q, want %d %q", route, a.status, a.err, c.status, c.want)
				}
			}
		})
	}
	ok := signRaw(fmt.Sprintf(`{"symbols":["aapl"],"exp":%d,"extra":1}`, exp))
	if a := getWith(t, n.URL()+"/api/snapshot?symbols=AAPL", ok); a.status != 200 {
		t.Errorf("a strict token: %d %s", a.status, a.body)
	}
	w.check(t)
}

// TestTokenAudienceAndIssuer guards --auth-audience and --auth-issuer: a
// node that sets them refuses a token without them or with others, with
// 401 naming the claim, and serves one that carries both.
func TestTokenAudienceAndIssuer(t *testing.T) {
	_, n := attackNode(t, func(c *node.Config) {
		c.Transport.AuthSecret, c.Transport.AuthAudience, c.Transport.AuthIssuer = authSecret, "tickstream", "login.example"
	})
	good := mint(t, []string{"*"}, transport.WithAudience("other", "tickstream"), transport.WithIssuer("login.example"))
	w := watch(t, n.URL(), good)
	cases := []struct {
		name, token, want string
	}{
		{"neither", mint(t, []string{"*"}), "audience (aud) is required"},
		{"other audience", mint(t, []string{"*"}, transport.WithAudience("billing"), transport.WithIssuer("login.example")), `audience (aud) does not include "tickstream"`},
		{"no issuer", mint(t, []string{"*"}, transport.WithAudience("tickstream")), "issuer (iss) is required"},
		{"other issuer", mint(t, []string{"*"}, transport.WithAudience("tickstream"), transport.WithIssuer("evil.example")), `issuer (iss) is not "login.example"`},
	}
	for _, c := range cases {
		for _, route := range []string{"/api/snapshot?symbols=AAPL", "/stream?symbols=AAPL", "/api/bars?symbol=AAPL"} {
			if a := getWith(t, n.URL()+route, c.token); a.status != 401 || !strings.Contains(a.err, c.want) {
				t.Errorf("%s, %s: %d %q, want 401 %q", c.name, route, a.status, a.err, c.want)
			}
		}
	}
	if a := getWith(t, n.URL()+"/api/snapshot?symbols=AAPL", good); a.status != 200 {
		t.Errorf("audience and issuer right: %d %s", a.status, a.body)
	}
	w.check(t)
}
