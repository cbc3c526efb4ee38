package dashboard_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/browsertest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// panelSyms is the watchlist of the panel tests: the simulator's universe
// of 12 symbols.
const panelSyms = `["AAPL","MSFT","NVDA","TSLA","SPY","QQQ","EURUSD","USDJPY","BTC-USD","ETH-USD","ES","AMZN"]`

// runSimulator publishes the universe of 12 symbols at rate ticks a second
// through a publisher of its own on f's Redis, until the returned stop.
func runSimulator(t *testing.T, f *nodetest.Feed, rate float64) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pub, err := redisstream.NewPublisher(ctx, f.RDB, redisstream.PublisherConfig{
		Universe: simulator.Universe(12), Shards: nodetest.Shards, MaxLen: 10_000, Logger: nodetest.Quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	resume, _ := redisstream.LoadLatest(ctx, f.RDB, nodetest.Shards)
	sim, err := simulator.New(simulator.Config{
		GeneratorConfig: simulator.GeneratorConfig{Rate: rate, Seed: 7, Symbols: 12, Resume: resume},
		Logger:          nodetest.Quiet(),
	}, pub)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			pub.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

// panels reads what the chart and the tape show: stale or not, and the
// feed time (Unix µs) of their newest tick, beside the newest update of
// the watchlist's selected row.
type panels struct {
	ChartStale, TapeStale string
	Chart, Tape, Row      float64
}

func (p page) panels() panels {
	return evalJS[panels](p, `(() => {
		const c = document.getElementById('chart-panel'), t = document.getElementById('tape-panel');
		const q = window.tickstream.state.quotes.get(window.tickstream.state.selected) || {};
		return {ChartStale: c.dataset.stale, TapeStale: t.dataset.stale, Chart: Number(c.dataset.lastTime), Tape: Number(t.dataset.lastTime), Row: q.ts || 0};
	})()`)
}

// TestDashboardPanelsFollowAFeedThatStartsAgain guards that every panel
// shows the same moment after the feed starts again from nothing (Redis
// flushed, the simulator and the node restarted: seqs start again from 1,
// a new epoch): within 10 s of the node answering again the chart's and
// the tape's newest tick are within 5 s of the watchlist's newest update,
// and stay so for 30 s. While the node is down, the chart and the tape are
// marked stale with the watchlist within 3 s.
func TestDashboardPanelsFollowAFeedThatStartsAgain(t *testing.T) {
	f := nodetest.NewFeedN(t, 12)
	// A busy first feed: its seqs are far above what the second reaches
	// during the test, as after hours of trading.
	stopSim := runSimulator(t, f, 1500)
	addr := nodetest.FreeAddr(t)
	cfg := func(c *node.Config) { c.Addr, c.Drain = addr, 100*time.Millisecond }
	n := f.StartNode(cfg)
	ctx := browsertest.New(t, 1440, 900)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(1440, 900), chromedp.Navigate(n.URL()+"/api/symbols"))
	evalJS[bool](p, `localStorage.clear(), localStorage.setItem('tickstream.symbols', '`+panelSyms+`'), localStorage.setItem('tickstream.selected', '"AAPL"'), true`)
	p.do(chromedp.Navigate(n.URL() + "/"))
	p.waitStatus("live")
	together := func(within time.Duration) error {
		s := p.panels()
		switch {
		case s.Row == 0 || s.Chart == 0 || s.Tape == 0:
			return fmt.Errorf("not drawn yet: %+v", s)
		case s.Row-s.Chart > float64(within.Microseconds()) || s.Row-s.Tape > float64(within.Microseconds()):
			return fmt.Errorf("panels behind the watchlist: chart %.1f s, tape %.1f s", (s.Row-s.Chart)/1e6, (s.Row-s.Tape)/1e6)
		}
		return nil
	}
	nodetest.CheckFor(t, 20*time.Second, func() error { return together(5 * time.Second) })

	// The node goes: chart and tape are stale with the rows.
	ctxDown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = n.Shutdown(ctxDown)
	cancel()
	down := time.Now()
	nodetest.CheckFor(t, 3*time.Second, func() error {
		if s := p.panels(); s.ChartStale != "true" || s.TapeStale != "true" || p.staleRows() == 0 {
			return fmt.Errorf("after the node went: chart stale %q, tape stale %q, %d stale rows", s.ChartStale, s.TapeStale, p.staleRows())
		}
		return nil
	})
	t.Logf("chart and tape stale %v after the node went", time.Since(down).Round(time.Millisecond))

	// The feed starts again from nothing, after an outage longer than the
	// 5 s the panels may lag (a frozen panel shows the time before it).
	stopSim()
	p.do(chromedp.Sleep(time.Until(down.Add(8 * time.Second))))
	if err := f.RDB.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	runSimulator(t, f, 150)
	f.StartNode(cfg)
	back := time.Now()
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if s := p.panels(); s.ChartStale != "false" || s.TapeStale != "false" {
			return fmt.Errorf("stale after the node is back: %+v", s)
		}
		return together(5 * time.Second)
	})
	t.Logf("chart and tape with the watchlist %v after the node answered again", time.Since(back).Round(time.Millisecond))
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		if err := together(5 * time.Second); err != nil {
			t.Fatalf("%v after the restart: %v", time.Since(back).Round(time.Second), err)
		}
		p.do(chromedp.Sleep(500 * time.Millisecond))
	}
}

