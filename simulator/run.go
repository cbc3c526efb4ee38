package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tickstream/tickstream/feed"
)

// Publisher stores ticks where the fan-out nodes read them. The simulator
// calls Publish from a single goroutine; it may block, must honour ctx, and
// returns an error if the ticks were not stored (the simulator then retries
// the same batch, so no sequence number is skipped).
type Publisher interface {
	Publish(ctx context.Context, ticks []feed.Tick) error
}

// Sender is a Publisher that can also take a batch without waiting for
// the store to confirm it: Send returns once the batch is handed over (or
// stored) and reports a failure of an earlier batch by storing that one
// again first; Flush waits until every batch handed over is stored. As
// with Publish, an error from Send means these ticks were not taken (the
// simulator sends the same batch again). The simulator uses Send when its
// publisher has it, so it wakes once per batch, and calls Flush when it
// stops.
type Sender interface {
	Publisher
	Send(ctx context.Context, ticks []feed.Tick) error
	Flush(ctx context.Context) error
}

// WireSender is a Sender that also takes a batch already in its wire
// encoding, so that no feed.Tick (and no decimal) is built per tick:
// tick i is of symbol syms[i] and its wire JSON (what feed.Tick.AppendJSON
// writes) is wire[ends[i-1]:ends[i]] (from 0 for tick 0); firstSeq is
// tick 0's seq. SendWire is Send otherwise, and wire may be reused once
// it returns.
type WireSender interface {
	Sender
	SendWire(ctx context.Context, syms []string, firstSeq uint64, wire []byte, ends []int) error
}

// flushTimeout bounds the wait for the last batch's confirmation when the
// simulator stops.
const flushTimeout = 2 * time.Second

// Config configures a Simulator.
type Config struct {
	GeneratorConfig
	// Window is how often a batch of ticks is published. Default
	// DefaultWindow.
	Window time.Duration
	// MaxLag is how far the simulator may fall behind the wall clock before
	// it skips ahead instead of catching up with a burst. Default 250ms.
	MaxLag time.Duration
	// Logger receives publish errors. Default slog.Default().
	Logger *slog.Logger
	// OwnThread says the simulator's goroutine is the only busy one of its
	// process, on one thread (GOMAXPROCS 1: simulate --procs 1). On Linux
	// it then paces its batches (windows up to 5 ms) by sleeping on that
	// thread rather than on a runtime timer (pace_linux.go): about half
	// the CPU per wake-up. Other goroutines of the process waiting on a
	// timer run between batches, a window late at most; ones waiting on
	// the network are ~10 ms late (only the runtime's monitor polls the
	// network while the thread sleeps). Leave it false in a process that
	// serves anything else; simulate sets it for its own process.
	OwnThread bool
}

// DefaultWindow is how often the simulator publishes by default.
const DefaultWindow = 5 * time.Millisecond

// Simulator publishes generated ticks at the configured rate.
type Simulator struct {
	cfg       Config
	gen       *Generator
	pub       Publisher
	published atomic.Uint64
	skipped   atomic.Uint64
}

// New returns a simulator that publishes through pub.
func New(cfg Config, pub Publisher) (*Simulator, error) {
	if pub == nil {
		return nil, errors.New("simulator: nil publisher")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	gen, err := NewGenerator(cfg.GeneratorConfig)
	if err != nil {
		return nil, err
	}
	return &Simulator{cfg: cfg, gen: gen, pub: pub}, nil
}

// Published returns the number of ticks published so far (with a Sender:
// taken by it; the last batch may still be unconfirmed).
func (s *Simulator) Published() uint64 { return s.published.Load() }

// Run publishes ticks until ctx is done, then returns nil. It returns an
// error only if the publisher fails in a way retrying cannot fix.
func (s *Simulator) Run(ctx context.Context) error {
	send := s.pub.Publish
	if sp, ok := s.pub.(Sender); ok {
		send = sp.Send
		defer func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			if err := sp.Flush(fctx); err != nil {
				s.cfg.Logger.Warn("the last batch was not confirmed", "err", err)
			}
		}()
	}
	wireSender, _ := s.pub.(WireSender)
	start := time.Now()
	pace := newPacer(s.cfg)
	defer pace.stop()
	var (
		batch   []rawTick
		pending rawTick
		pendAt  = -1.0
		// Reused from one batch to the next.
		ticks []feed.Tick
		wire  []byte
		ends  []int
		syms  []string
		st    stamp
	)
	maxLag := s.cfg.MaxLag.Seconds()
	for {
		if !pace.wait(ctx) {
			return nil
		}
		wall := time.Since(start).Seconds()
		if wall-s.gen.Now() > maxLag {
			s.gen.SkipTo(wall - s.cfg.Window.Seconds())
			s.skipped.Add(1)
		}
		batch = batch[:0]
		if pendAt >= 0 && pendAt <= wall {
			batch = append(batch, pending)
			pendAt = -1
		}
		for pendAt < 0 {
			t, at := s.gen.nextRaw()
			if at > wall {
				pending, pendAt = t, at
				break
			}
			batch = append(batch, t)
		}
		if len(batch) == 0 {
			continue
		}
		ts := time.Now().UnixMicro()
		var err error
		if wireSender != nil {
			wire, ends, syms = wire[:0], ends[:0], syms[:0]
			stamp := st.of(ts)
			for i := range batch {
				wire = batch[i].appendWire(wire, stamp)
				ends = append(ends, len(wire))
				syms = append(syms, batch[i].w.sym.Name)
			}
			err = s.publish(ctx, len(batch), func(ctx context.Context) error {
				return wireSender.SendWire(ctx, syms, batch[0].seq, wire, ends)
			})
		} else {
			ticks = ticks[:0]
			for i := range batch {
				t := batch[i].tick()
				t.TS = ts
				ticks = append(ticks, t)
			}
			err = s.publish(ctx, len(ticks), func(ctx context.Context) error { return send(ctx, ticks) })
		}
		if err != nil {
			return err
		}
	}
}

// publish retries a batch with capped, jittered backoff until it is stored
// or ctx is done.
func (s *Simulator) publish(ctx context.Context, n int, send func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := send(ctx)
		if err == nil {
			s.published.Add(uint64(n))
			if attempt > 0 {
				s.cfg.Logger.Info("publishing again", "after_attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if attempt == 0 || attempt%20 == 0 {
			s.cfg.Logger.Warn("publish failed; retrying", "ticks", n, "err", err)
		}
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// String describes the simulator's settings.
func (s *Simulator) String() string {
	return fmt.Sprintf("%d symbols, %.0f ticks/s, seed %d", len(s.gen.walks), s.gen.rate, s.cfg.Seed)
}
