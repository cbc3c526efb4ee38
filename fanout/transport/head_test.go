package transport_test

import (
	"net/http"
	"testing"

	"github.com/tickstream/tickstream/internal/nodetest"
)

// TestSSEHeadAnswersAsGet: HEAD /stream carries the headers a GET's
// stream does (X-Accel-Buffering included), without a stream.
func TestSSEHeadAnswersAsGet(t *testing.T) {
	f := nodetest.NewFeed(t)
	f.Tick("AAPL")
	n := f.StartNode(nil)
	req, err := http.NewRequest(http.MethodHead, n.URL()+"/stream?symbols=AAPL", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "http://example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %s", resp.Status)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
		"X-Accel-Buffering": "no", "Access-Control-Allow-Origin": "*", "X-Tickstream-Node": n.Name} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("HEAD %s = %q, want %q", k, got, want)
		}
	}
}
