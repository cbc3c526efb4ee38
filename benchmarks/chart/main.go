// Command chart draws the transport benchmark's results as an SVG: server
// CPU per delivered update and p99 change-to-screen delay, per transport and
// load, on log scales.
//
//	go test -run XXX -bench Transports ./benchmarks | tee bench.txt
//	go run ./benchmarks/chart < bench.txt > docs/transports.svg
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

type result struct {
	load, transport string
	metrics         map[string]float64
}

var nameRE = regexp.MustCompile(`^BenchmarkTransports/load=(\w+)/transport=(\S+?)/clients=\d+(-\d+)?$`)

func parse(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		m := nameRE.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		res := result{load: m[1], transport: m[2], metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				res.metrics[f[i+1]] = v
			}
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

func main() {
	rs, err := parse(os.Stdin)
	if err != nil || len(rs) == 0 {
		fmt.Fprintln(os.Stderr, "chart: no BenchmarkTransports results on stdin", err)
		os.Exit(1)
	}
	draw(os.Stdout, rs)
}

var colors = map[string]string{"sse": "#2f80ed", "ws": "#27ae60", "shortpoll": "#eb5757", "longpoll": "#f2994a"}

func colorOf(tr string) string {
	return colors[strings.SplitN(tr, "/", 2)[0]]
}

func draw(w io.Writer, rs []result) {
	var loads []string
	byLoad := map[string][]result{}
	for _, r := range rs {
		if _, ok := byLoad[r.load]; !ok {
			loads = append(loads, r.load)
		}
		byLoad[r.load] = append(byLoad[r.load], r)
	}
	panels := []struct{ metric, title string }{
		{"cpu-us/update", "node CPU per delivered update (µs, log)"},
		{"p99-ms", "p99 change-to-screen delay (ms, log)"},
	}
	const barW, gap, groupGap, panelH, top, left = 14, 2, 30, 260, 40, 70
	n := len(byLoad[loads[0]])
	groupW := n*(barW+gap) + groupGap
	width := max(left+len(loads)*groupW+20, 860)
	height := top + len(panels)*(panelH+70) + 120
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="15" font-weight="bold">tickstream: push vs polling, 1,000 clients × 10 symbols, one 2-core machine</text>`+"\n", left)
	for pi, p := range panels {
		y0 := top + pi*(panelH+70) + 20
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, r := range rs {
			if v := r.metrics[p.metric]; v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		scale := func(v float64) float64 {
			if v <= 0 {
				return 0
			}
			return float64(panelH) * (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		}
		fmt.Fprintf(w, `<text x="%d" y="%d" font-size="13">%s</text>`+"\n", left, y0-6, p.title)
		for d := lo; d <= hi*1.001; d *= 10 {
			y := float64(y0+panelH) - scale(d)
			fmt.Fprintf(w, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left, width-20, y, y, left-6, y+4, d)
		}
		for li, l := range loads {
			gx := left + li*groupW + groupGap/2
			for ti, r := range byLoad[l] {
				v := r.metrics[p.metric]
				hgt := scale(v)
				x := gx + ti*(barW+gap)
				fmt.Fprintf(w, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s %s: %g</title></rect>`+"\n",
					x, float64(y0+panelH)-hgt, barW, hgt, colorOf(r.transport), l, r.transport, v)
			}
			fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle" font-weight="bold">load=%s</text>`+"\n", gx+n*(barW+gap)/2, y0+panelH+16, l)
		}
	}
	// Legend: the transports in order.
	ly := top + len(panels)*(panelH+70) + 10
	for i, r := range byLoad[loads[0]] {
		x := left + (i%3)*260
		y := ly + (i/3)*18
		fmt.Fprintf(w, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%d. %s</text>`+"\n", x, y, colorOf(r.transport), x+16, y+10, i+1, r.transport)
	}
	fmt.Fprintln(w, `</svg>`)
}
