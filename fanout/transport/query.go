package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tickstream/tickstream/fanout"
)

// subRequest is a validated subscription request.
type subRequest struct {
	symbols  []string
	mode     fanout.Mode
	interval time.Duration
	asked    bool // an interval was given
}

// errParam names the query parameter that was wrong.
type errParam struct {
	param string
	err   error
}

func (e *errParam) Error() string { return e.err.Error() }
func (e *errParam) Unwrap() error { return e.err }

// parseSubscription validates the symbols, interval and mode parameters
// shared by every transport.
func (s *Server) parseSubscription(symbols, interval, mode string) (subRequest, error) {
	var r subRequest
	syms, err := s.cfg.Universe.ParseSymbolList(symbols, s.cfg.MaxSymbols)
	if err != nil {
		return r, &errParam{"symbols", err}
	}
	r.symbols = syms
	if r.mode, err = ParseMode(mode); err != nil {
		return r, &errParam{"mode", err}
	}
	if interval != "" {
		d, err := ParseInterval(interval)
		if err != nil {
			return r, &errParam{"interval", err}
		}
		r.interval, r.asked = d, true
	} else {
		r.interval = s.cfg.DefaultInterval
	}
	return r, nil
}

// ParseMode parses "conflated" (or empty) and "raw".
func ParseMode(s string) (fanout.Mode, error) {
	switch strings.ToLower(s) {
	case "", "conflated":
		return fanout.Conflated, nil
	case "raw":
		return fanout.Raw, nil
	}
	return 0, fmt.Errorf("mode %q: want conflated or raw", s)
}

// ParseInterval parses a Go duration ("250ms", "1s") or a bare number of
// milliseconds ("250"). It rejects negative, absurd and malformed values.
func ParseInterval(s string) (time.Duration, error) {
	if len(s) > 32 {
		return 0, errors.New("interval: too long")
	}
	var d time.Duration
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 || ms > 24*3600*1000 {
			return 0, fmt.Errorf("interval %q: out of range", s)
		}
		d = time.Duration(ms) * time.Millisecond
	} else {
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("interval %q: want a duration such as 250ms or 1s", s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("interval %q: %w", s, fanout.ErrBadInterval)
	}
	return d, nil
}
