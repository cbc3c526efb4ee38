package fanout

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
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

// Shedder sends a hub's subscribers away a few at a time, the longest
// connected first, so that a subscriber that just arrived (perhaps sent
// away by another node) is not moved again. It remembers when it first saw
// each subscriber: call Observe now and then (every second or so) so that
// the order reflects arrival; Shed observes too. Safe for concurrent use.
type Shedder struct {
	hub  *Hub
	shed atomic.Uint64

	mu   sync.Mutex
	gen  uint64
	seen map[*Subscriber]uint64 // generation of the Observe that first saw it
}

// NewShedder returns a Shedder of h.
func (h *Hub) NewShedder() *Shedder {
	return &Shedder{hub: h, seen: make(map[*Subscriber]uint64)}
}

// Shed reports how many subscribers Shed has sent away so far.
func (sh *Shedder) Shed() uint64 { return sh.shed.Load() }

// Observe notes the subscribers that arrived since the last call and
// forgets those that left.
func (sh *Shedder) Observe() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.observe()
}

// observe, under sh.mu, returns the live subscribers.
func (sh *Shedder) observe() []*Subscriber {
	subs := sh.hub.snapshotSubs()
	sh.gen++
	live := make(map[*Subscriber]uint64, len(subs))
	for _, s := range subs {
		g, ok := sh.seen[s]
		if !ok {
			g = sh.gen
		}
		live[s] = g
	}
	sh.seen = live
	return subs
}

// SendAway closes up to n subscribers with ErrRebalancing, the longest
// connected first (ties in random order), and returns how many it closed.
func (sh *Shedder) SendAway(n int) int {
	if n <= 0 {
		return 0
	}
	sh.mu.Lock()
	subs := sh.observe()
	rand.Shuffle(len(subs), func(i, j int) { subs[i], subs[j] = subs[j], subs[i] })
	slices.SortStableFunc(subs, func(a, b *Subscriber) int {
		ga, gb := sh.seen[a], sh.seen[b]
		switch {
		case ga < gb:
			return -1
		case ga > gb:
			return 1
		}
		return 0
	})
	subs = subs[:min(n, len(subs))]
	for _, s := range subs {
		delete(sh.seen, s)
	}
	sh.mu.Unlock()
	for _, s := range subs {
		s.closeWith(ErrRebalancing)
	}
	sh.shed.Add(uint64(len(subs)))
	return len(subs)
}
