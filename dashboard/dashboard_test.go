package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tickstream/internal/browsertest"
	"tickstream/internal/nodetest"
	"tickstream/node"
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

func (p page) bid(sym string) string { return p.text(`tr[data-sym="` + sym + `"] td:nth-child(2)`) }

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

func TestDashboardInRealBrowser(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.RunSimulator(400, 0)
	addr := nodetest.FreeAddr(t)
	at := func(c *node.Config) { c.Addr = addr }
	n := f.StartNode(at)
	ctx := browsertest.New(t, 1400, 900)
	p := page{t, ctx}
	p.do(chromedp.Navigate(n.URL() + "/"))

	// Prices appear and change, over SSE by default.
	p.waitStatus("live · SSE")
	first := p.waitChange("AAPL", "")
	p.waitChange("AAPL", first)
	if node := p.text("#node"); node != n.Name {
		t.Errorf("node shown %q, want %q", node, n.Name)
	}
	// Exact prices: as the wire sends them, on the tick grid.
	if b := p.bid("EURUSD"); len(b) != len("1.08450") || !strings.HasPrefix(b, "1.0") {
		t.Errorf("EURUSD bid shown as %q", b)
	}

	// Switch to WebSocket: prices keep changing.
	p.do(chromedp.SetValue("#transport", "ws"))
	evalJS[bool](p, `document.getElementById('transport').dispatchEvent(new Event('change'))`)
	p.waitStatus("live · WebSocket")
	p.waitChange("AAPL", p.bid("AAPL"))

	// Add a symbol by typing it: its row shows a price.
	p.do(chromedp.SendKeys("#search", "gbpusd\r"))
	p.waitChange("GBPUSD", "")
	if saved := evalJS[string](p, `localStorage.getItem('tickstream.symbols')`); !strings.Contains(saved, "GBPUSD") {
		t.Errorf("localStorage symbols %q", saved)
	}

	// The node goes away: reconnecting; it comes back: live again.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = n.Shutdown(sctx)
	cancel()
	p.waitStatus("reconnecting")
	f.StartNode(at)
	p.waitStatus("live · WebSocket")
	p.waitChange("AAPL", p.bid("AAPL"))

	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := browsertest.ArtifactPath("dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestDashboardPhoneWidthAndKeyboard checks the page at a phone's width and
// that it can be driven from the keyboard alone.
func TestDashboardPhoneWidthAndKeyboard(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.RunSimulator(300, 0)
	n := f.StartNode(nil)
	ctx := browsertest.New(t, 800, 900)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Navigate(n.URL()+"/"))
	p.waitStatus("live")
	p.waitChange("AAPL", "")
	// Nothing wider than the screen.
	if w := evalJS[int](p, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("page is %dpx wide on a 390px screen", w)
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
	evalJS[bool](p, `document.querySelector('#rows tr').focus(), true`)
	p.do(chromedp.KeyEvent("\x7f"))
	nodetest.CheckFor(t, 5*time.Second, func() error {
		if got := evalJS[int](p, `document.querySelectorAll('#rows tr').length`); got != before-1 {
			return fmt.Errorf("%d rows after Delete, want %d", got, before-1)
		}
		return nil
	})
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(browsertest.ArtifactPath("dashboard-phone.png"), png, 0o644)
}
