package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/browsertest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// page reads the dashboard through the DOM, as a user sees it.
type page struct {
	t   *testing.T
	ctx context.Context
}

func evalJS[T any](p page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("%s: %v", js, err)
	}
	return v
}

func (p page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatal(err)
	}
}

func (p page) text(sel string) string {
	return evalJS[string](p, fmt.Sprintf(`(document.querySelector(%q)||{}).textContent||""`, sel))
}

func (p page) cell(sym string, col int) string {
	return p.text(fmt.Sprintf(`tr[data-sym="%s"] td:nth-child(%d)`, sym, col))
}

func (p page) bid(sym string) string { return p.cell(sym, 2) }

func (p page) status() string { return p.text("#conn-text") }

// waitChange waits until sym's bid shows a value different from before.
func (p page) waitChange(sym, before string) string {
	p.t.Helper()
	var now string
	nodetest.CheckFor(p.t, 15*time.Second, func() error {
		now = p.bid(sym)
		if now == "" || now == "–" || now == before {
			return fmt.Errorf("%s bid %q, status %q", sym, now, p.status())
		}
		return nil
	})
	return now
}

func (p page) waitStatus(prefix string) {
	p.t.Helper()
	nodetest.CheckFor(p.t, 20*time.Second, func() error {
		if s := p.status(); !strings.HasPrefix(s, prefix) {
			return fmt.Errorf("status %q, want %q…", s, prefix)
		}
		return nil
	})
}

func (p page) waitJS(timeout time.Duration, js string) {
	p.t.Helper()
	nodetest.CheckFor(p.t, timeout, func() error {
		if !evalJS[bool](p, js) {
			return fmt.Errorf("not yet: %s", js)
		}
		return nil
	})
}

func (p page) staleRows() int {
	return evalJS[int](p, `document.querySelectorAll('#rows tr[data-stale="true"]').length`)
}

func (p page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatal(err)
	}
	path := browsertest.ArtifactPath(name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// consoleErrors collects the page's console errors and uncaught exceptions.
func consoleErrors(t *testing.T, ctx context.Context) func() []string {
	t.Helper()
	var mu sync.Mutex
	var errs []string
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("console.error %v", e.Args))
				mu.Unlock()
			}
		case *runtime.EventExceptionThrown:
			mu.Lock()
			errs = append(errs, fmt.Sprintf("exception: %s %v", e.ExceptionDetails.Text, e.ExceptionDetails.Exception))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), errs...) }
}

