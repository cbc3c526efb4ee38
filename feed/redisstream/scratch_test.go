package redisstream

import (
	"testing"

	"github.com/tickstream/tickstream/feed"
)

// TestScratchReusesAndBounds: updates handed out stay put while more are
// (a chunk never moves), reset clears every one handed out (the scratch
// pins no reply) and keeps at most maxScratchChunks chunks.
func TestScratchReusesAndBounds(t *testing.T) {
	var s scratch
	js := []byte(`{"sym":"AAPL"}`)
	n := (maxScratchChunks+3)*scratchChunk + 7
	ups := make([]*feed.Update, n)
	for i := range ups {
		ups[i] = s.next()
		*ups[i] = feed.Update{Sym: "AAPL", Seq: uint64(i + 1), JSON: js}
	}
	for i, u := range ups {
		if u.Seq != uint64(i+1) {
			t.Fatalf("update %d moved or was overwritten: seq %d", i, u.Seq)
		}
	}
	s.reset()
	if len(s.chunks) != maxScratchChunks {
		t.Errorf("%d chunks kept, want %d", len(s.chunks), maxScratchChunks)
	}
	for c, ch := range s.chunks {
		for i := range ch {
			if ch[i].JSON != nil || ch[i].Seq != 0 {
				t.Fatalf("chunk %d update %d not cleared: %+v", c, i, ch[i])
			}
		}
	}
	// Used again from the start: the first update handed out is the first
	// of the first chunk.
	if u := s.next(); u != &s.chunks[0][0] {
		t.Error("reset did not start over")
	}
}
