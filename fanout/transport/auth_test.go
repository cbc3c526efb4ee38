package transport_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
)

func TestAuth(t *testing.T) {
	secret := []byte("s3cret")
	f := nodetest.NewFeed(t)
	f.Tick("AAPL", "MSFT")
	n := f.StartNode(func(c *node.Config) { c.Transport.AuthSecret = secret })
	good, _ := transport.MintToken(secret, []string{"AAPL"}, time.Hour)
	expired, _ := transport.MintToken(secret, []string{"*"}, -time.Minute)
	forged, _ := transport.MintToken([]byte("other"), []string{"*"}, time.Hour)
	// Expiry has whole-second precision: a token for 2s lives 1 to 2s.
	short := func() string { tok, _ := transport.MintToken(secret, []string{"*"}, 2*time.Second); return tok }

	cases := []struct {
		name, url, header string
		status            int
		reason            string
	}{
		{"missing", "/stream?symbols=AAPL", "", 401, "token is required"},
		{"expired", "/stream?symbols=AAPL&access_token=" + expired, "", 401, "expired"},
		{"forged", "/stream?symbols=AAPL", "Bearer " + forged, 401, "signature"},
		{"too narrow", "/stream?symbols=AAPL,MSFT&access_token=" + good, "", 403, "does not allow MSFT"},
		{"snapshot too narrow", "/api/snapshot?symbols=MSFT", "Bearer " + good, 403, "does not allow MSFT"},
		{"snapshot ok", "/api/snapshot?symbols=AAPL", "Bearer " + good, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", n.URL()+c.url, nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var e struct{ Error string }
			_ = json.Unmarshal(body, &e)
			if resp.StatusCode != c.status || !strings.Contains(e.Error, c.reason) {
				t.Errorf("%d %s, want %d %q", resp.StatusCode, body, c.status, c.reason)
			}
		})
	}

	t.Run("sse closes when its token expires", func(t *testing.T) {
		s := openStream(t, n.URL()+"/stream?symbols=AAPL&access_token="+short(), "")
		s.until("ready")
		ev, _ := s.until("goaway")
		if !strings.Contains(string(ev.Data), "token expired") {
			t.Errorf("goaway %s", ev.Data)
		}
	})

	t.Run("websocket checks each subscribe and closes at expiry", func(t *testing.T) {
		c := dialWS(t, n.URL()+"/ws?access_token="+good, nil)
		readWS(t, c)
		send(t, c, `{"op":"subscribe","symbols":["MSFT"]}`)
		if m := readWS(t, c); m.Type != "error" || !strings.Contains(m.Error, "does not allow MSFT") {
			t.Errorf("%+v", m)
		}
		c2 := dialWS(t, n.URL()+"/ws?symbols=AAPL&access_token="+short(), nil)
		readUntil(t, c2, "ready")
		for {
			_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := c2.ReadMessage(); err != nil {
				if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.ClosePolicyViolation {
					t.Errorf("ended with %v, want 1008", err)
				}
				break
			}
		}
		_, resp, err := websocket.DefaultDialer.Dial(strings.Replace(n.URL(), "http", "ws", 1)+"/ws", nil)
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Errorf("no token: %v %v", err, resp)
		}
	})
}
