package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestJSONLogDurationsAreSeconds guards the JSON log format: a duration
// is a number of seconds (1.5), not slog's bare nanoseconds, at the top
// level and in a group; the text format keeps Go's "1.5s".
func TestJSONLogDurationsAreSeconds(t *testing.T) {
	format, level := "json", "info"
	var buf bytes.Buffer
	log := (&logFlags{format: &format, level: &level}).logger(&buf)
	log.Info("redis is back", "down_for", 1500*time.Millisecond, "shards", 16)
	log.WithGroup("g").Info("x", "took", 250*time.Microsecond)
	dec := json.NewDecoder(&buf)
	var line struct {
		DownFor any `json:"down_for"`
		Shards  any `json:"shards"`
	}
	if err := dec.Decode(&line); err != nil {
		t.Fatal(err)
	}
	if line.DownFor != 1.5 || line.Shards != 16.0 {
		t.Errorf("down_for %v (%T), shards %v: want 1.5 and 16", line.DownFor, line.DownFor, line.Shards)
	}
	var grouped struct {
		G struct {
			Took any `json:"took"`
		} `json:"g"`
	}
	if err := dec.Decode(&grouped); err != nil {
		t.Fatal(err)
	}
	if grouped.G.Took != 0.00025 {
		t.Errorf("grouped took %v, want 0.00025", grouped.G.Took)
	}

	format = "text"
	buf.Reset()
	(&logFlags{format: &format, level: &level}).logger(&buf).Info("x", "down_for", 1500*time.Millisecond)
	if !bytes.Contains(buf.Bytes(), []byte("down_for=1.5s")) {
		t.Errorf("text log %q, want down_for=1.5s", buf.String())
	}
}
