package transport

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Route labels of tickstream_http_requests_total beyond the registered
// patterns.
const (
	routeDashboard = "/"     // the dashboard's page and files (a prefix, not a route)
	routeOther     = "other" // any path that matched no route (404)
)

// maxCode bounds the status codes counted one by one; a code at or past it
// is counted as 599.
const maxCode = 600

// requestCounter counts the HTTP requests by route and status:
// tickstream_http_requests_total{route,code}. A request costs a map
// look-up of its route pattern and one atomic add, nothing allocated; the
// series are built at scrape time, for the pairs seen. Safe for concurrent
// use.
type requestCounter struct {
	index  map[string]int  // route pattern -> row; routeDashboard and routeOther included
	names  []string        // row -> route label
	counts []atomic.Uint64 // row*maxCode + code
	codes  []string        // code -> its label
	desc   *prometheus.Desc
}

// newRequestCounter returns a counter for the route patterns of routes
// (GET routes, registered with Server.get).
func newRequestCounter(routes []string) *requestCounter {
	rc := &requestCounter{index: make(map[string]int), desc: prometheus.NewDesc("tickstream_http_requests_total",
		"HTTP requests answered, by route pattern (\"/\" the dashboard's files, \"other\" a path no route matched) and status code; a stream counts once, at its start (200 for SSE, 101 for WebSocket).",
		[]string{"route", "code"}, nil)}
	for _, r := range append(routes, routeDashboard, routeOther) {
		if _, dup := rc.index[r]; !dup {
			rc.index[r] = len(rc.names)
			rc.names = append(rc.names, r)
		}
	}
	rc.counts = make([]atomic.Uint64, len(rc.names)*maxCode)
	rc.codes = make([]string, maxCode)
	for i := range rc.codes {
		rc.codes[i] = strconv.Itoa(i)
	}
	return rc
}

// row returns the row of the route that answered c: its pattern, or
// for a middleware's answer (Fiber's route is then the middleware's
// prefix, "/") the dashboard, or "other" for a 404.
func (rc *requestCounter) row(c *fiber.Ctx) int {
	if p := c.Route().Path; p != routeDashboard {
		if i, ok := rc.index[p]; ok {
			return i
		}
	}
	if c.Response().StatusCode() == fiber.StatusNotFound {
		return rc.index[routeOther]
	}
	return rc.index[routeDashboard]
}

// add counts a request of row answered with code.
func (rc *requestCounter) add(row, code int) {
	code = min(max(code, 0), maxCode-1)
	rc.counts[row*maxCode+code].Add(1)
}

// Describe implements prometheus.Collector.
func (rc *requestCounter) Describe(ch chan<- *prometheus.Desc) { ch <- rc.desc }

// Collect implements prometheus.Collector.
func (rc *requestCounter) Collect(ch chan<- prometheus.Metric) {
	for row, name := range rc.names {
		for code := range maxCode {
			if n := rc.counts[row*maxCode+code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(rc.desc, prometheus.CounterValue, float64(n), name, rc.codes[code])
			}
		}
	}
}

// countRequests is the first middleware: once the request is answered
// (a stream: once it started), it counts it by route and status, and logs
// it at debug. An error a handler returns is answered here, so that its
// status is the one counted.
func (s *Server) countRequests(c *fiber.Ctx) error {
	debug := s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	var start time.Time
	if debug {
		start = time.Now()
	}
	err := c.Next()
	if err != nil {
		if err = s.errorHandler(c, err); err != nil {
			return err
		}
	}
	rc := s.metrics.httpRequests
	row, code := rc.row(c), c.Response().StatusCode()
	rc.add(row, code)
	if debug {
		s.cfg.Logger.Debug("request", "method", c.Method(), "route", rc.names[row], "path", c.Path(),
			"status", code, "client", s.clientIP(c), "duration", time.Since(start))
	}
	return nil
}
