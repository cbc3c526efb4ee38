package transport

import (
	"strconv"
	"testing"

	"github.com/tickstream/tickstream/fanout"
)

// benchBatch is a raw batch of n ticks with a resume point every 8.
func benchBatch(n int) *fanout.Batch {
	b := &fanout.Batch{Cursor: "1700000000000-0.42"}
	for i := range n {
		b.Updates = append(b.Updates, &fanout.Update{Sym: "AAPL",
			JSON: []byte(`{"sym":"AAPL","px":"187.25","sz":100,"seq":` + strconv.Itoa(i) + `,"ts":1700000000000000}`)})
		if (i+1)%8 == 0 || i == n-1 {
			b.Marks = append(b.Marks, fanout.Mark{End: i + 1, Cursor: "1700000000000-" + strconv.Itoa(i)})
		}
	}
	return b
}

// BenchmarkEncodeBatch measures a live SSE batch's encoding into a pooled
// buffer, chunked (the hot path of every SSE write): no allocation.
func BenchmarkEncodeBatch(b *testing.B) {
	k := &sseSink{chunked: true}
	batch := benchBatch(32)
	b.ReportAllocs()
	for b.Loop() {
		bp := bufPool.Get().(*[]byte)
		_ = k.encodeInto(bp, batch)
		bufPool.Put(bp)
	}
}

// BenchmarkEncodeHeartbeat measures a heartbeat's encoding.
func BenchmarkEncodeHeartbeat(b *testing.B) {
	k := &sseSink{chunked: true}
	batch := &fanout.Batch{Heartbeat: true}
	b.ReportAllocs()
	for b.Loop() {
		bp := bufPool.Get().(*[]byte)
		_ = k.encodeInto(bp, batch)
		bufPool.Put(bp)
	}
}
