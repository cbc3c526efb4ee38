//go:build !linux

package transport

// wsPoller is the node's reader of WebSocket frames where there is epoll
// (ws_poll_linux.go). Elsewhere there is none: every session takes the
// fallback, the library's reading goroutine.
type wsPoller struct{}

func (p *wsPoller) ready() bool            { return false }
func (p *wsPoller) attach(*wsSession) bool { return false }
func (p *wsPoller) detach(*wsSession)      {}
func (p *wsPoller) arm(*wsSession)         {}
func (p *wsPoller) stop()                  {}
