package transport

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metricsContentType is the Prometheus text format's media type.
var metricsContentType = string(expfmt.NewFormat(expfmt.TypeTextPlain))

// exposition is the node's metrics in the Prometheus text format, gathered
// at most once per every however many scrapes arrive. A scrape waits for
// the first gather that starts after it arrived (at once when the last
// one started over every ago), and every scrape waiting for that gather
// shares its bytes. Safe for concurrent use.
type exposition struct {
	gatherer prometheus.Gatherer
	every    time.Duration // negative: a gather per scrape
	gathers  atomic.Uint64

	mu   sync.Mutex
	last time.Time    // when the latest gather started
	next *gatherRound // the gather the next scrapes share, not started yet
}

// gatherRound is one gather and the scrapes that wait for it.
type gatherRound struct {
	done chan struct{} // closed once body and err are set
	body []byte
	err  error
}

// get returns the metrics gathered after the call began. It blocks for up
// to every (the wait for the next gather) plus the gather itself; ctx
// only ends the wait of a scrape that shares another's gather.
func (e *exposition) get(ctx context.Context) ([]byte, error) {
	if e.every < 0 {
		return e.gather()
	}
	e.mu.Lock()
	if r := e.next; r != nil {
		e.mu.Unlock()
		select {
		case <-r.done:
			return r.body, r.err
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for metrics: %w", ctx.Err())
		}
	}
	// This scrape leads the next gather: others arriving before it starts
	// share it.
	r := &gatherRound{done: make(chan struct{})}
	e.next = r
	wait := time.Until(e.last.Add(e.every))
	e.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		<-t.C
	}
	e.mu.Lock()
	e.next, e.last = nil, time.Now()
	e.mu.Unlock()
	r.body, r.err = e.gather()
	close(r.done)
	return r.body, r.err
}

// gather collects and encodes every metric once.
func (e *exposition) gather() ([]byte, error) {
	e.gathers.Add(1)
	mfs, err := e.gatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(32 << 10)
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return nil, fmt.Errorf("encode metrics: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// handleMetrics answers GET /metrics on the client port (without
// Config.MetricsApart).
func (s *Server) handleMetrics(c *fiber.Ctx) error {
	body, err := s.expo.get(c.Context())
	if err != nil {
		return c.Status(fiber.StatusInternalServerError).JSON(apiError{Error: err.Error()})
	}
	c.Set(fiber.HeaderContentType, metricsContentType)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Send(body)
}

// MetricsHandler returns the node's metrics as a net/http handler, for a
// listener of their own (Config.MetricsApart). Scrapes share gathers as on
// the client port.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := s.expo.get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", metricsContentType)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
}
