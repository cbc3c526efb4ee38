package transport

import (
	"fmt"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickstream/tickstream/fanout"
)

// metrics are the node's Prometheus metrics. The hub's counters are read at
// scrape time, so the hot path pays nothing for them.
type metrics struct {
	subscribers  *prometheus.GaugeVec
	replayed     prometheus.Counter
	requests     *prometheus.CounterVec
	refused      *prometheus.CounterVec
	acceptErrors *prometheus.CounterVec
	httpRequests *requestCounter // set by registerRequests, once the routes are
	bytesSent    atomic.Uint64   // bytes streaming sockets took (connWriter.sent)
}

func newMetrics(reg *prometheus.Registry, hub *fanout.Hub, s *Server) (*metrics, error) {
	m := &metrics{
		subscribers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tickstream_subscribers", Help: "Open streaming subscribers, by transport.",
		}, []string{"transport"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickstream_replayed_ticks_total", Help: "Ticks replayed from Redis to resuming raw subscribers.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickstream_poll_requests_total", Help: "Polling requests, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickstream_refused_total",
			Help: "Connections, streams, messages and resumes refused by a limit, by reason (every reason the node uses is present from the start; see refusals.go).",
		}, []string{"reason"}),
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickstream_accept_errors_total", Help: "Failed accepts (retried after a short back-off), by errno.",
		}, []string{"reason"}),
	}
	for _, reason := range refusalReasons {
		m.refused.WithLabelValues(reason) // at zero until the first refusal
	}
	st := hub.Stats()
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	cs := []prometheus.Collector{
		m.subscribers, m.replayed, m.requests, m.refused, m.acceptErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_pending_bytes",
			Help: "Bytes written by the node but not yet taken by slow peers' sockets (bounded by --pending-budget)."},
			func() float64 { return float64(s.budget.Used()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_open_connections",
			Help: "Client connections the node holds open (bounded by --max-conns)."},
			func() float64 { return float64(s.openConns()) }),
		counter("tickstream_stream_bytes_written_total", "Bytes written to streaming subscribers' sockets (SSE and WebSocket: head, snapshots, updates, replays, heartbeats, control frames).", m.bytesSent.Load),
		counter("tickstream_hub_ticks_total", "Ticks published into the hub.", st.Ticks.Load),
		counter("tickstream_updates_delivered_total", "Updates written to subscribers.", st.Delivered.Load),
		counter("tickstream_updates_conflated_total", "Updates replaced by a newer value before a subscriber received them.", st.Conflated.Load),
		counter("tickstream_writes_total", "Batches written to subscribers (one write each).", st.Batches.Load),
		counter("tickstream_slow_consumers_total", "Subscribers that became slow and were conflated harder.", st.Lagging.Load),
		counter("tickstream_slow_consumer_drops_total", "Subscribers dropped for staying slow past the deadline.", st.SlowDrops.Load),
		counter("tickstream_raw_overflows_total", "Raw subscribers closed because their queue overflowed.", st.Overflows.Load),
		counter("tickstream_stale_ticks_total", "Ticks dropped as older than the symbol's current value.", st.Stale.Load),
		counter("tickstream_resyncs_total", "Times the hub's state was rebuilt from the source.", st.Resets.Load),
		counter("tickstream_seq_gaps_total", "Ticks whose seq skipped ahead: ticks lost upstream (raw subscribers get a resync).", st.Gaps.Load),
		counter("tickstream_peers_gone_total", "Quiet subscribers released because their peer had closed the connection.", st.PeersGone.Load),
		&lagCollector{st: st, desc: prometheus.NewDesc("tickstream_delivery_lag_seconds",
			"Time from a tick's feed timestamp to its write to a subscriber.", nil, nil)},
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// lagCollector exposes the hub's lag histogram.
type lagCollector struct {
	st   *fanout.Stats
	desc *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

// Collect implements prometheus.Collector.
func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	b, n, sum := l.st.LagHistogram()
	ch <- prometheus.MustNewConstHistogram(l.desc, n, sum, b)
}

// registerRequests registers tickstream_http_requests_total for the GET
// routes of app (once they are all registered).
func (m *metrics) registerRequests(reg *prometheus.Registry, app *fiber.App) error {
	var paths []string
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodGet {
			paths = append(paths, r.Path)
		}
	}
	m.httpRequests = newRequestCounter(paths)
	if err := reg.Register(m.httpRequests); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}
