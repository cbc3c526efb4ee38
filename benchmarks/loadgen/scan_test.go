//go:build linux

package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestScanTickOrders(t *testing.T) {
	for _, js := range []string{
		`{"sym":"BTC-USD","seq":81234,"bid":"1","ask":"2","last":"1","size":2,"ts":1764180000123456}`, // the node's order
		`{"sym":"BTC-USD","seq":81234,"bid":"1","ask":"2","last":"1","size":2,"ts":1764180000123456,"vol":9,"hi":"3","lo":"1"}`,
		`{"seq":81234,"sym":"BTC-USD","ts":1764180000123456,"bid":"1"}`, // any other
		`{"sym":"BTC-USD", "seq":81234, "ts":1764180000123456 }`,
	} {
		sym, seq, ts, ok := ScanTick([]byte(js))
		if !ok || string(sym) != "BTC-USD" || seq != 81234 || ts != 1764180000123456 {
			t.Errorf("%s: %s %d %d %v", js, sym, seq, ts, ok)
		}
	}
	for _, js := range []string{``, `{}`, `{"sym":"A"}`, `{"sym":"A","seq":}`, `{"sym":"A","seq":1}`} {
		if _, _, _, ok := ScanTick([]byte(js)); ok {
			t.Errorf("%q scanned as a tick", js)
		}
	}
}

func TestScanSymSeq(t *testing.T) {
	for _, js := range []string{
		`{"sym":"BTC-USD","seq":81234,"bid":"1","ask":"2","last":"1","size":2,"ts":1764180000123456,"vol":9}`,
		`{"sym":"BTC-USD","seq":81234}`,
		`{"seq":81234,"bid":"1","sym":"BTC-USD","ts":1}`, // another order: searched
	} {
		sym, seq, ok := ScanSymSeq([]byte(js))
		if !ok || string(sym) != "BTC-USD" || seq != 81234 {
			t.Errorf("%s: %s %d %v", js, sym, seq, ok)
		}
	}
	for _, js := range []string{``, `{}`, `{"sym":"A"}`, `{"sym":"A","seq":}`, `{"sym":"A","seq":x}`} {
		if _, _, ok := ScanSymSeq([]byte(js)); ok {
			t.Errorf("%q scanned as a tick", js)
		}
	}
}

// The event loop's parser must give the same ticks however the stream is
// cut into reads: in the middle of a chunk size, a line or a CRLF.
func TestEvConnFeedAnySplit(t *testing.T) {
	var body strings.Builder
	chunk := func(s string) { fmt.Fprintf(&body, "%x\r\n%s\r\n", len(s), s) }
	chunk("retry: 1000\n\nevent: hello\ndata: {}\n\n")
	chunk("event: ready\nid: c1\ndata: {\"cursor\":\"c1\"}\n\n")
	want := 0
	for b := 0; b < 20; b++ {
		var ev strings.Builder
		for k := 0; k < 1+b%4; k++ {
			want++
			fmt.Fprintf(&ev, "event: tick\ndata: {\"sym\":\"S%d\",\"seq\":%d,\"bid\":\"1\",\"ask\":\"2\",\"last\":\"1\",\"size\":1,\"ts\":%d}\n", k, b+1, 1000+b)
			if k == b%4 {
				ev.WriteString("id: c\n")
			}
			ev.WriteString("\n")
		}
		if b%5 == 0 {
			ev.WriteString(": hb\n\n")
		}
		chunk(ev.String())
	}
	stream := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body.String()
	for _, step := range []int{1, 2, 3, 7, 64, len(stream)} {
		feedInSteps(t, &EvSub{}, stream, step, want)
	}
	c := &evConn{sub: &EvSub{Track: NewTracker(nil, &Stats{}, new(atomic.Int64))}, state: evHead}
	if err := c.feed([]byte("HTTP/1.1 429 Too Many Requests\r\n\r\n"), time.Now()); err == nil || !strings.Contains(err.Error(), "429") {
		t.Errorf("a 429 gave %v", err)
	}
}

