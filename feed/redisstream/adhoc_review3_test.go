package redisstream

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestReview3FilterPassesRESP3Types: attributes, push, maps, sets, doubles,
// big numbers, booleans, nulls, blob errors and verbatim strings pass the
// filter as they are, cut at every place (passes on cbc3afe).
func TestReview3FilterPassesRESP3Types(t *testing.T) {
	in := []byte("|1\r\n+key\r\n,1.5\r\n(123456789012345678901234567890\r\n#t\r\n!5\r\nER\nR!\r\n=8\r\ntxt:a\nb$\r\n>2\r\n$3\r\n$\n*\r\n_\r\n%1\r\n$1\r\nk\r\n=12\r\ntxt:12345678\r\n~1\r\n:-5\r\n$-1\r\n*-1\r\n")
	want := append([]byte(nil), in[:bytes.Index(in, []byte("%1"))]...)
	want = append(want, "%1\r\n$1\r\nk\r\n"...)
	want = appendBulk(want, tooLarge)
	want = append(want, "~1\r\n:-5\r\n$-1\r\n*-1\r\n"...)
	for step := 1; step < 8; step++ {
		f := respFilter{max: 10}
		var got []byte
		for i := 0; i < len(in); i += step {
			got = f.filter(got, in[i:min(i+step, len(in))])
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d:\n got %q\nwant %q", step, got, want)
		}
	}
}

// scriptConn serves data in reads of random sizes.
type scriptConn struct {
	net.Conn
	data []byte
	rng  *rand.Rand
}

func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *scriptConn) SetDeadline(time.Time) error { return nil }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(c.data), 1+c.rng.IntN(1<<c.rng.IntN(22)))
	n := copy(p, c.data[:k])
	c.data = c.data[n:]
	return n, nil
}

// TestReview3DropBigRandomCuts: XREAD replies with strings over maxString
// at random places, read in random cuts: roundTrip hands parse the reply
// with each replaced by tooLarge (passes on cbc3afe).
func TestReview3DropBigRandomCuts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 60 {
		var raw, want []byte
		n := 1 + rng.IntN(4)
		hdr := "*1\r\n*2\r\n$4\r\nkey0\r\n*" + strconv.Itoa(n) + "\r\n"
		raw, want = append(raw, hdr...), append(want, hdr...)
		for i := range n {
			e := "*2\r\n$3\r\n1-" + strconv.Itoa(i) + "\r\n*2\r\n$1\r\nb\r\n"
			raw, want = append(raw, e...), append(want, e...)
			size := rng.IntN(100)
			if rng.IntN(3) == 0 {
				size = maxString + 1 + rng.IntN(100)
			}
			body := bytes.Repeat([]byte{'\n'}, size)
			raw = appendBulk(raw, body)
			if size > maxString {
				want = appendBulk(want, tooLarge)
			} else {
				want = appendBulk(want, body)
			}
		}
		c := &xreadConn{conn: &scriptConn{data: raw, rng: rng}}
		var got []byte
		err := c.roundTrip(context.Background(), []byte("x"), time.Minute, func(b []byte) error {
			if err := wholeReply(b); err != nil {
				return err
			}
			got = append([]byte(nil), b...)
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: got %d bytes, want %d", round, len(got), len(want))
		}
	}
}
