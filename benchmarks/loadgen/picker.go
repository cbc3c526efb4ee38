package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"
)

// NodePicker places reconnecting subscribers the way a least_conn proxy
// would, for scale runs without one: it reads the cluster's nodes and their
// subscriber counts from a node's GET /api/nodes twice a second, and picks
// the node with the fewest, counting its own picks since the last read.
// It learns nodes added during the run, and follows only the nodes listed
// as rebalancing (a --rebalance=false node serves direct clients).
type NodePicker struct {
	mu    sync.Mutex
	nodes []netip.AddrPort
	count map[netip.AddrPort]int
}

// NewPicker returns a picker that knows seeds (node addresses) until the
// first read.
func NewPicker(seeds []netip.AddrPort) *NodePicker {
	p := &NodePicker{nodes: append([]netip.AddrPort(nil), seeds...), count: map[netip.AddrPort]int{}}
	return p
}

// Run refreshes the picker until ctx is done.
func (p *NodePicker) Run(ctx context.Context) {
	c := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		p.refresh(ctx, c)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *NodePicker) refresh(ctx context.Context, c *http.Client) {
	p.mu.Lock()
	known := append([]netip.AddrPort(nil), p.nodes...)
	p.mu.Unlock()
	for _, n := range known {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.String()+"/api/nodes", nil)
		resp, err := c.Do(req)
		if err != nil {
			continue
		}
		var v struct {
			Nodes []struct {
				URL         string `json:"url"`
				Subscribers int    `json:"subscribers"`
				InFlight    int    `json:"in_flight"`
				Rebalance   bool   `json:"rebalance"`
			} `json:"nodes"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&v)
		resp.Body.Close()
		if err != nil || len(v.Nodes) == 0 {
			continue
		}
		nodes := make([]netip.AddrPort, 0, len(v.Nodes))
		count := make(map[netip.AddrPort]int, len(v.Nodes))
		for _, l := range v.Nodes {
			u, err := url.Parse(l.URL)
			if err != nil || !l.Rebalance {
				continue
			}
			a, err := netip.ParseAddrPort(u.Host)
			if err != nil {
				continue
			}
			nodes = append(nodes, a)
			count[a] = l.Subscribers
		}
		if len(nodes) > 0 {
			p.mu.Lock()
			p.nodes, p.count = nodes, count
			p.mu.Unlock()
			return
		}
	}
}

// Pick returns the node with the fewest subscribers, and counts the pick.
func (p *NodePicker) Pick() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best netip.AddrPort
	for _, n := range p.nodes {
		if !best.IsValid() || p.count[n] < p.count[best] {
			best = n
		}
	}
	if best.IsValid() {
		p.count[best]++
	}
	return best
}
