package loadgen

import (
	"errors"
	"net/netip"
	"runtime"
	"time"
)

// ErrLinuxOnly is returned where streaming subscribers (SSE, WebSocket)
// are asked for outside Linux: they are read by an epoll event loop.
// Short polling runs everywhere.
var ErrLinuxOnly = errors.New("loadgen: SSE and WebSocket subscribers are read with epoll and run on Linux only (--transport shortpoll runs everywhere)")

// checkPlatform reports ErrLinuxOnly for a streaming transport outside
// Linux.
func checkPlatform(transport string) error {
	if runtime.GOOS != "linux" && transport != "shortpoll" {
		return ErrLinuxOnly
	}
	return nil
}

// EvSub is one subscription read by an EvLoop: an SSE stream, or with
// WS set a WebSocket that subscribes to WSSymbols at WSInterval.
type EvSub struct {
	Addr netip.AddrPort // the node
	// Pick, if set, chooses the node of every reconnect (NodePicker).
	Pick func() netip.AddrPort
	// Source, if valid, is the local address to connect from. Spreading
	// many connections to one node over several loopback addresses
	// (127.0.0.0/8) keeps connect(2) fast: with one source address the
	// kernel searches a crowded ephemeral port range on every connect.
	Source netip.Addr
	Path   string // /stream?… or /ws
	// WS makes it a WebSocket subscription: the upgrade, then a
	// subscribe message with WSSymbols and WSInterval.
	WS         bool
	WSSymbols  []string
	WSInterval string
	Track      *Tracker
	// Ready is called on the loop's goroutine when the stream's ready
	// event arrives (every connection, reconnects included).
	Ready func()
	// Failed is called on the loop's goroutine when a connection ends;
	// everReady tells whether it had become ready. The loop reconnects
	// after 200ms–1s.
	Failed func(err error, everReady bool)
}

func (s *EvSub) failed(err error, everReady bool) {
	if s.Failed != nil {
		s.Failed(err, everReady)
	}
}

// EvLoop reads many SSE streams or WebSockets on one goroutine with epoll: one
// epoll_wait returns every socket with data, each is read once into a
// shared buffer and scanned in place. Compared with a goroutine per
// stream it has no scheduler wake-up, no second read to find the socket
// empty and no per-stream buffers: a load generator must cost less than
// the node it measures. Connections are opened by the loop itself,
// non-blocking, at a bounded rate.
type EvLoop struct {
	Stats *Stats
	Rate  int // new connections per second
	// Batch is how long the loop sleeps once it has read everything
	// waiting, so that what arrives meanwhile is read in one pass
	// without waking it per write. It adds at most Batch to the
	// measured delay. 0: block in epoll_wait.
	Batch time.Duration
}
