package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"tickstream/internal/browsertest"
	"tickstream/internal/nodetest"
	"tickstream/simulator"
)

type pageStats struct {
	Rate      float64 `json:"rate"`
	FPS       float64 `json:"fps"`
	RenderP99 float64 `json:"renderP99"`
	LongTasks float64 `json:"longTasks"`
	Status    string  `json:"status"`
}

// BenchmarkDashboard200Symbols loads the dashboard with 200 symbols at a
// 100ms interval (each symbol changes at least 10 times a second in this
// feed), in a real headless Chromium, and reports what the page sustains:
// updates applied per second, frames per second, the p99 time of one
// render pass, and long tasks (main-thread blocks over 50ms). One op is one
// second of watching.
func BenchmarkDashboard200Symbols(b *testing.B) {
	f := nodetest.NewFeedN(b, 200)
	f.RunSimulator(20_000, 200)
	n := f.StartNode(nil)
	ctx := browsertest.New(b, 1400, 900)
	p := page{t: nil, ctx: ctx}
	syms, _ := json.Marshal(simulator.Universe(200).Names())
	run := func(steps ...chromedp.Action[chromedp.Void]) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(cctx, steps...); err != nil {
			b.Fatal(err)
		}
	}
	run(chromedp.Navigate(n.URL() + "/"))
	setup := fmt.Sprintf(`localStorage.setItem('tickstream.symbols', %q); localStorage.setItem('tickstream.interval', '"100ms"'); true`, syms)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](setup)); err != nil {
		b.Fatal(err)
	}
	run(chromedp.Reload())
	_ = p
	read := func() pageStats {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.tickstreamStats)`))
		if err != nil {
			b.Fatal(err)
		}
		var s pageStats
		_ = json.Unmarshal([]byte(v), &s)
		return s
	}
	deadline := time.Now().Add(20 * time.Second)
	for s := read(); s.Status != "live" || s.Rate == 0; s = read() {
		if time.Now().After(deadline) {
			b.Fatalf("page not live: %+v", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // warm up
	start := read()
	var rates, fps, p99 []float64
	b.ResetTimer()
	for i := 0; i < max(b.N, 5); i++ {
		time.Sleep(time.Second)
		s := read()
		rates = append(rates, s.Rate)
		fps = append(fps, s.FPS)
		p99 = append(p99, s.RenderP99)
	}
	b.StopTimer()
	end := read()
	rows, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#rows tr').length`))
	if rows != 200 {
		b.Errorf("%d rows, want 200", rows)
	}
	b.ReportMetric(median(rates), "updates/s")
	b.ReportMetric(median(fps), "fps")
	b.ReportMetric(median(p99), "render-p99-ms")
	b.ReportMetric(end.LongTasks-start.LongTasks, "long-tasks")
	if !strings.HasPrefix(end.Status, "live") {
		b.Errorf("status %q", end.Status)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