// feedInSteps feeds stream to a new connection of sub, step bytes a read,
// and checks it saw want ticks and one ready.
func feedInSteps(t *testing.T, sub *EvSub, stream string, step, want int) *evConn {
	t.Helper()
	st := &Stats{}
	sub.Track = NewTracker(nil, st, new(atomic.Int64))
	readies := 0
	sub.Ready = func() { readies++ }
	c := &evConn{sub: sub, state: evHead}
	for i := 0; i < len(stream); i += step {
		if err := c.feed([]byte(stream[i:min(i+step, len(stream))]), time.Now()); err != nil {
			t.Fatalf("step %d at %d: %v", step, i, err)
		}
	}
	sub.Track.Flush()
	if got := st.Events.Load(); got != uint64(want) || readies != 1 {
		t.Errorf("step %d: %d ticks, %d readies; want %d, 1", step, got, readies, want)
	}
	return c
}

func TestTrackerManySymbols(t *testing.T) {
	st := &Stats{}
	tr := NewTracker(nil, st, new(atomic.Int64))
	now := time.Now()
	for round := uint64(1); round <= 3; round++ {
		for i := 0; i < 100; i++ {
			tr.Tick([]byte(fmt.Sprintf("S%d", i)), round, now)
			tr.Tick([]byte(fmt.Sprintf("S%d", i)), round, now) // a duplicate is no update
		}
	}
	tr.Flush()
	if u, e := st.Updates.Load(), st.Events.Load(); u != 300 || e != 600 {
		t.Errorf("updates %d events %d; want 300, 600", u, e)
	}
}

// serverFrame is an unmasked frame, as a node writes it.
func serverFrame(op byte, payload string) string {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	default:
		b = append(b, 126, byte(n>>8), byte(n))
	}
	return string(b) + payload
}

func TestEvConnWebSocketAnySplit(t *testing.T) {
	var s strings.Builder
	s.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	s.WriteString(serverFrame(wsText, `{"type":"subscribed","symbols":["S0"]}`))
	s.WriteString(serverFrame(wsText, `{"type":"ready","cursor":"c"}`))
	want := 0
	for b := 0; b < 30; b++ {
		var m strings.Builder
		m.WriteString(`{"type":"tick","cursor":"c","data":[`)
		for k := 0; k < 1+b%5; k++ {
			if k > 0 {
				m.WriteString(",")
			}
			want++
			fmt.Fprintf(&m, `{"sym":"S%d","seq":%d,"bid":"1","ask":"2","last":"1","size":1,"ts":%d}`, k, b+1, 1000+b)
		}
		m.WriteString(strings.Repeat(" ", b*10) + "]}") // some frames over 125 bytes
		s.WriteString(serverFrame(wsText, m.String()))
		if b%7 == 0 {
			s.WriteString(serverFrame(wsPing, "hb"))
		}
	}
	stream := s.String()
	for _, step := range []int{1, 2, 5, 127, len(stream)} {
		c := feedInSteps(t, &EvSub{WS: true, WSSymbols: []string{"S0"}}, stream, step, want)
		// It said: subscribe (masked, after the 101), then a pong per ping.
		if len(c.out) == 0 || c.out[0] != 0x80|wsText || c.out[1]&0x80 == 0 {
			t.Fatalf("step %d: first frame out % x, want a masked text frame", step, c.out[:min(2, len(c.out))])
		}
		if pongs := strings.Count(string(c.out), string([]byte{0x80 | wsPong, 0x80 | 2})); pongs != 5 {
			t.Errorf("step %d: %d pongs, want 5", step, pongs)
		}
	}
	c := &evConn{sub: &EvSub{WS: true, Track: NewTracker(nil, &Stats{}, new(atomic.Int64))}, state: evBody}
	if err := c.feed([]byte(serverFrame(wsClose, "\x03\xf0slow consumer")), time.Now()); err == nil || !strings.Contains(err.Error(), "1008") {
		t.Errorf("a close frame gave %v", err)
	}
}

