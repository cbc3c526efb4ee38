package redisstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/redistest"
)

func TestConnect(t *testing.T) {
	ctx := context.Background()
	t.Run("server", func(t *testing.T) {
		srv := redistest.Start(t)
		c, err := Connect(ctx, ConnectConfig{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got := srv.Client().Get(ctx, "k").Val(); got != "v" {
			t.Errorf("wrote through the client, read %q", got)
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})
	t.Run("embedded", func(t *testing.T) {
		c, err := Connect(ctx, ConnectConfig{URL: MemURL})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(c.String(), "embedded") {
			t.Errorf("String() = %q", c.String())
		}
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		addr := strings.Fields(c.String())[2]
		_ = c.Close()
		// The store stopped with the connection.
		d, err := Connect(ctx, ConnectConfig{URL: "redis://" + addr, Timeout: 500 * time.Millisecond})
		if err == nil {
			d.Close()
			t.Error("the embedded store still answers after Close")
		}
	})
	for _, c := range []struct {
		name string
		cfg  ConnectConfig
	}{
		{"no url", ConnectConfig{}},
		{"bad scheme", ConnectConfig{URL: "ftp://x"}},
		{"bad cluster url", ConnectConfig{ClusterURL: "ftp://x"}},
		{"server and cluster", ConnectConfig{URL: "redis://127.0.0.1:1", ClusterURL: "redis://127.0.0.1:2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Connect(ctx, c.cfg); !errors.Is(err, ErrBadURL) {
				t.Errorf("err %v, want ErrBadURL", err)
			}
		})
	}
	t.Run("does not answer", func(t *testing.T) {
		_, err := Connect(ctx, ConnectConfig{URL: "redis://:secret@127.0.0.1:1", Timeout: 500 * time.Millisecond})
		if err == nil || errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), "does not answer") {
			t.Errorf("err %v, want an outage, not a bad URL", err)
		}
		if _, err := Connect(ctx, ConnectConfig{URL: "redis://:secret@127.0.0.1:1", ClusterURL: "x"}); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("err %v shows the password", err)
		}
	})
}
