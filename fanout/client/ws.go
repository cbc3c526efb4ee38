package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fasthttp/websocket"
)

// wsMsg is a server message.
type wsMsg struct {
	Type   string            `json:"type"`
	Node   string            `json:"node"`
	Error  string            `json:"error"`
	Reason string            `json:"reason"`
	Cursor string            `json:"cursor"`
	Data   []json.RawMessage `json:"data"`
}

// runWS runs one WebSocket connection until it ends.
func (s *stream) runWS(ctx context.Context) error {
	u := *s.base
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path = u.JoinPath("ws").Path
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil && resp.StatusCode != 101 {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return refusal(resp, body)
		}
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	sub := map[string]any{"op": "subscribe", "symbols": s.cfg.Symbols}
	if s.cfg.Interval > 0 {
		sub["interval"] = s.cfg.Interval.String()
	}
	if s.cfg.Raw {
		sub["mode"] = "raw"
	}
	if s.cursor != "" {
		sub["cursor"] = s.cursor
	}
	if err := c.WriteJSON(sub); err != nil {
		return err
	}
	// Any frame, pings included, proves the connection alive.
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	c.SetPingHandler(func(d string) error {
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		return c.WriteControl(websocket.PongMessage, []byte(d), time.Now().Add(time.Second))
	})
	subscribed := false
	for {
		var m wsMsg
		_, b, err := c.ReadMessage()
		_ = c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return &errGoAway{reason: fmt.Sprintf("closed %d %s", ce.Code, ce.Text)}
			}
			return err
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("decode message: %w", err)
		}
		if m.Cursor != "" {
			s.cursor = m.Cursor
		}
		switch m.Type {
		case "hello":
			err = s.emit(Message{Kind: Hello, Node: m.Node})
		case "subscribed":
			subscribed = true
		case "error":
			if !subscribed {
				return fmt.Errorf("%w: %s", ErrRefused, m.Error)
			}
		case "tick":
			for _, d := range m.Data {
				if err = s.tick(d); err != nil {
					break
				}
			}
		case "ready":
			s.ready = true
			err = s.emit(Message{Kind: Ready})
		case "resync":
			err = s.resync()
		case "lagging":
			err = s.emit(Message{Kind: Lagging})
		case "goaway":
			return &errGoAway{reason: m.Reason}
		}
		if err != nil {
			return err
		}
	}
}
