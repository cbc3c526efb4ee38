package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
)

// TestRecordBounds guards what a registry record must be to count: a
// plain http(s) URL on an allowed host, a valid name and pool, figures
// within bounds, at most MaxRecordBytes; anything else is refused with
// ErrBadRecord, ErrBadURL, ErrBadName or ErrBadPool. The split by
// transport is clamped to the total.
func TestRecordBounds(t *testing.T) {
	rec := func(name, url, extra string) string {
		return fmt.Sprintf(`{"name":%q,"url":%q,"subscribers":10,"sse":6,"ws":4,"raw":1%s}`, name, url, extra)
	}
	allow := []string{"10.0.0.1", "Node.Example"}
	for _, tc := range []struct {
		name, key, rec string
		want           error
	}{
		{"valid", "n", rec("n", "http://10.0.0.1:8080", ""), nil},
		{"valid https, path, host case", "n", rec("n", "https://node.example/prefix", ""), nil},
		{"empty pool reads as default", "n", rec("n", "http://10.0.0.1", `,"pool":""`), nil},
		{"negative subscribers", "n", rec("n", "http://10.0.0.1", `,"subscribers":-1000000`), ErrBadRecord},
		{"implausible subscribers", "n", rec("n", "http://10.0.0.1", `,"subscribers":20000000`), ErrBadRecord},
		{"negative sse", "n", rec("n", "http://10.0.0.1", `,"sse":-1`), ErrBadRecord},
		{"sse above subscribers: clamped", "n", rec("n", "http://10.0.0.1", `,"sse":11`), nil},
		{"negative in flight", "n", rec("n", "http://10.0.0.1", `,"in_flight":-1`), ErrBadRecord},
		{"negative rate", "n", rec("n", "http://10.0.0.1", `,"writes_per_sec":-1`), ErrBadRecord},
		{"too long", "n", rec("n", "http://10.0.0.1", `,"x":"`+strings.Repeat("x", MaxRecordBytes)+`"`), ErrBadRecord},
		{"not json", "n", `{"name":`, ErrBadRecord},
		{"under another key", "m", rec("n", "http://10.0.0.1", ""), ErrBadRecord},
		{"bad pool", "n", rec("n", "http://10.0.0.1", `,"pool":"a{b}"`), ErrBadPool},
		{"host not allowed", "n", rec("n", "http://attacker.example", ""), ErrBadURL},
		{"user info", "n", rec("n", "http://u:p@10.0.0.1", ""), ErrBadURL},
		{"query", "n", rec("n", "http://10.0.0.1/?a=b", ""), ErrBadURL},
		{"fragment", "n", rec("n", "http://10.0.0.1/#f", ""), ErrBadURL},
		{"scheme", "n", rec("n", "javascript:alert(1)", ""), ErrBadURL},
		{"no host", "n", rec("n", "http:///x", ""), ErrBadURL},
		{"relative", "n", rec("n", "/x", ""), ErrBadURL},
		{"no url", "n", rec("n", "", ""), ErrBadURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := decodeLoad(tc.key, tc.rec, allow)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("decodeLoad = %v, want %v", err, tc.want)
			}
			if err == nil && (l.SSE > l.Subscribers || l.Pool != DefaultPool) {
				t.Errorf("decodeLoad = %+v: sse above subscribers, or pool not %q", l, DefaultPool)
			}
		})
	}
	for _, name := range []string{"", "a b", "a{b}", "a\nb", strings.Repeat("a", 201)} {
		if checkName(name) == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	for _, name := range []string{"a", "host-1.example:8080", "[::1]:8080", "n_2@x"} {
		if err := checkName(name); err != nil {
			t.Errorf("name %q refused: %v", name, err)
		}
	}
}

// episodeLog records when a balancer starts and stops shedding.
type episodeLog struct {
	mu     sync.Mutex
	starts []time.Time
	stops  []time.Time
}

func (h *episodeLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *episodeLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case strings.HasPrefix(r.Message, "above the cluster's mean"):
		h.starts = append(h.starts, r.Time)
	case strings.HasPrefix(r.Message, "at the cluster's mean"):
		h.stops = append(h.stops, r.Time)
	}
	return nil
}
func (h *episodeLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *episodeLog) WithGroup(string) slog.Handler      { return h }

// TestBalancerRestsAfterEveryEpisode guards the rest after a shedding
// episode: however it ends, the node starts no new one before Rest has
// passed, even when an excess is back at once.
func TestBalancerRestsAfterEveryEpisode(t *testing.T) {
	rdb := redistest.Start(t).Client()
	const rest = 1500 * time.Millisecond
	cfg := Config{Interval: 50 * time.Millisecond, TTL: 3 * time.Second, Step: 10 * time.Millisecond, Rate: 500, MaxFraction: 1,
		Tau: 100 * time.Millisecond, Settle: 100 * time.Millisecond, Rest: rest}
	c := &fakeCluster{delay: 20 * time.Millisecond}
	c.add(t, rdb, "b", 0, cfg) // first: its cleanup runs after a's (a's SendAway adds to c.wg)
	log := &episodeLog{}
	a := &fakeNode{c: c, name: "a", subs: 200}
	ba, err := NewBalancer(NewRegistry(rdb, cfg.TTL), "a", "http://a", a.counts, a, cfg, slog.New(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ba.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; c.wg.Wait() })
	c.mu.Lock()
	c.nodes = append(c.nodes, a)
	c.mu.Unlock()
	// The first episode ends; at once 100 more subscribers land on a.
	wait.For(t, 30*time.Second, func() error {
		log.mu.Lock()
		defer log.mu.Unlock()
		if len(log.stops) == 0 {
			return fmt.Errorf("a has not stopped shedding (%d starts)", len(log.starts))
		}
		return nil
	})
	a.mu.Lock()
	a.subs += 100
	a.mu.Unlock()
	wait.For(t, 30*time.Second, func() error {
		log.mu.Lock()
		defer log.mu.Unlock()
		if len(log.starts) < 2 {
			return fmt.Errorf("a started %d episodes", len(log.starts))
		}
		return nil
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	if gap := log.starts[1].Sub(log.stops[0]); gap < rest {
		t.Errorf("a started shedding again %v after it stopped, before its rest of %v", gap, rest)
	} else {
		t.Logf("a started shedding again %v after it stopped (rest %v)", gap.Round(time.Millisecond), rest)
	}
}