// publishHistory publishes what a running feed would have left in the
// streams over the last secs seconds: a tick of each symbol every half
// second, with past (retained) timestamps, walking one tick size at a time.
func publishHistory(t *testing.T, f *nodetest.Feed, secs int, syms ...string) {
	t.Helper()
	uni := simulator.Universe(0)
	now := time.Now()
	var batch []feed.Tick
	for _, sym := range syms {
		s, _ := uni.Lookup(sym)
		px := s.Open
		var vol int64
		hi, lo := px, px
		for i := range 2 * secs {
			if i%3 == 2 {
				px = px.Sub(s.TickSize)
			} else {
				px = px.Add(s.TickSize)
			}
			vol += 100
			hi, lo = decimal.Max(hi, px), decimal.Min(lo, px)
			batch = append(batch, feed.Tick{Sym: sym, Seq: uint64(i + 1), Bid: px, Ask: px.Add(s.TickSize), Last: px, Size: 100,
				TS: now.Add(time.Duration(i-2*secs) * 500 * time.Millisecond).UnixMicro(), Vol: vol, High: hi, Low: lo})
		}
	}
	if err := f.Pub.Publish(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardHistoryStalenessChange: a fresh page charts the feed's
// history; every row is live while the node is, and dimmed within 2 s of
// the node going away; change is against the previous close, the same
// after a reload; SSE and WebSocket both work; no console errors.
func TestDashboardHistoryStalenessChange(t *testing.T) {
	f := nodetest.NewFeed(t)
	publishHistory(t, f, 60, "AAPL", "MSFT")
	f.RunSimulator(400, 0)
	addr := nodetest.FreeAddr(t)
	at := func(c *node.Config) { c.Addr = addr }
	n := f.StartNode(at)
	<-n.BarsSeeded()
	ctx := browsertest.New(t, 1440, 900)
	errs := consoleErrors(t, ctx)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(1440, 900), chromedp.Navigate(n.URL()+"/"))

	// Prices appear and change, over SSE by default.
	p.waitStatus("live · SSE")
	first := p.waitChange("AAPL", "")
	p.waitChange("AAPL", first)
	if node := p.text("#node"); node != n.Name {
		t.Errorf("node shown %q, want %q", node, n.Name)
	}
	if b := p.bid("EURUSD"); len(b) != len("1.08450") || !strings.HasPrefix(b, "1.0") {
		t.Errorf("EURUSD bid shown as %q", b)
	}
	// A clean laptop layout: nothing scrolls sideways, no header is cut.
	if o := evalJS[string](p, `[...document.querySelectorAll('.watch, body')].filter(e => e.scrollWidth > e.clientWidth).map(e => e.className || e.tagName).join(',')`); o != "" {
		t.Errorf("wider than the window: %s", o)
	}
	if cut := evalJS[string](p, `[...document.querySelectorAll('#heads th button')].filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.textContent).join(',')`); cut != "" {
		t.Errorf("clipped headers: %s", cut)
	}
	// History: the selected symbol's chart holds a minute of 5 s bars.
	p.waitJS(15*time.Second, `(window.tickstreamStats.bars||0) >= 8`)
	if sel := p.text("#chart-sym"); sel != "AAPL" {
		t.Errorf("selected %q", sel)
	}
	// Live: no row is stale.
	for range 3 {
		if n := p.staleRows(); n != 0 {
			t.Fatalf("%d stale rows while live", n)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Change is against the previous close, exactly; never "-0.00%".
	checkChange := func() (string, string) {
		t.Helper()
		for range 20 {
			last, chg, pct := p.cell("AAPL", 4), p.cell("AAPL", 5), p.cell("AAPL", 6)
			pc, _ := simulator.Universe(0).Lookup("AAPL")
			want := decimal.RequireFromString(last).Sub(pc.PrevClose)
			if got, err := decimal.NewFromString(chg); err == nil && got.Equal(want) && pct != "-0.00%" {
				return chg, pct
			}
			time.Sleep(50 * time.Millisecond) // a tick between the reads
		}
		t.Fatalf("AAPL change %q %q not last − prev close", p.cell("AAPL", 5), p.cell("AAPL", 6))
		return "", ""
	}
	chg1, pct1 := checkChange()
	if strings.Contains(evalJS[string](p, `document.getElementById('rows').textContent`), "-0.00%") {
		t.Error(`"-0.00%" shown`)
	}
	p.do(chromedp.Reload())
	p.waitStatus("live")
	p.waitChange("AAPL", "")
	chg2, pct2 := checkChange()
	t.Logf("AAPL change before reload %s %s, after %s %s", chg1, pct1, chg2, pct2)
	if d := decimal.RequireFromString(chg1).Sub(decimal.RequireFromString(chg2)).Abs(); d.GreaterThan(decimal.RequireFromString("1")) {
		t.Errorf("change jumped across the reload: %s → %s", chg1, chg2)
	}
	p.waitJS(15*time.Second, `(window.tickstreamStats.bars||0) >= 8`)

	// Switch to WebSocket: prices keep changing.
	p.do(chromedp.SetValue("#transport", "ws"))
	evalJS[bool](p, `document.getElementById('transport').dispatchEvent(new Event('change'))`)
	p.waitStatus("live · WebSocket")
	p.waitChange("AAPL", p.bid("AAPL"))
	// A few seconds of live data (rates, sparklines), then the picture.
	p.waitJS(15*time.Second, `window.tickstreamStats.rate > 0 && document.querySelector('tr[data-sym="AAPL"] polyline').getAttribute('points') !== ''`)
	p.screenshot("dashboard.png")

	// The node goes away: every row is stale (and dimmed) within 2 s.
	liveColor := evalJS[string](p, `getComputedStyle(document.querySelector('tr[data-sym="AAPL"] td:nth-child(2)')).color`)
	start := time.Now()
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(sctx)
	}()
	rowsN := evalJS[int](p, `document.querySelectorAll('#rows tr').length`)
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if s := p.staleRows(); s != rowsN {
			return fmt.Errorf("%d of %d rows stale", s, rowsN)
		}
		return nil
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("rows stale %v after the node went away, want ≤ 2 s", d)
	} else {
		t.Logf("every row stale %v after the node went away", d.Round(time.Millisecond))
	}
	if c := evalJS[string](p, `getComputedStyle(document.querySelector('tr[data-sym="AAPL"] td:nth-child(2)')).color`); c == liveColor {
		t.Errorf("stale bid keeps its live colour %s", c)
	}
	if tip := evalJS[string](p, `document.querySelector('tr[data-sym="AAPL"] td').title`); !strings.HasPrefix(tip, "stale") {
		t.Errorf("stale tooltip %q", tip)
	}
	p.screenshot("dashboard-stale.png")
	// It comes back: live again, no stale row.
	f.StartNode(at)
	p.waitStatus("live · WebSocket")
	p.waitChange("AAPL", p.bid("AAPL"))
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if s := p.staleRows(); s != 0 {
			return fmt.Errorf("%d rows still stale", s)
		}
		return nil
	})
	if e := errs(); len(e) > 0 {
		t.Errorf("console errors: %q", e)
	}
}

