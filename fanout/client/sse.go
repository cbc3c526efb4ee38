package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// runSSE runs one SSE connection until it ends.
func (s *stream) runSSE(ctx context.Context) error {
	q := url.Values{"symbols": {strings.Join(s.cfg.Symbols, ",")}}
	if s.cfg.Interval > 0 {
		q.Set("interval", s.cfg.Interval.String())
	}
	if s.cfg.Raw {
		q.Set("mode", "raw")
	}
	u := s.base.JoinPath("stream")
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if s.cursor != "" {
		req.Header.Set("Last-Event-ID", s.cursor)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return refusal(resp, body)
	}
	idle := time.AfterFunc(s.cfg.IdleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()
	d := NewDecoder(&idleReader{r: resp.Body, t: idle, timeout: s.cfg.IdleTimeout})
	var retry time.Duration
	for {
		ev, err := d.Next()
		if err != nil {
			if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
				return errIdle
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if ev.Retry > 0 {
			retry = time.Duration(ev.Retry) * time.Millisecond
		}
		if ev.ID != "" {
			s.cursor = ev.ID
		}
		if err := s.sseEvent(ev, retry); err != nil {
			return err
		}
	}
}

func (s *stream) sseEvent(ev Event, retry time.Duration) error {
	switch ev.Type {
	case "tick":
		return s.tick(ev.Data)
	case "hello":
		var h struct{ Node string }
		_ = json.Unmarshal(ev.Data, &h)
		return s.emit(Message{Kind: Hello, Node: h.Node})
	case "ready":
		s.ready = true
		return s.emit(Message{Kind: Ready})
	case "resync":
		return s.resync()
	case "lagging":
		return s.emit(Message{Kind: Lagging})
	case "goaway":
		var g struct{ Reason string }
		_ = json.Unmarshal(ev.Data, &g)
		return &errGoAway{reason: g.Reason, retry: retry}
	}
	return nil
}
