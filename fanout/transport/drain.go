package transport

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
)

// Draining, as a client sees it. The HTML standard makes EventSource give
// up for good on any answer but a 200 event stream ("fail the connection"),
// while a network error or the end of a 200 stream makes it reconnect after
// its retry delay. So a draining node never answers a stream with an error
// status: it stops accepting (a reconnect gets a refused connection, or a
// proxy's next upstream), and a request that still reaches it on a
// connection that was open before is answered with a stream that holds only
// retry: and a goaway event, then ends. A WebSocket is refused before the
// upgrade (the client's own reconnect code runs) or, if already upgraded,
// closed with 1012 (service restart); none is left open without a
// subscription.

// drainState is the Server's part of a drain.
type drainState struct {
	on   atomic.Bool
	once sync.Once
	done chan error // fasthttp's shutdown result, once the plain connections are closed
}

// StopAccepting starts the server's side of a drain and returns at once.
// It closes the listeners (the caller may have closed its own already) and
// the idle keep-alive connections, and makes every plain HTTP connection
// close after the request it serves. From then on a /stream request still
// arriving on such a connection gets a goaway stream, and a WebSocket
// request a refusal before the upgrade. Open streams go on until the hub
// drains them. wait blocks until every plain connection is closed or ctx is
// done; call it before Shutdown. Safe to call more than once: later calls
// return a wait that reports nil.
func (s *Server) StopAccepting(ctx context.Context) (wait func() error) {
	started := false
	s.drain.once.Do(func() {
		started = true
		s.drain.on.Store(true)
		s.drain.done = make(chan error, 1)
		go func() { s.drain.done <- s.app.Server().ShutdownWithContext(ctx) }()
	})
	if !started {
		return func() error { return nil }
	}
	return func() error {
		err := <-s.drain.done
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil // a listener already closed by its owner is not a failure
	}
}

// Draining reports whether StopAccepting was called.
func (s *Server) Draining() bool { return s.drain.on.Load() }

// refuseStream answers an SSE request the node cannot take (it drains, is
// closing or full, or the client's address holds its limit of streams) in
// the way a standard EventSource retries: 200, an event stream
// with retry: (spread, so clients do not all come back at once) and a
// goaway event, then the end of the response and of the connection. The
// event has no id:, so the client keeps its Last-Event-ID and resumes
// where it was on the node it reaches next.
func refuseStream(c *fiber.Ctx, reason error) error {
	retry := 250 + rand.IntN(1000)
	if errors.Is(reason, fanout.ErrTooManySubscribers) || errors.Is(reason, ErrTooManyStreams) {
		retry = 2000 + rand.IntN(5000) // a full node or address: come back later, not all at once
	}
	setSSEHeaders(c)
	c.Context().SetConnectionClose()
	return c.Status(fiber.StatusOK).Send(appendSSEControl(nil, retry, closing(reason), reason.Error()))
}

// isStreamRefusal reports whether err from Hub.Subscribe means "not here,
// not now": the hub drains, is closed, or is full.
func isStreamRefusal(err error) bool {
	return errors.Is(err, fanout.ErrDraining) || errors.Is(err, fanout.ErrHubClosed) || errors.Is(err, fanout.ErrTooManySubscribers)
}
