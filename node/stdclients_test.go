package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickstream/tickstream/internal/esnode"
	"github.com/tickstream/tickstream/internal/nodetest"
)

// Standard clients: clients nobody here wrote, as a third party uses them.
// Chromium's native EventSource and the npm eventsource package follow the
// HTML standard (a non-200 answer is fatal, a network error or the end of
// the stream is retried after retry:); Chromium's WebSocket has no
// reconnect of its own, so the page gives it the usual few lines (reconnect
// after a close, resume from the last cursor).

// stdClient is what one standard client went through.
type stdClient struct {
	name, kind string
	raw        bool
	syms       []string
	nodes      []string // the node of each hello, in order
	latest     map[string]uint64
	ticks      int
	goaways    int
	errors     int // EventSource errors (each retried unless fatal)
	closes     map[int]int
	fatal      string // why the client gave up for good
	violation  string // a raw gap or duplicate, or a seq that went down
	firstTick  time.Time
	lastTick   time.Time
}

// stdClients records every standard client's events.
type stdClients struct {
	mu sync.Mutex
	m  map[string]*stdClient
}

func newStdClients() *stdClients { return &stdClients{m: map[string]*stdClient{}} }

func (cs *stdClients) add(name, kind string, raw bool, syms []string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.m[name] = &stdClient{name: name, kind: kind, raw: raw, syms: syms, latest: map[string]uint64{}, closes: map[int]int{}}
}

