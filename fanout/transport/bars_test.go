package transport_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	brotli "github.com/molecule-man/go-brrr"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/dashboard"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/nodetest"
)

type barsBody struct {
	Symbol string `json:"symbol"`
	TF     string `json:"tf"`
	Bars   []struct {
		T          int64
		O, H, L, C string
		V          int64
	} `json:"bars"`
	Trades []struct {
		TS    int64
		Seq   uint64
		Price string
		Size  int64
		Side  string
	} `json:"trades"`
	Seq   uint64 `json:"seq"`
	Error string `json:"error"`
	Param string `json:"param"`
}

func getBars(t *testing.T, url string) (int, barsBody) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body barsBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return resp.StatusCode, body
}

// publishPast publishes one AAPL tick a second for the last secs seconds,
// with their past feed timestamps: history as a running feed leaves it.
func publishPast(t *testing.T, f *nodetest.Feed, secs int) {
	t.Helper()
	now := time.Now()
	var ts []feed.Tick
	for i := range secs {
		p := decimal.NewFromInt(int64(10_000 + i)).Mul(decimal.RequireFromString("0.01"))
		ts = append(ts, feed.Tick{Sym: "AAPL", Seq: uint64(i + 1), Bid: p, Ask: p.Add(decimal.RequireFromString("0.01")), Last: p,
			Size: 100, TS: now.Add(time.Duration(i-secs) * time.Second).UnixMicro()})
	}
	if err := f.Pub.Publish(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
}

func TestBarsFromRetainedStreamsThenLive(t *testing.T) {
	f := nodetest.NewFeed(t)
	publishPast(t, f, 60)
	n := f.StartNode(nil)
	select {
	case <-n.BarsSeeded():
	case <-time.After(10 * time.Second):
		t.Fatal("bars not seeded")
	}
	code, b := getBars(t, n.URL()+"/api/bars?symbol=aapl&tf=5s&limit=100")
	if code != 200 || b.Symbol != "AAPL" || b.TF != "5s" || len(b.Bars) < 12 || len(b.Bars) > 13 {
		t.Fatalf("%d %+v", code, b)
	}
	for i, bar := range b.Bars {
		if bar.T%5 != 0 || (i > 0 && bar.T != b.Bars[i-1].T+5) || bar.V <= 0 || len(bar.O) != len("100.00") {
			t.Errorf("bar %d: %+v", i, bar)
		}
	}
	if last := b.Bars[len(b.Bars)-1]; last.C != "100.59" || b.Seq != 60 {
		t.Errorf("newest close %s seq %d, want 100.59 and 60", last.C, b.Seq)
	}
	if _, m := getBars(t, n.URL()+"/api/bars?symbol=AAPL&tf=1m"); len(m.Bars) < 1 || len(m.Bars) > 2 {
		t.Errorf("1m bars %+v", m.Bars)
	}
	// Live ticks continue the newest bars (the feed's seq goes on from 60).
	p := decimal.RequireFromString("123.45")
	live := feed.Tick{Sym: "AAPL", Seq: 61, Bid: p, Ask: p.Add(decimal.RequireFromString("0.01")), Last: p.Add(decimal.RequireFromString("0.01")), Size: 7, TS: time.Now().UnixMicro()}
	if err := f.Pub.Publish(context.Background(), []feed.Tick{live}); err != nil {
		t.Fatal(err)
	}
	nodetest.CheckFor(t, 10*time.Second, func() error {
		_, b := getBars(t, n.URL()+"/api/bars?symbol=AAPL&tf=5m&limit=1")
		if len(b.Bars) != 1 || b.Bars[0].C != "123.46" {
			return fmt.Errorf("5m bars %+v", b.Bars)
		}
		return nil
	})
	_, tr := getBars(t, n.URL()+"/api/trades?symbol=AAPL&limit=3")
	if len(tr.Trades) != 3 || tr.Trades[2].Seq != 61 || tr.Trades[2].Price != "123.46" || tr.Trades[2].Side != "buy" || tr.Trades[2].Size != 7 {
		t.Errorf("trades %+v", tr.Trades)
	}
	for _, c := range []struct{ query, param string }{
		{"tf=5s", "symbol"}, {"symbol=NOPE&tf=5s", "symbol"}, {"symbol=a%20b", "symbol"},
		{"symbol=AAPL&tf=1h", "tf"}, {"symbol=AAPL&limit=0", "limit"}, {"symbol=AAPL&limit=x", "limit"},
		{"symbol=AAPL&limit=100000", "limit"},
	} {
		code, b := getBars(t, n.URL()+"/api/bars?"+c.query)
		if code != 400 || b.Param != c.param || !strings.Contains(b.Error, c.param) {
			t.Errorf("%s: %d %+v, want 400 naming %s", c.query, code, b, c.param)
		}
	}
	if code, b := getBars(t, n.URL()+"/api/trades?symbol=AAPL&limit=-1"); code != 400 || b.Param != "limit" {
		t.Errorf("trades limit -1: %d %+v", code, b)
	}
	// Every node serves the same session reference, from the universe the
	// simulator stored in Redis, and the same bars.
	n2 := f.StartNode(nil)
	<-n2.BarsSeeded()
	ref := func(url string) string {
		resp, err := http.Get(url + "/api/symbols")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var u struct {
			Symbols []struct {
				Sym       string `json:"sym"`
				PrevClose string `json:"prev_close"`
				Open      string `json:"open"`
			} `json:"symbols"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
			t.Fatal(err)
		}
		for _, s := range u.Symbols {
			if s.Sym == "AAPL" {
				return s.PrevClose + "/" + s.Open
			}
		}
		return ""
	}
	if a, b := ref(n.URL()), ref(n2.URL()); a != b || a == "/" || strings.HasPrefix(a, "/") {
		t.Errorf("AAPL prev_close/open %q on one node, %q on the other", a, b)
	}
	_, b1 := getBars(t, n.URL()+"/api/bars?symbol=AAPL&tf=5s")
	_, b2 := getBars(t, n2.URL()+"/api/bars?symbol=AAPL&tf=5s")
	if fmt.Sprint(b1.Bars) != fmt.Sprint(b2.Bars) {
		t.Errorf("bars differ between nodes:\n%v\n%v", b1.Bars, b2.Bars)
	}
}

func TestStaticAssetsCompressedWithETags(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(nil)
	raw, err := io.ReadAll(must(dashboard.FS().Open("app.js")))
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", n.URL()+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	tags := map[string]bool{}
	for _, c := range []struct{ ae, enc string }{{"gzip, deflate, br, zstd", "br"}, {"gzip", "gzip"}, {"br;q=0, gzip;q=0.8", "gzip"}, {"", ""}, {"identity", ""}} {
		resp, body := fetch("/app.js", "Accept-Encoding", c.ae)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != c.enc || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("%q: %d, encoding %q, vary %q", c.ae, resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
		}
		var plain []byte
		switch c.enc {
		case "br":
			plain, err = brotli.Decompress(body)
		case "gzip":
			var zr *gzip.Reader
			if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
				plain, err = io.ReadAll(zr)
			}
		default:
			plain = body
		}
		if err != nil || !bytes.Equal(plain, raw) {
			t.Errorf("%q: body differs from app.js (%v)", c.ae, err)
		}
		if c.enc != "" && len(body) > len(raw)/2 {
			t.Errorf("%s: %d bytes of %d", c.enc, len(body), len(raw))
		}
		etag := resp.Header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%q: etag %q, cache %q", c.ae, etag, resp.Header.Get("Cache-Control"))
		}
		tags[c.enc+etag] = true
		if r, b := fetch("/app.js", "Accept-Encoding", c.ae, "If-None-Match", etag); r.StatusCode != 304 || len(b) != 0 {
			t.Errorf("%q: If-None-Match answered %d with %d bytes", c.ae, r.StatusCode, len(b))
		}
	}
	if len(tags) != 3 {
		t.Errorf("one strong ETag per representation: %v", tags)
	}
	resp, _ := fetch("/vendor/lightweight-charts.standalone.production.js?v=5.2.1", "Accept-Encoding", "br")
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=31536000") || resp.Header.Get("Content-Encoding") != "br" {
		t.Errorf("vendor: %d %q %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Encoding"))
	}
	if resp, body := fetch("/", "Accept-Encoding", "gzip"); resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || len(body) == 0 {
		t.Errorf("/: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := fetch("/nope.js"); resp.StatusCode != 404 {
		t.Errorf("/nope.js: %d", resp.StatusCode)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
