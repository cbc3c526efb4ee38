package dashboard_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/browsertest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

// TestDashboardWithAuth guards the page on a node with auth on: opened
// with ?access_token=, its prices stream, its chart loads the bars and its
// tape the trades, each request carrying the token; no console errors.
func TestDashboardWithAuth(t *testing.T) {
	secret := []byte("s3cret")
	f := nodetest.NewFeed(t)
	publishHistory(t, f, 60, "AAPL", "MSFT")
	f.RunSimulator(400, 0)
	n := f.StartNode(func(c *node.Config) { c.Transport.AuthSecret = secret })
	<-n.BarsSeeded()
	tok, err := transport.MintToken(secret, []string{"*"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx := browsertest.New(t, 1440, 900)
	errs := consoleErrors(t, ctx)
	p := page{t, ctx}
	p.do(chromedp.EmulateViewport(1440, 900), chromedp.Navigate(n.URL()+"/?access_token="+tok))
	p.waitStatus("live · SSE")
	first := p.waitChange("AAPL", "")
	p.waitChange("AAPL", first)
	p.waitJS(15*time.Second, `(window.tickstreamStats.bars||0) >= 8`)
	p.do(chromedp.Click(`tr[data-sym="MSFT"] td:nth-child(3)`))
	p.waitJS(10*time.Second, `document.getElementById('tape-sym').textContent === 'MSFT' && document.querySelectorAll('#tape-rows tr').length >= 3`)
	if e := errs(); len(e) > 0 {
		t.Errorf("console errors: %v", e)
	}
}
