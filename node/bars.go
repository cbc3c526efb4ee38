package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/bars"
	"github.com/tickstream/tickstream/feed/redisstream"
)

// Seeding bounds: how far back and how many ticks a node reads from the
// retained streams to rebuild its charts at start (the bytes: Config's
// SeedMaxBytes).
const (
	seedWindow = 24 * time.Hour
	seedMax    = 400_000
)

// barSink tees what the reader reads to the hub and to the bar builder.
// Reset (the reader built the state from Redis: at start, or after Redis
// lost its history) clears the bars and seeds them again from the retained
// streams in a goroutine of its own, merged in when done while live ticks
// keep arriving. Close stops a seeding in progress and waits for it.
type barSink struct {
	hub  *fanout.Hub
	bars *bars.Builder
	rdb  redisstream.Client
	uni  *feed.Universe
	log  *slog.Logger
	// maxBytes bounds the bytes one seeding reads (ReadBackLimits).
	maxBytes int64
	// Counters: seedings that stopped at maxBytes (in some shard), and
	// the bytes the last seeding read.
	capped    atomic.Uint64
	seedBytes atomic.Int64

	mu     sync.Mutex
	cancel context.CancelFunc // the seeding in progress
	closed bool
	wg     sync.WaitGroup
	seeded chan struct{} // closed when the first seeding ends
	once   sync.Once
}

var (
	_ redisstream.CatchUpSink = (*barSink)(nil)
	_ redisstream.BehindSink  = (*barSink)(nil)
)

func newBarSink(hub *fanout.Hub, rdb redisstream.Client, uni *feed.Universe, maxBytes int64, log *slog.Logger) (*barSink, error) {
	b, err := bars.New(bars.Config{Universe: uni})
	if err != nil {
		return nil, fmt.Errorf("chart bars: %w", err)
	}
	return &barSink{hub: hub, bars: b, rdb: rdb, uni: uni, maxBytes: maxBytes, log: log, seeded: make(chan struct{})}, nil
}

// Publish implements redisstream.Sink.
func (s *barSink) Publish(batch []*feed.Update, cursor string) {
	s.hub.Publish(batch, cursor)
	s.bars.Add(batch)
}

// CaughtUp implements redisstream.CatchUpSink.
func (s *barSink) CaughtUp() { s.hub.CaughtUp() }

// Resting implements redisstream.CatchUpSink.
func (s *barSink) Resting() { s.hub.Resting() }

// RawBehind implements redisstream.BehindSink.
func (s *barSink) RawBehind() bool { return s.hub.RawBehind() }

// Reset implements redisstream.Sink.
func (s *barSink) Reset(latest []*feed.Update, cursor string) {
	s.hub.Reset(latest, cursor)
	gen := s.bars.Clear()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	if s.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.once.Do(func() { close(s.seeded) })
		s.seed(ctx, cursor, gen)
	}()
}

// seed reads the retained streams up to cursor into a builder of its own
// and merges it into the live one.
func (s *barSink) seed(ctx context.Context, cursor string, gen uint64) {
	start := time.Now()
	old, err := bars.New(bars.Config{Universe: s.uni})
	if err != nil {
		return
	}
	lim := redisstream.ReadBackLimits{Window: seedWindow, MaxTicks: seedMax, MaxBytes: s.maxBytes}
	st, err := redisstream.ReadBack(ctx, s.rdb, s.uni, cursor, lim, old.Add)
	s.seedBytes.Store(st.Bytes)
	if st.Capped > 0 {
		s.capped.Add(1)
		s.log.Warn("seeding the charts stopped at --seed-max-bytes in some shards; their bars start later",
			"shards", st.Capped, "bytes", st.Bytes, "max_bytes", s.maxBytes)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot seed the charts from redis; bars start from the live feed", "err", err)
		}
		return
	}
	if s.bars.Merge(old, gen) {
		s.log.Info("charts seeded from the retained streams", "ticks", st.Ticks, "bytes", st.Bytes, "refused", st.Refused,
			"took", time.Since(start).Round(time.Millisecond))
	}
}

// Seeded returns a channel closed when the first seeding has ended.
func (s *barSink) Seeded() <-chan struct{} { return s.seeded }

// Close stops a seeding in progress and waits for it. Safe to call twice.
func (s *barSink) Close() {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// BarsSeeded returns a channel closed once the node has read its charts'
// history back from the retained streams (or failed to).
func (n *Node) BarsSeeded() <-chan struct{} { return n.bars.Seeded() }

func registerBarMetrics(reg *prometheus.Registry, s *barSink) {
	st := s.bars.Stats()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tickstream_seed_capped_total",
			Help: "Chart seedings from the retained streams that stopped at --seed-max-bytes in some shard."},
			func() float64 { return float64(s.capped.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_seed_bytes",
			Help: "Bytes of stream entries the last chart seeding read."},
			func() float64 { return float64(s.seedBytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tickstream_bars_ticks_total",
			Help: "Ticks applied to the chart bars (/api/bars, /api/trades), seed included."},
			func() float64 { return float64(st.Ticks.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tickstream_bars_skipped_total",
			Help: "Ticks the chart bars could not use (no price or size, or older than the bars kept)."},
			func() float64 { return float64(st.Skipped.Load()) }),
	)
}
