package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// TestNodePicker: the picker learns the rebalancing nodes from /api/nodes
// (one that does not rebalance serves direct clients and is left out) and
// sends reconnects to the least loaded, counting its own picks.
func TestNodePicker(t *testing.T) {
	a, b := netip.MustParseAddrPort("127.0.0.1:1001"), netip.MustParseAddrPort("127.0.0.1:1002")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"nodes":[{"url":"http://%s","subscribers":10,"rebalance":true},{"url":"http://%s","subscribers":7,"rebalance":true},{"url":"http://127.0.0.1:1003","subscribers":0,"rebalance":false}]}`, a, b)
	}))
	defer srv.Close()
	seed := netip.MustParseAddrPort(srv.Listener.Addr().(*net.TCPAddr).AddrPort().String())
	p := NewPicker([]netip.AddrPort{seed})
	if got := p.Pick(); got != seed {
		t.Fatalf("before any listing: picked %v, want the seed %v", got, seed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.nodes)
		p.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the picker never read /api/nodes")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done // no refresh between the picks below
	got := map[netip.AddrPort]int{}
	for range 5 {
		got[p.Pick()]++
	}
	// b holds 7, a 10: three picks go to b, then they alternate.
	if got[b] != 4 || got[a] != 1 {
		t.Errorf("picks %v, want 4 on %v and 1 on %v", got, b, a)
	}
}
