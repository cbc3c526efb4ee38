package redisstream

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/redistest"
)

// TestCancelAfterReplyKeepsOwnConnUsable guards roundTrip's cancellation:
// roundTrip arms a context callback that sets a past deadline on the
// connection. When ctx is cancelled as the reply comes in, the call succeeds
// and the connection is kept; the callback's past deadline is not hidden by
// the cached deadline (c.deadline still 10 s ahead), so the next call on the
// healthy connection does not fail with an i/o timeout.
func TestCancelAfterReplyKeepsOwnConnUsable(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	c := newXReadConn(rdb, nil)
	if c == nil {
		t.Fatal("no own connection")
	}
	defer c.close()
	ping := appendCommand(nil, "PING")
	ctx, cancel := context.WithCancel(context.Background())
	err := c.do(ctx, ping, 10*time.Second, func(b []byte) error {
		if err := wholeReply(b); err != nil {
			return err
		}
		cancel() // e.g. a shutdown or a caller's timeout, just as the reply came
		// Wait until the callback has set its deadline (a raw read that
		// reads nothing reports an expired deadline).
		rc, err := c.conn.(syscall.Conn).SyscallConn()
		if err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for rc.Read(func(uintptr) bool { return true }) == nil {
			if time.Now().After(deadline) {
				return errors.New("the ctx callback did not run")
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if err := c.do(context.Background(), ping, 10*time.Second, wholeReply); err != nil {
		t.Errorf("a call with a live context on a healthy connection: %v", err)
	}
}
