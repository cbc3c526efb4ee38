package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// TestReadPaceFollowsSubscribers: a node reads the feed as often as its
// subscribers need (a tenth of the shortest interval granted, within
// --read-coalesce and --read-coalesce-max; --read-idle with nobody), and no
// more often than its pace allows.
func TestReadPaceFollowsSubscribers(t *testing.T) {
	f := nodetest.NewFeed(t)
	runSim(t, f, 2000)
	n := f.StartNode(func(c *node.Config) {
		c.Reader.Coalesce, c.Reader.MaxCoalesce, c.Reader.Idle = 5*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond
	})
	base := n.URL()
	wantPace := func(d time.Duration) {
		t.Helper()
		nodetest.CheckFor(t, 10*time.Second, func() error {
			got, err := nodetest.Metric(base, "tickstream_redis_read_pace_seconds", "")
			if err != nil {
				return err
			}
			if math.Abs(got-d.Seconds()) > 1e-9 {
				return fmt.Errorf("read pace %vs, want %v", got, d)
			}
			return nil
		})
	}
	// With nobody watching, reads are at most one per 200 ms: count them
	// over a second (an upper bound: a loaded machine only reads less).
	wantPace(200 * time.Millisecond)
	reads := func() float64 {
		v, err := nodetest.Metric(base, "tickstream_redis_reads_total", "")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	r0, t0 := reads(), time.Now()
	time.Sleep(time.Second)
	r1, el := reads(), time.Since(t0)
	if max := el.Seconds()/0.200 + 2; r1-r0 > max {
		t.Errorf("%v reads in %v with a 200ms pace (at most %.0f)", r1-r0, el, max)
	}
	if r1 == r0 {
		t.Error("no read in a second of a 2,000 ticks/s feed")
	}

	slow := nodetest.Subscribe(t, base+"/stream?symbols=*&interval=200ms")
	wantPace(20 * time.Millisecond)
	raw := nodetest.Subscribe(t, base+"/stream?symbols=*&mode=raw")
	wantPace(5 * time.Millisecond)
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := raw.Count("tick"); c < 100 {
			return fmt.Errorf("raw subscriber got %d ticks", c)
		}
		return nil
	})
	raw.Close()
	wantPace(20 * time.Millisecond)
	slow.Close()
	wantPace(200 * time.Millisecond)
}

// TestIdleNodeServesNewcomersFresh: a node nobody watches reads its feed
// once per --read-idle (an hour here), yet the first subscriber, poll or
// chart after that spell gets the values published during it: the
// newcomer ends the pause. A poll's or a chart's first answer is already
// fresh (it waits for the read it caused); a subscriber gets the fresh
// value right after its snapshot. Each in turn, with the node idle again between
// them (a poll or a chart counts as a consumer for fanout.LookWindow: a
// fresh node per newcomer).
func TestIdleNodeServesNewcomersFresh(t *testing.T) {
	for _, c := range []struct {
		name  string
		first bool // the first answer must be fresh
		come  func(t *testing.T, base string) func() (uint64, error)
	}{
		{"sse", false, func(t *testing.T, base string) func() (uint64, error) {
			sub := nodetest.Subscribe(t, base+"/stream?symbols=AAPL&interval=1s")
			return func() (uint64, error) {
				got, err := sub.Snapshot()
				return got["AAPL"], err
			}
		}},
		{"short poll", true, func(t *testing.T, base string) func() (uint64, error) {
			return func() (uint64, error) { return polledSeq(base + "/api/snapshot?symbols=AAPL") }
		}},
		{"chart", true, func(t *testing.T, base string) func() (uint64, error) {
			return func() (uint64, error) { // the newest tick the bars include
				var body struct {
					Seq uint64 `json:"seq"`
				}
				b, err := getJSON(base + "/api/bars?symbol=AAPL&tf=5s")
				if err != nil {
					return 0, err
				}
				err = json.Unmarshal(b, &body)
				return body.Seq, err
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := nodetest.NewFeed(t)
			n := f.StartNode(func(c *node.Config) {
				c.Reader.Idle = time.Hour
				c.Hub.FreshWait = 10 * time.Second // ended by the read it causes; long for a loaded machine
			})
			restNode(t, f, n) // the third tick is published during the pause
			f.Tick("AAPL")
			seq := c.come(t, n.URL())
			if c.first {
				got, err := seq()
				if err != nil {
					t.Fatal(err)
				}
				if want := f.Seq("AAPL"); got != want {
					t.Fatalf("first answer: AAPL seq %d, want %d (published while the node rested)", got, want)
				}
				return
			}
			nodetest.CheckFor(t, 10*time.Second, func() error {
				got, err := seq()
				if err != nil {
					return err
				}
				if want := f.Seq("AAPL"); got != want {
					return fmt.Errorf("AAPL seq %d, want %d (published while the node rested)", got, want)
				}
				return nil
			})
		})
	}
}

// polledSeq returns AAPL's seq in a short poll's answer.
func polledSeq(url string) (uint64, error) {
	var body struct {
		Ticks []struct {
			Sym string `json:"sym"`
			Seq uint64 `json:"seq"`
		} `json:"ticks"`
	}
	b, err := getJSON(url)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return 0, fmt.Errorf("%s: %w", b, err)
	}
	for _, tk := range body.Ticks {
		if tk.Sym == "AAPL" {
			return tk.Seq, nil
		}
	}
	return 0, fmt.Errorf("no AAPL in %s", b)
}