// TestDashboardSortAlertsTape drives sorting, price alerts and the time &
// sales panel with the mouse and the keyboard.
func TestDashboardSortAlertsTape(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.RunSimulator(400, 0)
	n := f.StartNode(nil)
	ctx := browsertest.New(t, 1440, 900)
	errs := consoleErrors(t, ctx)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(1440, 900), chromedp.Navigate(n.URL()+"/"))
	p.waitStatus("live")
	p.waitChange("AAPL", "")

	order := func() []string {
		return strings.Split(evalJS[string](p, `[...document.querySelectorAll('#rows tr')].map(r => r.dataset.sym).join(',')`), ",")
	}
	// Mouse: a click on "chg %" sorts by it, highest first.
	p.do(chromedp.Click(`th[data-key="pct"] button`))
	if s := evalJS[string](p, `document.querySelector('th[data-key="pct"]').getAttribute('aria-sort')`); s != "descending" {
		t.Errorf("aria-sort %q", s)
	}
	pcts := evalJS[[]float64](p, `[...document.querySelectorAll('#rows tr')].map(r => parseFloat(r.children[5].textContent)).filter(x => !isNaN(x))`)
	for i := 1; i < len(pcts); i++ {
		if pcts[i] > pcts[i-1]+0.011 { // a tick may land between sort and read
			t.Errorf("not sorted by chg %% desc: %v", pcts)
			break
		}
	}
	// Keyboard: Enter on the "symbol" header sorts by name.
	evalJS[bool](p, `document.querySelector('th[data-key="sym"] button').focus(), true`)
	p.do(chromedp.KeyEvent("\r"))
	nodetest.CheckFor(t, 5*time.Second, func() error {
		o := order()
		for i := 1; i < len(o); i++ {
			if o[i] < o[i-1] {
				return fmt.Errorf("not sorted by symbol: %v", o)
			}
		}
		return nil
	})

	// Time & sales: a click on MSFT's row shows its ticks, newest first.
	p.do(chromedp.Click(`tr[data-sym="MSFT"] td:nth-child(3)`))
	p.waitJS(10*time.Second, `document.getElementById('tape-sym').textContent === 'MSFT' && document.querySelectorAll('#tape-rows tr').length >= 3`)
	firstSeq := evalJS[string](p, `document.querySelector('#tape-rows tr').dataset.seq`)
	p.waitJS(10*time.Second, fmt.Sprintf(`document.querySelector('#tape-rows tr').dataset.seq !== %q`, firstSeq))
	// Keyboard: ArrowDown then Enter charts the next row.
	evalJS[bool](p, `document.querySelector('tr[data-sym="MSFT"]').focus(), true`)
	next := evalJS[string](p, `document.querySelector('tr[data-sym="MSFT"]').nextElementSibling.dataset.sym`)
	p.do(chromedp.KeyEvent(kb.ArrowDown), chromedp.KeyEvent("\r"))
	p.waitJS(10*time.Second, fmt.Sprintf(`document.getElementById('chart-sym').textContent === %q && document.getElementById('tape-sym').textContent === %q`, next, next))

	// Alerts, keyboard: "a" on AAPL's row prefills its price; a price just
	// under it, "above", Enter: the alert fires on a coming tick.
	evalJS[bool](p, `document.querySelector('tr[data-sym="AAPL"]').focus(), true`)
	p.do(chromedp.KeyEvent("a"))
	p.waitJS(5*time.Second, `document.activeElement.id === 'alert-price' && document.getElementById('alert-sym').value === 'AAPL'`)
	// (As with "/", CDP types the "a" into the field the keydown focused,
	// over the prefilled price, which a real browser would not: clear it.)
	last := decimal.RequireFromString(p.cell("AAPL", 4))
	evalJS[bool](p, `document.getElementById('alert-price').value = '', true`)
	p.do(chromedp.KeyEvent(last.Sub(decimal.RequireFromString("5")).StringFixed(2) + "\r"))
	if saved := evalJS[string](p, `localStorage.getItem('tickstream.alerts')`); !strings.Contains(saved, `"AAPL"`) || !strings.Contains(saved, `"above"`) {
		t.Fatalf("alerts saved %s", saved)
	}
	p.waitJS(10*time.Second, `[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('AAPL'))`)
	p.waitJS(5*time.Second, `document.querySelector('#alert-list li.fired') !== null`)
	// Mouse: symbol, "below", a price above the market, click set: fires.
	evalJS[bool](p, `document.getElementById('alert-sym').value = '', document.getElementById('alert-op').value = 'below', true`)
	p.do(
		chromedp.Click("#alert-sym"), chromedp.SendKeys("#alert-sym", "msft"),
		chromedp.Click("#alert-price"), chromedp.SendKeys("#alert-price", "99999"),
		chromedp.Click("#alert-form button"),
	)
	p.waitJS(10*time.Second, `[...document.querySelectorAll('.toast')].some(e => e.textContent.includes('MSFT'))`)
	// Kept across a reload.
	p.do(chromedp.Reload())
	p.waitStatus("live")
	if got := evalJS[int](p, `document.querySelectorAll('#alert-list li').length`); got != 2 {
		t.Errorf("%d alerts after reload, want 2", got)
	}
	// A bad price is refused where it was typed.
	evalJS[bool](p, `document.getElementById('alert-price').value = 'abc', true`)
	p.do(chromedp.Click("#alert-form button"))
	if got := evalJS[int](p, `JSON.parse(localStorage.getItem('tickstream.alerts')).length`); got != 2 {
		t.Errorf("%d alerts after a bad price", got)
	}
	if e := errs(); len(e) > 0 {
		t.Errorf("console errors: %q", e)
	}
}

