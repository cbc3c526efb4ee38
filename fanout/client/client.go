package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tickstream/tickstream/feed"
)

// Kind is what a Message carries.
type Kind int

const (
	// Hello: connected; Node names the node.
	Hello Kind = iota
	// Tick: one tick, newer than any the client had of its symbol.
	Tick
	// Ready: the snapshot (or replay) is complete; updates follow.
	Ready
	// Resync: history was lost; ticks that follow are a fresh snapshot and
	// seqs may restart. Drop what you hold.
	Resync
	// Lagging: the client reads too slowly and is conflated harder (raw:
	// it will be closed and resume).
	Lagging
	// Reconnecting: the connection ended (Err says why); the client
	// reconnects after Delay and resumes from its cursor.
	Reconnecting
)

func (k Kind) String() string {
	return [...]string{"hello", "tick", "ready", "resync", "lagging", "reconnecting"}[k]
}

// Message is what Stream hands its callback.
type Message struct {
	Kind Kind
	// Tick is set for Tick; JSON is its wire form, exactly as received.
	Tick feed.Tick
	JSON []byte
	// Node is set for Hello.
	Node string
	// Err and Delay are set for Reconnecting.
	Err   error
	Delay time.Duration
}

// Config configures Stream.
type Config struct {
	// URL is the node's base URL, e.g. http://127.0.0.1:8080. Required.
	URL string
	// Symbols to subscribe to. Required.
	Symbols []string
	// Interval asks for a conflation interval; 0 takes the node's default.
	Interval time.Duration
	// Raw asks for every tick, gap-free across reconnects.
	Raw bool
	// Transport is "sse" (default) or "ws".
	Transport string
	// Cursor resumes from a cursor an earlier stream gave.
	Cursor string
	// MinBackoff and MaxBackoff bound the jittered reconnect delay.
	// Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient is used for SSE. Default: a client without timeout.
	HTTPClient *http.Client
	// OnDrop, if set, is told of every tick the client drops because it
	// already holds that seq or a newer one of the symbol (a snapshot
	// repeated after a reconnect, or a node behind the one before).
	OnDrop func(sym string, seq, held uint64)
	// IdleTimeout is how long a connection may bring nothing at all (no
	// event, no heartbeat, no ping) before the client gives up on it and
	// reconnects: a node that hangs or a network that silently drops is
	// noticed. Default 45s, three heartbeats.
	IdleTimeout time.Duration
}

// stream is one Stream call's state.
type stream struct {
	cfg    Config
	fn     func(Message) error
	cursor string
	seqs   map[string]uint64
	base   *url.URL
	ready  bool // the current connection reached ready
}

// errGoAway is a node telling the client to reconnect (draining).
type errGoAway struct {
	reason string
	retry  time.Duration
}

func (e *errGoAway) Error() string { return "node asked to reconnect: " + e.reason }

// errHandler wraps an error returned by the callback.
type errHandler struct{ err error }

func (e errHandler) Error() string { return e.err.Error() }

// Stream subscribes and calls fn for every message, in order, from one
// goroutine, until ctx is done (it then returns nil), fn returns an error
// (returned as is), or the node refuses the subscription (an error wrapping
// ErrRefused with the node's reason). Anything else reconnects by itself
// with jittered backoff and resumes from the last cursor: raw streams
// continue gap-free while the node's history covers the gap; Tick messages
// never repeat or go back in seq for a symbol (a Resync resets that).
func Stream(ctx context.Context, cfg Config, fn func(Message) error) error {
	if len(cfg.Symbols) == 0 {
		return fmt.Errorf("%w: no symbols", ErrRefused)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("%w: URL %q: want http://host:port", ErrRefused, cfg.URL)
	}
	switch cfg.Transport {
	case "":
		cfg.Transport = "sse"
	case "sse", "ws":
	default:
		return fmt.Errorf("%w: transport %q: want sse or ws", ErrRefused, cfg.Transport)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 45 * time.Second
	}
	s := &stream{cfg: cfg, fn: fn, cursor: cfg.Cursor, seqs: map[string]uint64{}, base: base}
	backoff := cfg.MinBackoff
	for {
		s.ready = false
		if cfg.Transport == "ws" {
			err = s.runWS(ctx)
		} else {
			err = s.runSSE(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		var he errHandler
		if errors.As(err, &he) {
			return he.err
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		if s.ready {
			backoff = cfg.MinBackoff
		}
		delay := backoff/2 + rand.N(backoff/2+1)
		var ga *errGoAway
		if errors.As(err, &ga) && ga.retry > 0 {
			delay = ga.retry
		}
		var ra *errRetryAfter
		if errors.As(err, &ra) {
			delay = max(delay, ra.after)
		}
		if err := s.emit(Message{Kind: Reconnecting, Err: err, Delay: delay}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

func (s *stream) emit(m Message) error {
	if err := s.fn(m); err != nil {
		return errHandler{err}
	}
	return nil
}

// tick decodes and dedupes one tick, then emits it.
func (s *stream) tick(data []byte) error {
	t, err := feed.DecodeTick(data)
	if err != nil {
		return fmt.Errorf("decode tick: %w", err)
	}
	if last, ok := s.seqs[t.Sym]; ok && t.Seq <= last {
		if s.cfg.OnDrop != nil {
			s.cfg.OnDrop(t.Sym, t.Seq, last)
		}
		return nil // already held (a snapshot after reconnect)
	}
	s.seqs[t.Sym] = t.Seq
	return s.emit(Message{Kind: Tick, Tick: t, JSON: append([]byte(nil), data...)})
}

func (s *stream) resync() error {
	clear(s.seqs)
	return s.emit(Message{Kind: Resync})
}

// errRetryAfter is a 503 with Retry-After.
type errRetryAfter struct {
	status string
	after  time.Duration
}

func (e *errRetryAfter) Error() string { return "node busy: " + e.status }

// refusal turns a non-200 answer into an error: 4xx refuse for good (with
// the node's JSON reason), 5xx and 429 are retried.
func refusal(resp *http.Response, body []byte) error {
	var e struct{ Error string }
	_ = json.Unmarshal(body, &e)
	reason := e.Error
	if reason == "" {
		reason = strings.TrimSpace(string(body))
	}
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
		return fmt.Errorf("%w: %s: %s", ErrRefused, resp.Status, reason)
	}
	after := time.Second
	if v := resp.Header.Get("Retry-After"); v != "" {
		if d, err := time.ParseDuration(v + "s"); err == nil {
			after = d
		}
	}
	return &errRetryAfter{status: resp.Status + ": " + reason, after: after}
}

// errIdle is a connection that brought nothing for IdleTimeout.
var errIdle = errors.New("connection idle past the timeout (no data, no heartbeat)")

// idleReader cancels its connection when no byte arrives for the timeout.
type idleReader struct {
	r       io.Reader
	t       *time.Timer
	timeout time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(i.timeout)
	}
	return n, err
}