// getJSON GETs url and returns its body, or an error for a status not 200.
func getJSON(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	return b, nil
}

// TestRawJoinOnRestingNode: a raw subscriber of every symbol that comes to
// a node resting on a busy feed (20,000 ticks published during its pause)
// starts at the head of the feed, not where the pause left the node: it is
// not owed the whole backlog at once (more than its queue holds: it would
// be told it lags and sent away), and it gets every tick published after.
func TestRawJoinOnRestingNode(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(func(c *node.Config) {
		c.Reader.Idle = time.Hour
		c.Hub.FreshWait = 10 * time.Second // ended by the catch-up; long for a loaded machine
	})
	restNode(t, f, n)
	names := simulator.Universe(0).Names()
	for range 40 {
		f.Tick(names...)
	}
	if got := n.Hub.Stats().Ticks.Load(); got != 2 {
		t.Fatalf("the node read %d ticks during its pause", got)
	}
	sub := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&mode=raw")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := sub.Count("ready"); c == 0 {
			return errors.New("no ready yet")
		}
		return nil
	})
	f.Tick("AAPL", "MSFT")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		got, err := sub.Snapshot()
		if err != nil {
			return err
		}
		if got["AAPL"] != f.Seq("AAPL") || got["MSFT"] != f.Seq("MSFT") {
			return fmt.Errorf("raw subscriber at AAPL %d MSFT %d, want %d %d", got["AAPL"], got["MSFT"], f.Seq("AAPL"), f.Seq("MSFT"))
		}
		return nil
	})
	if c := sub.Count("lagging") + sub.Count("goaway"); c != 0 {
		t.Errorf("the raw subscriber was told it lags or sent away (%d events)", c)
	}
	if c := sub.Count("tick"); c > 2*len(names) {
		t.Errorf("the raw subscriber got %d ticks: owed the backlog of the pause", c)
	}
}

// restNode publishes two ticks of AAPL, each taken by a read of its own:
// the first read pauses at most --read-coalesce-max (the feed's rate is
// not known yet), the second starts the node's idle pause.
func restNode(t *testing.T, f *nodetest.Feed, n *node.Node) {
	t.Helper()
	base := n.Hub.Stats().Ticks.Load()
	for want := base + 1; want <= base+2; want++ {
		f.Tick("AAPL")
		nodetest.CheckFor(t, 10*time.Second, func() error {
			if got := n.Hub.Stats().Ticks.Load(); got < want {
				return fmt.Errorf("the node read %d ticks, want %d", got, want)
			}
			return nil
		})
	}
}

// TestRawResumeOnRestingNode: a raw subscriber that resumes, at a cursor
// another node gave it, on a node resting on the feed (nobody watched it;
// its reader is an hour's pause behind the cursor) resumes exactly: the
// node wakes its reader and waits for it to pass the cursor, instead of
// waiting out ResumeWait (a minute here) for a reader that rests.
func TestRawResumeOnRestingNode(t *testing.T) {
	f := nodetest.NewFeed(t)
	a := f.StartNode(nil)
	b := f.StartNode(func(c *node.Config) {
		c.Reader.Idle = time.Hour
		c.Hub.FreshWait = 10 * time.Second // ended by the catch-up; long for a loaded machine
		// Without the wake, the resume would wait all of this for a reader
		// resting for an hour (past SubscribeWithin's bound below).
		c.Transport.ResumeWait = time.Minute
	})
	restNode(t, f, b)
	onA := nodetest.Subscribe(t, a.URL()+"/stream?symbols=AAPL&mode=raw")
	f.Tick("AAPL") // read by a (a raw subscriber: every 5 ms), not by b (resting)
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if got, _ := onA.Snapshot(); got["AAPL"] != f.Seq("AAPL") {
			return fmt.Errorf("a's subscriber at AAPL %d, want %d", got["AAPL"], f.Seq("AAPL"))
		}
		return nil
	})
	cursor := onA.Cursor()
	onA.Close()
	start := time.Now()
	onB := nodetest.SubscribeWithin(t, b.URL()+"/stream?symbols=AAPL&mode=raw&lastEventId="+url.QueryEscape(cursor), 20*time.Second)
	f.Tick("AAPL")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		got, err := onB.Snapshot()
		if err != nil {
			return err
		}
		if got["AAPL"] != f.Seq("AAPL") {
			return fmt.Errorf("resumed on b at AAPL %d, want %d", got["AAPL"], f.Seq("AAPL"))
		}
		return nil
	})
	if c := onB.Count("resync"); c != 0 {
		t.Errorf("the resume on the resting node answered %d resyncs after %v (its reader was not woken)", c, time.Since(start).Round(time.Millisecond))
	}
	if c := onB.Count("tick"); c != 1 {
		t.Errorf("the resume on the resting node sent %d ticks, want the one after the cursor", c)
	}
}

// TestReadyzStaysUpDuringIdlePause guards readiness at rest: a node nobody
// watches, resting for --read-idle (10 s here; the production Block of 1 s),
// is caught up with Redis, so /readyz keeps answering 200 (a balancer that
// took it out of service would send it nobody and keep it idle for good).
func TestReadyzStaysUpDuringIdlePause(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(func(c *node.Config) { c.Reader.Block, c.Reader.Idle = time.Second, 10*time.Second })
	restNode(t, f, n)
	start := time.Now()
	for time.Since(start) < 6*time.Second {
		if _, err := getJSON(n.URL() + "/readyz"); err != nil {
			t.Fatalf("%v into the idle pause: %v", time.Since(start).Round(time.Millisecond), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