// TestDashboardPhoneWidthAndKeyboard checks the page at a phone's width and
// that it can be driven from the keyboard alone.
func TestDashboardPhoneWidthAndKeyboard(t *testing.T) {
	f := nodetest.NewFeed(t)
	publishHistory(t, f, 60, "AAPL")
	f.RunSimulator(300, 0)
	n := f.StartNode(nil)
	<-n.BarsSeeded()
	ctx := browsertest.New(t, 800, 900)
	errs := consoleErrors(t, ctx)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Navigate(n.URL()+"/"))
	p.waitStatus("live")
	p.waitChange("AAPL", "")
	// Nothing wider than the screen, no header label cut.
	if w := evalJS[int](p, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("page is %dpx wide on a 390px screen", w)
	}
	if cut := evalJS[string](p, `[...document.querySelectorAll('#heads th')].filter(th => th.offsetWidth > 0 && th.scrollWidth > th.clientWidth + 1).map(th => th.textContent).join(',')`); cut != "" {
		t.Errorf("clipped headers: %s", cut)
	}
	// "/" focuses the search; typing a symbol and Enter adds it.
	p.do(chromedp.KeyEvent("/"))
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if evalJS[string](p, `document.activeElement.id`) != "search" {
			return fmt.Errorf("search not focused")
		}
		return nil
	})
	// (CDP sends the "/" character separately from its keydown, which a
	// real browser would have suppressed: clear it.)
	evalJS[bool](p, `document.getElementById('search').value = '', true`)
	p.do(chromedp.KeyEvent("gbpusd\r"))
	p.waitChange("GBPUSD", "")
	// Rows are focusable; Delete removes the focused one.
	before := evalJS[int](p, `document.querySelectorAll('#rows tr').length`)
	evalJS[bool](p, `document.querySelector('#rows tr:last-child').focus(), true`)
	p.do(chromedp.KeyEvent("\x7f"))
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if got := evalJS[int](p, `document.querySelectorAll('#rows tr').length`); got != before-1 {
			return fmt.Errorf("%d rows after Delete, want %d", got, before-1)
		}
		return nil
	})
	p.waitJS(15*time.Second, `(window.tickstreamStats.bars||0) >= 8`)
	evalJS[bool](p, `window.scrollTo(0, 0), true`)
	p.screenshot("dashboard-phone.png")
	if e := errs(); len(e) > 0 {
		t.Errorf("console errors: %q", e)
	}
}