// TestDashboardFlashesAreCalm guards the flashes at the default interval:
// sampled every 100 ms for 20 s, at most a quarter of the price cells are
// lit at once, and a flash lights the changed digits, not the cell. After
// a minute the chart holds at least 30 bars (its default timeframe is 1 s,
// fitted to the plot); screenshots at 1440×900 and 390×844 are left then.
func TestDashboardFlashesAreCalm(t *testing.T) {
	f := nodetest.NewFeedN(t, 12)
	runSimulator(t, f, 400)
	n := f.StartNode(nil)
	ctx := browsertest.New(t, 1440, 900)
	p := page{t, ctx}
	start := time.Now()
	p.do(chromedp.EmulateViewport(1440, 900), chromedp.Navigate(n.URL()+"/api/symbols"))
	evalJS[bool](p, `localStorage.clear(), localStorage.setItem('tickstream.symbols', '`+panelSyms+`'), localStorage.setItem('tickstream.selected', '"BTC-USD"'), true`)
	p.do(chromedp.Navigate(n.URL() + "/"))
	p.waitStatus("live")
	type sample struct{ Lit, Cells, Whole int }
	worst, sum, samples, lit := sample{}, 0, 0, 0
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		s := evalJS[sample](p, `(() => {
			const cells = document.querySelectorAll('#rows td .v i');
			let lit = 0, whole = 0;
			for (const i of cells) if ((i.className === 'fu' || i.className === 'fd') && i.textContent) {
				lit++;
				if (!i.previousSibling.data) whole++;
			}
			return {Lit: lit, Cells: cells.length, Whole: whole};
		})()`)
		if s.Cells > 0 && s.Lit*4 > s.Cells {
			t.Errorf("%d of %d price cells lit at once", s.Lit, s.Cells)
		}
		if s.Lit > worst.Lit {
			worst = s
		}
		sum += s.Lit
		samples++
		if s.Lit > 0 {
			lit++
		}
		p.do(chromedp.Sleep(100 * time.Millisecond))
	}
	t.Logf("%d samples: at most %d of %d price cells lit (%d whole values), %.2f on average; %d samples with a flash", samples, worst.Lit, worst.Cells, worst.Whole, float64(sum)/float64(samples), lit)
	if lit == 0 {
		t.Error("no flash in 20 s of a busy feed")
	}
	time.Sleep(time.Until(start.Add(60 * time.Second))) // the screenshots show a page after a minute of trading
	if bars := evalJS[int](p, `window.tickstream.chartState.count`); bars < 30 {
		t.Errorf("the chart shows %d bars after a minute, want at least 30", bars)
	}
	p.screenshot("dashboard-1440x900.png")
	p.do(chromedp.EmulateViewport(390, 844), chromedp.Sleep(time.Second))
	p.screenshot("dashboard-390x844.png")
}
