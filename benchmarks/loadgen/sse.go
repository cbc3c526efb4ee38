package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// SSE holds one SSE subscription over a raw TCP connection: the request
// written by hand, the chunked body decoded, and each `data:` line of a
// tick scanned for sym, seq and ts. It keeps one 4 KiB read buffer.
type SSE struct {
	Addr  string // host:port
	Path  string // /stream?…
	Track *Tracker
	Stats *Stats
}

// Run connects and reads until ctx is done or the connection fails.
// ready is called once the stream's ready event arrived.
func (s *SSE) Run(ctx context.Context, ready func()) error {
	c, err := dialer(&s.Stats.Bytes)(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", s.Path, s.Addr); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 4096)
	chunked, err := readHead(r)
	if err != nil {
		return err
	}
	var body io.Reader = r
	if chunked {
		body = &chunkReader{r: r}
	}
	lines := bufio.NewScanner(body)
	lines.Buffer(make([]byte, 0, 4096), 1<<20)
	var events sseEvents
	for lines.Scan() {
		line := lines.Bytes()
		if len(line) == 0 && r.Buffered() == 0 {
			s.Track.Flush() // the end of what the node wrote so far: one batch
			continue
		}
		if events.line(line, time.Now(), s.Track) && ready != nil {
			ready()
			ready = nil
		}
	}
	s.Track.Flush()
	if err := lines.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// readHead reads the response head; it fails on a non-200 status.
func readHead(r *bufio.Reader) (chunked bool, err error) {
	status, err := r.ReadString('\n')
	if err != nil {
		return false, err
	}
	if !bytes.Contains([]byte(status), []byte(" 200 ")) {
		return false, fmt.Errorf("status %q", bytes.TrimSpace([]byte(status)))
	}
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		if len(bytes.TrimSpace(h)) == 0 {
			return chunked, nil
		}
		if bytes.HasPrefix(bytes.ToLower(h), []byte("transfer-encoding: chunked")) {
			chunked = true
		}
	}
}

// chunkReader decodes an HTTP/1.1 chunked body.
type chunkReader struct {
	r    *bufio.Reader
	left int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue // the CRLF after a chunk
		}
		n, err := strconv.ParseUint(string(line), 16, 32)
		if err != nil {
			return 0, fmt.Errorf("chunk size %q", line)
		}
		if n == 0 {
			return 0, io.EOF
		}
		c.left = int(n)
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

var _ net.Conn = countingConn{}
