package nodetest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/feed"
)

// Sub is an SSE subscriber that records what it receives and checks, as it
// goes, that no symbol's seq ever goes down (a resync resets that).
type Sub struct {
	mu        sync.Mutex
	Latest    map[string]feed.Tick
	Ticks     []feed.Tick // every tick, in arrival order
	Types     map[string]int
	Violation error
	LastID    string
	gaps      int
	done      chan struct{}
	cancel    context.CancelFunc
}

// Subscribe opens url (a /stream URL) and records its events until the
// test ends.
func Subscribe(tb testing.TB, url string) *Sub {
	tb.Helper()
	return SubscribeWithin(tb, url, 0)
}

// SubscribeWithin is Subscribe failing the test if the node has not
// answered (its headers) within d (0: no bound).
func SubscribeWithin(tb testing.TB, url string, d time.Duration) *Sub {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	c := http.DefaultClient
	if d > 0 {
		c = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: d}}
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if resp.StatusCode != 200 {
		cancel()
		tb.Fatalf("GET %s: %s", url, resp.Status)
	}
	s := &Sub{Latest: map[string]feed.Tick{}, Types: map[string]int{}, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		d := client.NewDecoder(resp.Body)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			s.record(ev)
		}
	}()
	tb.Cleanup(s.Close)
	return s
}

func (s *Sub) record(ev client.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Types[ev.Type]++
	s.LastID = ev.ID
	switch ev.Type {
	case "resync":
		s.Latest = map[string]feed.Tick{}
	case "tick":
		tk, err := feed.DecodeTick(ev.Data)
		if err != nil {
			s.Violation = fmt.Errorf("bad tick %q: %v", ev.Data, err)
			return
		}
		if prev, ok := s.Latest[tk.Sym]; ok && tk.Seq <= prev.Seq && s.Violation == nil {
			s.Violation = fmt.Errorf("%s seq went from %d to %d", tk.Sym, prev.Seq, tk.Seq)
		} else if ok && tk.Seq > prev.Seq+1 {
			s.gaps++
		}
		s.Latest[tk.Sym] = tk
		s.Ticks = append(s.Ticks, tk)
	}
}

// Snapshot returns a copy of the latest seq per symbol and the first
// violation seen.
func (s *Sub) Snapshot() (map[string]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.Latest))
	for k, v := range s.Latest {
		out[k] = v.Seq
	}
	return out, s.Violation
}

// Gaps counts ticks whose seq skipped ahead of the previous one of the same
// symbol without a resync in between.
func (s *Sub) Gaps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gaps
}

// Count returns how many events of type typ arrived.
func (s *Sub) Count(typ string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Types[typ]
}

// Close ends the subscription and waits for its reader.
func (s *Sub) Close() { s.cancel(); <-s.done }

// Cursor returns the id of the last event that had one (a resume cursor).
func (s *Sub) Cursor() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.LastID
}