// record takes one event (esnode's shape; the page reports the same).
func (cs *stdClients) record(ev esnode.Event) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[ev.Client]
	if c == nil {
		return
	}
	switch ev.Type {
	case "hello":
		var h struct {
			Node string `json:"node"`
		}
		_ = json.Unmarshal([]byte(ev.Data), &h)
		c.nodes = append(c.nodes, h.Node)
	case "resync":
		c.latest = map[string]uint64{}
	case "goaway":
		c.goaways++
	case "error":
		c.errors++
		if ev.ReadyState == esnode.Closed && c.fatal == "" {
			c.fatal = fmt.Sprintf("EventSource closed for good after an error (code %d %s)", ev.Code, ev.Message)
		}
	case "close":
		c.closes[ev.Code]++
	case "tick":
		var tk struct {
			Sym string `json:"sym"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &tk); err != nil {
			c.violation = fmt.Sprintf("bad tick %q", ev.Data)
			return
		}
		prev, ok := c.latest[tk.Sym]
		switch {
		case !ok:
		case c.raw && tk.Seq != prev+1 && c.violation == "":
			c.violation = fmt.Sprintf("raw %s seq %d after %d (on %v)", tk.Sym, tk.Seq, prev, c.nodes)
		case tk.Seq < prev && c.violation == "":
			c.violation = fmt.Sprintf("%s seq went from %d to %d (on %v)", tk.Sym, prev, tk.Seq, c.nodes)
		}
		c.latest[tk.Sym] = tk.Seq
		c.ticks++
		c.lastTick = time.Now()
		if c.firstTick.IsZero() {
			c.firstTick = c.lastTick
		}
	}
}

// each runs f on every client under the lock, in name order, and returns
// the first error.
func (cs *stdClients) each(f func(c *stdClient) error) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	names := make([]string, 0, len(cs.m))
	for n := range cs.m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := f(cs.m[n]); err != nil {
			return fmt.Errorf("%s (%s): %w", n, cs.m[n].kind, err)
		}
	}
	return nil
}

// healthy fails on a client that gave up or saw a raw gap.
func (c *stdClient) healthy() error {
	if c.fatal != "" {
		return fmt.Errorf("gave up: %s", c.fatal)
	}
	if c.violation != "" {
		return fmt.Errorf("%s", c.violation)
	}
	return nil
}

// onNode returns the node of the client's last hello.
func (c *stdClient) onNode() string {
	if len(c.nodes) == 0 {
		return ""
	}
	return c.nodes[len(c.nodes)-1]
}

// summary reports the clients by kind: how many, goaways, errors,
// reconnections (hellos beyond the first), WebSocket close codes.
func (cs *stdClients) summary() string {
	type agg struct{ n, goaways, errors, hellos int }
	by := map[string]*agg{}
	closes := map[int]int{}
	_ = cs.each(func(c *stdClient) error {
		k := c.kind
		if c.raw {
			k += "/raw"
		}
		a := by[k]
		if a == nil {
			a = &agg{}
			by[k] = a
		}
		a.n++
		a.goaways += c.goaways
		a.errors += c.errors
		a.hellos += len(c.nodes)
		for code, n := range c.closes {
			closes[code] += n
		}
		return nil
	})
	var parts []string
	for k, a := range by {
		parts = append(parts, fmt.Sprintf("%s×%d: goaway %d, errors %d, hellos %d", k, a.n, a.goaways, a.errors, a.hellos))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ") + fmt.Sprintf("; ws close codes %v", closes)
}

// waitAll waits until every client holds a hello from a node that ok
// accepts, as its latest, and ticks after since.
func (cs *stdClients) waitAll(t *testing.T, timeout time.Duration, since time.Time, ok func(node string) bool) {
	t.Helper()
	nodetest.CheckFor(t, timeout, func() error {
		return cs.each(func(c *stdClient) error {
			if err := c.healthy(); err != nil {
				t.Fatal(err)
			}
			if !ok(c.onNode()) {
				return fmt.Errorf("on node %q (hellos %v)", c.onNode(), c.nodes)
			}
			if !c.lastTick.After(since) {
				return fmt.Errorf("no tick since %s (hellos %v)", since.Format("15:04:05.000"), c.nodes)
			}
			return nil
		})
	})
}

// converge waits until every client holds the last published seq of each
// of its symbols.
func (cs *stdClients) converge(t *testing.T, want func(sym string) uint64) {
	t.Helper()
	nodetest.CheckFor(t, 20*time.Second, func() error {
		return cs.each(func(c *stdClient) error {
			if err := c.healthy(); err != nil {
				t.Fatal(err)
			}
			for _, s := range c.syms {
				if c.latest[s] != want(s) {
					return fmt.Errorf("%s at %d, want %d", s, c.latest[s], want(s))
				}
			}
			return nil
		})
	})
}

// pageClients is the script a test page runs: window.__ts opens
// EventSources and WebSockets and queues what they report for take().
const pageClients = `(() => {
  if (window.__ts) return true;
  const q = [];
  window.__ts = {
    take() { return JSON.stringify(q.splice(0, q.length)); },
    es(name, url) {
      const es = new EventSource(url);
      for (const t of ['hello', 'ready', 'tick', 'goaway', 'resync', 'lagging']) {
        es.addEventListener(t, (e) => q.push({ c: name, t, d: e.data, id: e.lastEventId, rs: es.readyState }));
      }
      es.onerror = () => q.push({ c: name, t: 'error', rs: es.readyState });
    },
    ws(name, url, symbols, raw) {
      let cursor = '';
      const open = () => {
        const ws = new WebSocket(url);
        ws.onopen = () => ws.send(JSON.stringify(raw ? { op: 'subscribe', symbols, mode: 'raw', cursor } : { op: 'subscribe', symbols, interval: '50ms' }));
        ws.onmessage = (e) => {
          const m = JSON.parse(e.data);
          switch (m.type) {
            case 'tick': if (m.cursor) cursor = m.cursor; for (const t of m.data) q.push({ c: name, t: 'tick', d: JSON.stringify(t) }); break;
            case 'hello': q.push({ c: name, t: 'hello', d: JSON.stringify({ node: m.node }) }); break;
            case 'ready': if (m.cursor) cursor = m.cursor; q.push({ c: name, t: 'ready' }); break;
            default: q.push({ c: name, t: m.type, d: e.data });
          }
        };
        ws.onclose = (e) => { q.push({ c: name, t: 'close', code: e.code }); setTimeout(open, 100 + Math.random() * 400); };
      };
      open();
    },
  };
  return true;
})()`

// startChromiumClients opens, in a page of browser at base+page, nES
// EventSources and nWS WebSockets, half of each raw, on syms, and feeds
// their events to cs until the test ends.
func startChromiumClients(t *testing.T, browser context.Context, cs *stdClients, base, page string, nES, nWS int, syms []string) {
	t.Helper()
	run := func(js string) string {
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%.60s: %v", js, err)
		}
		return v
	}
	ctx, cancel := context.WithTimeout(browser, 20*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+page)); err != nil {
		t.Fatal(err)
	}
	cancel()
	run(pageClients + ` && ''`)
	list := strings.Join(syms, ",")
	symsJS, _ := json.Marshal(syms)
	for i := range nES {
		raw := i%2 == 0
		name := fmt.Sprintf("chromium-es-%d", i)
		q := "/stream?symbols=" + list + "&interval=50ms"
		if raw {
			q = "/stream?symbols=" + list + "&mode=raw"
		}
		cs.add(name, "chromium-es", raw, syms)
		run(fmt.Sprintf(`__ts.es(%q, %q), ''`, name, q))
	}
	wsBase := strings.Replace(base, "http", "ws", 1) + "/ws"
	for i := range nWS {
		raw := i%2 == 0
		name := fmt.Sprintf("chromium-ws-%d", i)
		cs.add(name, "chromium-ws", raw, syms)
		run(fmt.Sprintf(`__ts.ws(%q, %q, %s, %v), ''`, name, wsBase, symsJS, raw))
	}
	pctx, stop := context.WithCancel(browser)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for pctx.Err() == nil {
			c, cancel := context.WithTimeout(pctx, 5*time.Second)
			v, err := chromedp.Run(c, chromedp.Evaluate[string](`__ts.take()`))
			cancel()
			if err == nil {
				var evs []esnode.Event
				_ = json.Unmarshal([]byte(v), &evs)
				for _, ev := range evs {
					cs.record(ev)
				}
			}
			select {
			case <-pctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stop(); <-done })
}

// startNPMClients opens n EventSources with the npm eventsource package,
// half of them raw, at base, and feeds their events to cs.
func startNPMClients(t *testing.T, cs *stdClients, base string, n int, syms []string) {
	t.Helper()
	list := strings.Join(syms, ",")
	var clients []esnode.Client
	for i := range n {
		raw := i%2 == 0
		name := fmt.Sprintf("npm-es-%d", i)
		u := base + "/stream?symbols=" + list + "&interval=50ms"
		if raw {
			u = base + "/stream?symbols=" + list + "&mode=raw"
		}
		cs.add(name, "npm-eventsource", raw, syms)
		clients = append(clients, esnode.Client{Name: name, URL: u})
	}
	esnode.Start(t, clients, cs.record)
}

// publisher publishes a tick of every symbol each period from one
// goroutine until stop, which returns the last seqs.
func publisher(t *testing.T, f *nodetest.Feed, period time.Duration, syms ...string) (stop func() map[string]uint64) {
	t.Helper()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tk.C:
				f.Tick(syms...)
			}
		}
	}()
	var once sync.Once
	last := map[string]uint64{}
	stop = func() map[string]uint64 {
		once.Do(func() {
			close(quit)
			<-done
			for _, s := range syms {
				last[s] = f.Seq(s)
			}
		})
		return last
	}
	t.Cleanup(func() { stop() })
	return stop
}
