package main

import (
	"io"
	"log/slog"
)

// logFlags choose the format and level of a long-running command's log
// (stderr).
type logFlags struct {
	format *string
	level  *string
}

func (l *logFlags) register(f *flags) {
	l.format = f.choice("log-format", "text", []string{"text", "json"}, "log format: text (key=value) or json (one object a line)")
	l.level = f.choice("log-level", "info", []string{"debug", "info", "warn", "error"}, "least level logged")
}

// logger returns the logger the flags ask for, writing to w.
func (l *logFlags) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(*l.level)) // the choice flag admits valid levels only
	opts := &slog.HandlerOptions{Level: lvl}
	if *l.format == "json" {
		opts.ReplaceAttr = secondsAttr
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// secondsAttr writes a duration as a number of seconds (JSON logs): slog's
// JSON handler writes bare nanoseconds, which a log query then has to
// know about; the text handler's "1.5s" needs no help.
func secondsAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.Float64Value(a.Value.Duration().Seconds())
	}
	return a
}
