package loadgen

import (
	"context"
	"net"
	"time"

	"github.com/fasthttp/websocket"
)

// WS holds one WebSocket subscription.
type WS struct {
	URL      string // ws://host:port/ws
	Symbols  []string
	Interval string
	Raw      bool
	Track    *Tracker
	Stats    *Stats
}

// Run connects, subscribes and reads until ctx is done or the connection
// fails. ready is called once the ready message arrived.
func (w *WS) Run(ctx context.Context, ready func()) error {
	d := websocket.Dialer{
		NetDialContext:  func(ctx context.Context, n, a string) (net.Conn, error) { return dialer(&w.Stats.Bytes)(ctx, n, a) },
		ReadBufferSize:  4096,
		WriteBufferSize: 512,
	}
	c, _, err := d.DialContext(ctx, w.URL, nil)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer c.Close()
	sub := map[string]any{"op": "subscribe", "symbols": w.Symbols}
	if w.Raw {
		sub["mode"] = "raw"
	} else if w.Interval != "" {
		sub["interval"] = w.Interval
	}
	if err := c.WriteJSON(sub); err != nil {
		return err
	}
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			w.Track.Flush()
			return err
		}
		isReady, err := wsMessage(msg, time.Now(), w.Track)
		w.Track.Flush() // one message is one batch
		if err != nil {
			return err
		}
		if isReady && ready != nil {
			ready()
			ready = nil
		}
	}
}

type refusedError struct{ msg string }

func (e *refusedError) Error() string { return "refused: " + e.msg }
