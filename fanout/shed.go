package fanout

import (
	"slices"
	"sync/atomic"
	"time"
)

// ErrRebalancing is the reason given to a subscriber sent away because its
// node holds more than its share of the cluster. It matches ErrDraining
// (errors.Is), so transports treat it as a drain: an SSE stream ends with a
// goaway event and a jittered retry:, a WebSocket closes with 1012 (service
// restart); the client reconnects through the balancer, which places it on
// a lighter node, and resumes from its cursor.
var ErrRebalancing error = rebalancing{}

type rebalancing struct{}

func (rebalancing) Error() string { return "rebalancing: reconnect to a less loaded node" }

// Is makes ErrRebalancing match ErrDraining.
func (rebalancing) Is(target error) bool { return target == ErrDraining }

// Shedder sends a hub's subscribers away a few at a time, the most recently
// arrived first among those connected for at least a minimum age: a burst
// of newcomers goes before the subscribers that were there all along, and
// a subscriber that just arrived (perhaps sent away by another node) is
// never moved again at once. Before it counts or picks anyone it asks each
// subscriber's sink whether its peer is gone (PeerProber) and releases
// those, so a closed stream is neither counted nor sent a goaway. Safe for
// concurrent use.
type Shedder struct {
	hub  *Hub
	shed atomic.Uint64
	gone atomic.Uint64
}

// NewShedder returns a Shedder of h.
func (h *Hub) NewShedder() *Shedder { return &Shedder{hub: h} }

// Shed reports how many subscribers SendAway has sent away so far.
func (sh *Shedder) Shed() uint64 { return sh.shed.Load() }

// Released reports how many subscribers whose peer was gone Sweep and
// SendAway have released so far.
func (sh *Shedder) Released() uint64 { return sh.gone.Load() }

// gonePeer reports whether s's peer has gone, without writing; a sink that
// cannot tell is live.
func gonePeer(s *Subscriber) bool {
	p, ok := s.sink.(PeerProber)
	return ok && p.PeerGone()
}

// release closes s, whose peer is gone, without a reason, and counts it
// (Released, and the hub's PeersGone).
func (sh *Shedder) release(s *Subscriber) {
	if s.state.Load() == stClosed {
		return // released meanwhile (the hub's heartbeat probes too)
	}
	s.closeWith(nil)
	sh.gone.Add(1)
	sh.hub.stats.PeersGone.Add(1)
}

// Sweep releases every subscriber whose peer is gone and returns how many
// remain: the node's live streams. It costs one non-blocking probe per
// subscriber; it does not block on any peer.
func (sh *Shedder) Sweep() int {
	subs := sh.hub.snapshotSubs()
	live := 0
	for _, s := range subs {
		if gonePeer(s) {
			sh.release(s)
			continue
		}
		live++
	}
	return live
}

// SendAway closes up to n subscribers with ErrRebalancing, the most
// recently arrived first, and returns how many it closed. It considers the
// n most recently arrived live subscribers only: those among them younger
// than minAge (by the hub's clock) are left alone, and fewer are sent away
// (the caller tries again later), rather than reaching for older ones. A
// candidate whose peer is gone is released without a goaway and counts
// neither way.
func (sh *Shedder) SendAway(n int, minAge time.Duration) int {
	if n <= 0 {
		return 0
	}
	limit := sh.hub.cfg.Now().Add(-minAge).UnixNano()
	subs := sh.hub.snapshotSubs()
	slices.SortFunc(subs, func(a, b *Subscriber) int {
		switch {
		case a.born > b.born:
			return -1
		case a.born < b.born:
			return 1
		}
		return 0
	})
	sent, young := 0, 0
	for _, s := range subs {
		if sent+young == n {
			break
		}
		switch {
		case gonePeer(s):
			sh.release(s)
		case s.state.Load() == stClosed: // closed meanwhile by its transport
		case s.born > limit:
			young++
		default:
			s.closeWith(ErrRebalancing)
			sent++
		}
	}
	sh.shed.Add(uint64(sent))
	return sent
}
