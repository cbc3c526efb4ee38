package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// matching returns the records whose message contains s.
func (h *logRecorder) matching(s string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if strings.Contains(r.Message, s) {
			out = append(out, r)
		}
	}
	return out
}

// attr returns the value of r's attribute key.
func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// TestReaderLogsOutageEveryLogEveryAndRecoveryInOrder guards the reader's
// log of a Redis outage: one warning at the first failure, then an error
// at most every LogEvery saying for how long Redis has been unreachable,
// and on its return one line that says what happened, in order: resumed
// from the last ids when Redis kept its data; its history lost and the
// state resynchronised from a new epoch when it came back empty (and no
// separate "lost its history" line before it).
func TestReaderLogsOutageEveryLogEveryAndRecoveryInOrder(t *testing.T) {
	const every = 150 * time.Millisecond
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepData=%v", keep), func(t *testing.T) {
			srv, rdb, pub := setup(t, redistest.WithPersistence())
			rec := &logRecorder{}
			sink := &recSink{}
			startReaderCfg(t, rdb, sink, ReaderConfig{Shards: 4, Block: 50 * time.Millisecond, EpochCheck: 50 * time.Millisecond,
				MaxBackoff: 50 * time.Millisecond, LogEvery: every, Logger: slog.New(rec)})
			if err := pub.Publish(t.Context(), []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
				t.Fatal(err)
			}
			wait.For(t, 5*time.Second, func() error {
				if u := sink.get("AAPL"); u == nil || u.Seq != 1 {
					return errors.New("not read")
				}
				return nil
			})
			srv.Kill()
			wait.For(t, 20*time.Second, func() error {
				if n := len(rec.matching("redis unreachable for")); n < 2 {
					return fmt.Errorf("%d errors about the outage", n)
				}
				return nil
			})
			srv.Restart(keep)
			wait.For(t, 20*time.Second, func() error {
				if len(rec.matching("redis is back after")) == 0 {
					return errors.New("no recovery line")
				}
				return nil
			})

			if w := rec.matching("reading redis failed"); len(w) != 1 || w[0].Level != slog.LevelWarn {
				t.Errorf("first failure: %d lines, want one warning", len(w))
			}
			errs := rec.matching("redis unreachable for")
			var prev time.Duration
			for i, r := range errs {
				if r.Level != slog.LevelError {
					t.Errorf("%q at %v, want error", r.Message, r.Level)
				}
				d := attr(r, "down_for").Duration()
				if d < time.Duration(i+1)*every || d <= prev {
					t.Errorf("error %d says down_for %v after %v: want growing, at least %v", i, d, prev, time.Duration(i+1)*every)
				}
				if i > 0 && r.Time.Sub(errs[i-1].Time) < every {
					t.Errorf("errors %d and %d %v apart, want at least LogEvery %v", i-1, i, r.Time.Sub(errs[i-1].Time), every)
				}
				prev = d
			}
			back := rec.matching("redis is back after")
			if len(back) != 1 {
				t.Fatalf("%d recovery lines, want 1", len(back))
			}
			msg := back[0].Message
			if want := map[bool]string{true: "; resumed from the last ids", false: "; its history was lost: resynchronised from the new epoch"}[keep]; !strings.HasSuffix(msg, want) {
				t.Errorf("recovery line %q, want it to end %q", msg, want)
			}
			if d := attr(back[0], "down_for").Duration(); d < 2*every {
				t.Errorf("recovery says down_for %v, want at least %v", d, 2*every)
			}
			if n := len(rec.matching("lost its history (new epoch)")); n != 0 {
				t.Errorf("%d separate lost-history lines around the recovery line, want none", n)
			}
			if last := errs[len(errs)-1]; last.Time.After(back[0].Time) {
				t.Errorf("an outage error after the recovery line")
			}
		})
	}
}
