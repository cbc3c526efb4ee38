package nodetest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// Metric sums the samples of a Prometheus metric on the node at base (its
// /metrics), over the label sets that contain sel ("" for all). A failed
// scrape is an error, so callers polling with wait.For can retry.
func Metric(base, name, sel string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || !strings.Contains(line, sel) {
			continue
		}
		if rest := line[len(name):]; rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue // a longer name with this prefix
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}
