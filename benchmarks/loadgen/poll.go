package loadgen

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// NewHTTPClient returns a keep-alive client for n pollers whose bytes are
// counted into st.
func NewHTTPClient(n int, st *Stats) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         dialer(&st.Bytes),
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
}

// ShortPoller asks GET /api/snapshot every Every, with If-None-Match.
type ShortPoller struct {
	Client *http.Client
	URL    string // http://host:port/api/snapshot?symbols=…
	Every  time.Duration
	Track  *Tracker
	Stats  *Stats
}

// Run polls until ctx is done, starting at a random phase of Every.
func (p *ShortPoller) Run(ctx context.Context) {
	etag := ""
	t := time.NewTimer(rand.N(p.Every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.Track.Flush()
			return
		case <-t.C:
		}
		t.Reset(p.Every)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := p.Client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				p.Stats.Fail(err)
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		now := time.Now()
		p.Stats.Requests.Add(1)
		if resp.StatusCode == http.StatusNotModified {
			p.Stats.Empty.Add(1)
			continue
		}
		etag = resp.Header.Get("ETag")
		before := p.Track.total
		EachTick(body, func(sym []byte, seq uint64, _ int64) { p.Track.Tick(sym, seq, now) })
		if p.Track.total == before {
			p.Stats.Empty.Add(1)
		}
		p.Track.Flush() // one answer is one batch
	}
}

// LongPoller loops on GET /api/poll?…&after=TOKEN.
type LongPoller struct {
	Client *http.Client
	URL    string // http://host:port/api/poll?symbols=…
	Track  *Tracker
	Stats  *Stats
}

// Run polls until ctx is done.
func (p *LongPoller) Run(ctx context.Context) {
	token := ""
	for ctx.Err() == nil {
		u := p.URL
		if token != "" {
			u += "&after=" + token
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := p.Client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				p.Stats.Fail(err)
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		now := time.Now()
		p.Stats.Requests.Add(1)
		if t := resp.Header.Get("X-Poll-Token"); t != "" {
			token = t
		}
		if resp.StatusCode == http.StatusNoContent || !bytes.Contains(body, keySym) {
			p.Stats.Empty.Add(1)
			continue
		}
		EachTick(body, func(sym []byte, seq uint64, _ int64) { p.Track.Tick(sym, seq, now) })
		p.Track.Flush()
	}
	p.Track.Flush()
}