// A stream the server ends is reopened by the loop: the subscriber is
// told (everReady), becomes ready again and keeps receiving.
func TestEvLoopReconnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	stop := make(chan struct{})
	defer close(stop)
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := conns.Add(1)
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				body := "event: ready\ndata: {}\n\n" + fmt.Sprintf("event: tick\ndata: {\"sym\":\"A\",\"seq\":%d,\"ts\":1}\n\n", n)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(body), body)
				if n > 1 {
					<-stop // the second connection stays
				}
			}()
		}
	}()
	st := &Stats{}
	var ready, failedReady atomic.Int32
	sub := &EvSub{Addr: netip.MustParseAddrPort(l.Addr().String()), Path: "/stream", Track: NewTracker(nil, st, new(atomic.Int64)),
		Ready: func() { ready.Add(1) },
		Failed: func(err error, everReady bool) {
			if everReady {
				failedReady.Add(1)
			}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- (&EvLoop{Stats: st}).Run(ctx, []*EvSub{sub}) }()
	for ready.Load() < 2 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ready.Load() != 2 || failedReady.Load() != 1 || st.Updates.Load() != 2 {
		t.Errorf("ready %d, failed after ready %d, updates %d; want 2, 1, 2", ready.Load(), failedReady.Load(), st.Updates.Load())
	}
}

func TestLagQuantile(t *testing.T) {
	const b = `tickstream_delivery_lag_seconds_bucket{le="`
	m0 := map[string]float64{b + `0.5"}`: 10, b + `1"}`: 10, b + `2.5"}`: 10, b + `+Inf"}`: 10}
	m1 := map[string]float64{b + `0.5"}`: 60, b + `1"}`: 105, b + `2.5"}`: 110, b + `+Inf"}`: 110}
	if q := lagQuantile(m0, m1, 0.5); q != 0.5 {
		t.Errorf("p50 %v, want 0.5", q)
	}
	if q := lagQuantile(m0, m1, 0.99); q != 2.5 {
		t.Errorf("p99 %v, want 2.5", q)
	}
	if q := lagQuantile(m0, m0, 0.5); q != 0 {
		t.Errorf("nothing written: %v, want 0", q)
	}
}

// TestScanSymSeqRefusesCutNumbers: a number must end where a JSON value
// ends (',', '}' or a space) and fit a uint64. A line cut inside its seq
// (bufio.Scanner hands the last, unterminated line over when the
// connection ends) was read as a tick with a smaller seq, and a seq of 20
// or more digits wrapped.
func TestScanSymSeqRefusesCutNumbers(t *testing.T) {
	for _, js := range []string{
		`{"sym":"A","seq":54`, `{"sym":"A","seq":54x}`, `{"seq":5,"sym":"A","ts":17641`,
		`{"sym":"A","seq":18446744073709551616,"ts":1}`, `{"sym":"A","seq":99999999999999999999999,"ts":1}`,
	} {
		if sym, seq, ok := ScanSymSeq([]byte(js)); ok {
			t.Errorf("%s scanned as %s seq %d", js, sym, seq)
		}
		if sym, seq, ts, ok := ScanTick([]byte(js)); ok {
			t.Errorf("%s scanned by ScanTick as %s seq %d ts %d", js, sym, seq, ts)
		}
	}
	for js, want := range map[string]uint64{
		`{"sym":"A","seq":18446744073709551615,"ts":1}`: 18446744073709551615,
		`{"sym":"A","seq":7}`:                           7,
		`{"sym":"A", "seq": 7 ,"ts":1}`:                 7,
	} {
		if _, seq, ok := ScanSymSeq([]byte(js)); !ok || seq != want {
			t.Errorf("%s: seq %d %v, want %d", js, seq, ok, want)
		}
	}
	// An SSE client whose connection ends inside a tick's seq counts no
	// update for it (543 cut to 54 was an update after 5).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"+
			"event: ready\ndata: {}\n\n"+
			"event: tick\ndata: {\"sym\":\"A\",\"seq\":5,\"bid\":\"1\",\"ask\":\"2\",\"last\":\"1\",\"size\":1,\"ts\":1}\n\n"+
			"event: tick\ndata: {\"sym\":\"A\",\"seq\":54")
	}()
	st := &Stats{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := &SSE{Addr: l.Addr().String(), Path: "/stream", Track: NewTracker(nil, st, new(atomic.Int64)), Stats: st}
	if err := s.Run(ctx, nil); err == nil {
		t.Fatal("Run returned no error at the end of the stream")
	}
	if got := st.Updates.Load(); got != 1 {
		t.Errorf("%d updates counted, want 1 (the cut tick counted)", got)
	}
}