// TestDashboardPerSymbolStaleness: while the connection is live, a symbol
// that stops updating goes stale after the threshold (its tooltip says how
// old it is) and comes back with its next tick; a trading one never does.
func TestDashboardPerSymbolStaleness(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(nil)
	ctx := browsertest.New(t, 1440, 900)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(1440, 900), chromedp.Navigate(n.URL()+"/api/symbols"))
	evalJS[bool](p, `localStorage.setItem('tickstream.symbols', '["AAPL","MSFT"]'), localStorage.setItem('tickstream.staleAfterMs', '2500'), localStorage.setItem('tickstream.interval', '"0"'), true`)
	p.do(chromedp.Navigate(n.URL() + "/"))
	p.waitStatus("live")
	stop, msft := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() { // AAPL trades; MSFT is quiet until asked (the feed is not goroutine-safe: one publisher)
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-msft:
				f.Tick("MSFT")
			case <-time.After(200 * time.Millisecond):
				f.Tick("AAPL")
			}
		}
	}()
	defer func() { close(stop); <-done }()
	stale := func(sym string) string {
		return evalJS[string](p, fmt.Sprintf(`document.querySelector('tr[data-sym="%s"]').dataset.stale + '|' + document.querySelector('tr[data-sym="%s"] td').title`, sym, sym))
	}
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if s := stale("MSFT"); !strings.HasPrefix(s, "true|stale: no update for") {
			return fmt.Errorf("MSFT %q", s)
		}
		return nil
	})
	if s := stale("AAPL"); !strings.HasPrefix(s, "false|live") || !strings.HasPrefix(p.status(), "live") {
		t.Errorf("trading AAPL %q, status %q", s, p.status())
	}
	t.Logf("quiet MSFT: %s", stale("MSFT"))
	msft <- struct{}{}
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if s := stale("MSFT"); !strings.HasPrefix(s, "false|") {
			return fmt.Errorf("MSFT still %q after a tick", s)
		}
		return nil
	})
}
