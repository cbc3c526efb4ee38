package transport_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

type pollBody struct {
	Token  string            `json:"token"`
	Resync bool              `json:"resync"`
	Ticks  []json.RawMessage `json:"ticks"`
	Error  string            `json:"error"`
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, pollBody) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var pb pollBody
	if len(b) > 0 {
		if err := json.Unmarshal(b, &pb); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return resp, pb
}

// fetchPoll is get for a goroutine other than the test's: it returns its
// error instead of failing the test.
func fetchPoll(url string) (pollBody, error) {
	var pb pollBody
	resp, err := http.Get(url)
	if err != nil {
		return pb, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return pb, err
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &pb); err != nil {
			return pb, fmt.Errorf("%s: %w", b, err)
		}
	}
	return pb, nil
}

// waitLatest waits until the node holds seq (or newer) as sym's latest
// value: the tick has gone through Redis, the reader and the hub.
func waitLatest(t *testing.T, n *node.Node, sym string, seq uint64) {
	t.Helper()
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if u := n.Hub.Latest([]string{sym})[0]; u == nil || u.Seq < seq {
			return fmt.Errorf("%s: node has %v, want seq %d", sym, u, seq)
		}
		return nil
	})
}

func seqsOf(t *testing.T, raw []json.RawMessage) map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range raw {
		tk, err := feed.DecodeTick(r)
		if err != nil {
			t.Fatal(err)
		}
		out[tk.Sym] = tk.Seq
	}
	return out
}

func TestShortPollETag(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(nil)
	url := n.URL() + "/api/snapshot?symbols=AAPL,MSFT,SPY"
	resp, body := get(t, url, nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" || len(body.Ticks) != 2 {
		t.Fatalf("%s etag %q body %+v", resp.Status, etag, body)
	}
	if resp, _ := get(t, url, map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 {
		t.Errorf("unchanged: %s, want 304", resp.Status)
	}
	// Another symbol changing does not change this answer (once the node
	// has that change).
	f.Tick("EURUSD")
	waitLatest(t, n, "EURUSD", f.Seq("EURUSD"))
	if resp, _ := get(t, url, map[string]string{"If-None-Match": etag}); resp.StatusCode != 304 {
		t.Errorf("after an unrelated tick: %s, want 304", resp.Status)
	}
	f.Tick("MSFT")
	nodetest.CheckFor(t, 5*time.Second, func() error {
		resp, body := get(t, url, map[string]string{"If-None-Match": etag})
		if resp.StatusCode != 200 || seqsOf(t, body.Ticks)["MSFT"] != 2 {
			return errNotYet
		}
		return nil
	})
	if resp, body := get(t, n.URL()+"/api/snapshot?symbols=NOPE", nil); resp.StatusCode != 400 || body.Error == "" {
		t.Errorf("bad symbols: %s %+v", resp.Status, body)
	}
}

func TestLongPoll(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(func(c *node.Config) { c.Transport.PollTimeout = 2 * time.Second })
	base := n.URL() + "/api/poll?symbols=AAPL,MSFT"
	// No token: the snapshot, at once.
	_, first := get(t, base, nil)
	if len(first.Ticks) != 2 || first.Token == "" {
		t.Fatalf("%+v", first)
	}
	// With the token: waits for a change, then sends only what changed.
	type answer struct {
		b   pollBody
		err error
	}
	done := make(chan answer, 1)
	go func() {
		b, err := fetchPoll(base + "&after=" + first.Token)
		done <- answer{b, err}
	}()
	// Once the poll waits in the node (its subscription is open), a change
	// of a symbol it does not watch, applied by the node, does not answer it.
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if n.Hub.Subscribers() != 1 {
			return errNotYet
		}
		return nil
	})
	f.Tick("EURUSD")
	waitLatest(t, n, "EURUSD", f.Seq("EURUSD"))
	select {
	case a := <-done:
		t.Fatalf("answered before any change of its symbols: %+v %v", a.b, a.err)
	default:
	}
	f.Tick("MSFT")
	var next pollBody
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatal(a.err)
		}
		next = a.b
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not answer the change")
	}
	if got := seqsOf(t, next.Ticks); len(got) != 1 || got["MSFT"] != 2 || next.Token == first.Token {
		t.Fatalf("%v token %q", got, next.Token)
	}
	// Nothing newer: 204 after the timeout, with the same token.
	resp, _ := get(t, base+"&after="+next.Token+"&timeout=300ms", nil)
	if resp.StatusCode != 204 || resp.Header.Get("X-Poll-Token") != next.Token {
		t.Errorf("timeout: %s token %q", resp.Status, resp.Header.Get("X-Poll-Token"))
	}
	// A token from another epoch answers at once with a resync.
	_, rb := get(t, base+"&after=old~1.1", nil)
	if !rb.Resync || len(rb.Ticks) != 2 {
		t.Errorf("other epoch: %+v", rb)
	}
	for _, bad := range []string{"garbage", "x~1", "x~1.zz!"} {
		if resp, b := get(t, base+"&after="+bad, nil); resp.StatusCode != 400 || b.Error == "" {
			t.Errorf("after=%s: %s %+v", bad, resp.Status, b)
		}
	}
	if n.Hub.Subscribers() != 0 {
		t.Errorf("%d long-poll subscribers left behind", n.Hub.Subscribers())
	}
}

var errNotYet = errors.New("not yet")

// TestPollSnapshotCarriesSessionReference: /api/snapshot and a poll
// without a token answer ticks with prev_close and open (when known); a
// long poll's changes are the ticks as sent live.
func TestPollSnapshotCarriesSessionReference(t *testing.T) {
	f, n := refFeed(t)
	raw := func(b []json.RawMessage) [][]byte {
		out := make([][]byte, len(b))
		for i := range b {
			out[i] = b[i]
		}
		return out
	}
	resp, snap := get(t, n.URL()+"/api/snapshot?symbols=AAPL,MSFT", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("snapshot: %s", resp.Status)
	}
	checkRefs(t, "/api/snapshot", raw(snap.Ticks))
	_, first := get(t, n.URL()+"/api/poll?symbols=AAPL,MSFT", nil)
	checkRefs(t, "/api/poll", raw(first.Ticks))
	f.Tick("AAPL")
	_, next := get(t, n.URL()+"/api/poll?symbols=AAPL,MSFT&after="+first.Token, nil)
	if len(next.Ticks) != 1 || seqsOf(t, next.Ticks)["AAPL"] != 2 {
		t.Fatalf("long poll answered %+v, want AAPL's seq 2", next)
	}
	if b := string(next.Ticks[0]); strings.Contains(b, `"prev_close"`) || strings.Contains(b, `"open"`) {
		t.Errorf("a long poll's change is not a snapshot: %s", b)
	}
}

// TestLongPollNothingNewerAnswers204AtTimeout guards the long poll's
// answer when nothing newer than its token exists: 204 No Content, with
// the same token in X-Poll-Token, once PollTimeout has passed. The hub's
// heartbeats, which keep idle streams alive, do not end it, nor does a
// change of a symbol it does not watch; a stream subscriber beside it
// keeps receiving.
func TestLongPollNothingNewerAnswers204AtTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(func(c *node.Config) {
		c.Hub.Heartbeat = 100 * time.Millisecond // twenty heartbeats per poll
		c.Hub.MaxInterval = 50 * time.Millisecond
		c.Transport.PollTimeout = timeout
	})
	// An idle stream of the polled symbol: its heartbeats are the poll's.
	var mu sync.Mutex
	var beats []time.Time
	openRaw(t, n.URL()+"/stream?symbols=MSFT", func(line string) {
		if line == ": hb" {
			mu.Lock()
			beats = append(beats, time.Now())
			mu.Unlock()
		}
	})
	normal := openStream(t, n.URL()+"/stream?symbols=AAPL&interval=0", "")
	normal.until("ready")

	_, first := get(t, n.URL()+"/api/poll?symbols=MSFT", nil)
	type answer struct {
		status int
		token  string
		body   string
		at     time.Time
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		resp, err := http.Get(n.URL() + "/api/poll?symbols=MSFT&after=" + first.Token)
		if err != nil {
			done <- answer{body: err.Error(), at: time.Now()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{resp.StatusCode, resp.Header.Get("X-Poll-Token"), string(b), time.Now()}
	}()
	nodetest.CheckFor(t, 10*time.Second, func() error { // the poll waits in the node
		if n.Hub.Subscribers() != 3 {
			return errNotYet
		}
		return nil
	})
	f.Tick("AAPL")
	if ev := normal.next(); ev.Type != "tick" || decodeTick(t, ev).Sym != "AAPL" {
		t.Fatalf("normal subscriber got %s %s", ev.Type, ev.Data)
	}
	var a answer
	select {
	case a = <-done:
	case <-time.After(timeout + 20*time.Second):
		t.Fatal("the long poll did not answer")
	}
	if a.status != http.StatusNoContent || a.token != first.Token || a.body != "" {
		t.Errorf("long poll with nothing newer: %d token %q body %q, want 204 with token %q", a.status, a.token, a.body, first.Token)
	}
	if took := a.at.Sub(start); took < timeout {
		t.Errorf("answered after %v, before the poll timeout %v", took, timeout)
	}
	mu.Lock()
	during := 0
	for _, b := range beats {
		if b.After(start) && b.Before(a.at) {
			during++
		}
	}
	mu.Unlock()
	if during == 0 {
		t.Errorf("no heartbeat on the idle stream while the poll was held: the test proves nothing")
	}
	t.Logf("204 after %v; %d heartbeats meanwhile", a.at.Sub(start).Round(time.Millisecond), during)
}

// openRaw opens an SSE stream and calls on with each line it reads (the
// comments included, which the event decoder skips) until the test ends.
func openRaw(t *testing.T, url string, on func(line string)) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			on(sc.Text())
		}
	}()
	t.Cleanup(func() { resp.Body.Close(); <-done })
}
