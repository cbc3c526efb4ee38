package redisstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/tooltest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// openFds counts this process's open file descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestWriteBlockedOnPausedRedisEndsAtPastDeadline: a write waiting for
// room (Redis stopped, buffers full) ends when another goroutine sets a
// past deadline (a context's cancellation), on TCP and on a unix socket.
func TestWriteBlockedOnPausedRedisEndsAtPastDeadline(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTCP())
	for _, nw := range []struct{ net, addr string }{
		{"tcp", strings.TrimPrefix(srv.TCPURL(), "redis://")},
		{"unix", strings.TrimPrefix(srv.URL(), "unix://")},
	} {
		t.Run(nw.net, func(t *testing.T) {
			raw, err := net.Dial(nw.net, nw.addr)
			if err != nil {
				t.Fatal(err)
			}
			c := detach(raw)
			if _, ok := c.(*detachedConn); !ok {
				t.Fatalf("a %s connection was not detached: %T", nw.net, c)
			}
			defer c.Close()
			srv.Pause()
			defer srv.Resume()
			big := appendCommand(nil, "ECHO", strings.Repeat("x", 64<<20))
			type res struct {
				n   int
				err error
			}
			done := make(chan res, 1)
			go func() {
				n, err := c.Write(big)
				done <- res{n, err}
			}()
			// Whether the write waits already or not: it must end.
			if err := c.SetDeadline(time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-done:
				if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.n >= len(big) {
					t.Fatalf("write: %d of %d bytes, %v", r.n, len(big), r.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a write blocked on a paused Redis ignored a past deadline")
			}
		})
	}
}

// TestFarFutureDeadline: net.Conn accepts any deadline; one after 2262
// (beyond int64 nanoseconds) is no deadline, not one in the past.
func TestFarFutureDeadline(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTCP())
	for _, detached := range []bool{false, true} {
		raw, err := net.Dial("tcp", strings.TrimPrefix(srv.TCPURL(), "redis://"))
		if err != nil {
			t.Fatal(err)
		}
		c := raw
		if detached {
			c = detach(raw)
		}
		far := time.Now().AddDate(300, 0, 0)
		if err := c.SetDeadline(far); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Errorf("detached=%v: write with a deadline in %d: %v", detached, far.Year(), err)
		}
		var buf [16]byte
		if n, err := c.Read(buf[:]); err != nil || string(buf[:n]) != "+PONG\r\n" {
			t.Errorf("detached=%v: read with a deadline in %d: %q %v", detached, far.Year(), buf[:n], err)
		}
		c.Close()
	}
}

// TestNoFdLeakAcrossPublisherLifecycles: publishers that send, have their
// context cancelled with a batch in flight, lose their connection to
// CLIENT KILL, flush and are closed leave no descriptor open (a detached
// connection holds two: the socket and its eventfd).
func TestNoFdLeakAcrossPublisherLifecycles(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := t.Context()
	cycle := func(i int) {
		rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: strings.TrimPrefix(srv.URL(), "unix://"), PoolSize: 1})
		defer rdb.Close()
		pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		bs := split(draw(90), 30)
		cctx, cancel := context.WithCancel(ctx)
		if err := pub.Send(cctx, bs[0]); err != nil {
			t.Fatal(err)
		}
		cancel() // fires the watch: a past deadline on the connection
		if i%2 == 0 {
			if err := admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range bs[1:] {
			if err := pub.Send(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cycle(0) // descriptors opened once (the runtime's epoll and its eventfd)
	before := openFds(t)
	for i := range 40 {
		cycle(i)
	}
	if after := openFds(t); after > before {
		t.Fatalf("%d descriptors open after 40 publisher lifecycles, %d before", after, before)
	}
}

// TestDroppedPublisherReleasesItsConnection: a publisher dropped without
// Close has its own connection closed once it is collected, as the net
// package's finalizer closes a dropped net.Conn.
func TestDroppedPublisherReleasesItsConnection(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := t.Context()
	use := func() {
		pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, draw(10)); err != nil {
			t.Fatal(err)
		}
	}
	use() // the client's pool
	before := openFds(t)
	for range 20 {
		use() // dropped without Close: two descriptors each until collected
	}
	wait.For(t, 10*time.Second, func() error {
		runtime.GC() // cleanups run on their own goroutine after a cycle
		if after := openFds(t); after > before+2 {
			return errors.New(strconv.Itoa(after) + " descriptors open after 20 dropped publishers, " + strconv.Itoa(before) + " before")
		}
		return nil
	})
}

// TestWriteAfterRedisDied: on a detached socket whose peer died, a read
// reports the end and writes fail (EPIPE or ECONNRESET; SIGPIPE does not
// kill the process); neither waits for the deadline.
func TestWriteAfterRedisDied(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		srv := redistest.Start(t, redistest.WithTCP())
		network, addr := "unix", strings.TrimPrefix(srv.URL(), "unix://")
		if tcp {
			network, addr = "tcp", strings.TrimPrefix(srv.TCPURL(), "redis://")
		}
		raw, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		c := detach(raw)
		srv.Kill()
		var buf [64]byte
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(buf[:]); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: read after the peer died: %v", network, err)
		}
		var werr error
		for i := 0; i < 100 && werr == nil; i++ {
			_, werr = c.Write([]byte("PING\r\n"))
		}
		if werr == nil || errors.Is(werr, os.ErrDeadlineExceeded) {
			t.Errorf("%s: writes after the peer died: %v", network, werr)
		}
		c.Close()
	}
}

// TestFlushAfterCancelWithRedisPaused: the simulator's shutdown (its
// context cancelled while a batch is in flight and Redis hangs) ends: the
// cancelled Send returns, and Flush returns within its own context.
func TestFlushAfterCancelWithRedisPaused(t *testing.T) {
	srv, _, pub := setup(t, redistest.WithTCP())
	defer pub.Close()
	bs := batches(2, 30)
	ctx, cancel := context.WithCancel(t.Context())
	if err := pub.Send(ctx, bs[0]); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	sent := make(chan error, 1)
	go func() { sent <- pub.Send(ctx, bs[1]) }() // waits for bs[0]'s reply
	cancel()
	select {
	case <-sent:
	case <-time.After(10 * time.Second):
		t.Fatal("Send still waits on a paused Redis 10 s after its context ended")
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer fcancel()
	flushed := make(chan error, 1)
	go func() { flushed <- pub.Flush(fctx) }()
	select {
	case err := <-flushed:
		if err == nil {
			t.Error("Flush reported success with Redis paused")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Flush with a 300 ms context still runs 10 s later")
	}
}

// TestPublisherOverTLS: a publisher on a TLS Redis (rediss://) keeps its
// own connection as TLS (not a plain socket: not detached) and stores
// every batch once.
func TestPublisherOverTLS(t *testing.T) {
	dir := t.TempDir()
	crt, key := selfSigned(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	bin := tooltest.Path(t, "redis-server", "redis-server")
	srv := exec.Command(bin, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", crt, "--tls-key-file", key, "--tls-ca-cert-file", crt, "--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	opt, err := redis.ParseURL("rediss://127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	opt.TLSConfig.InsecureSkipVerify = true
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := t.Context()
	wait.For(t, 10*time.Second, func() error { return rdb.Ping(ctx).Err() })
	pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	bs := batches(5, 40)
	sendAll(t, pub, bs, nil)
	if _, ok := pub.own.conn.(*tls.Conn); !ok {
		t.Errorf("own connection over TLS is a %T", pub.own.conn)
	}
	checkExactlyOnce(t, ctx, rdb, count(bs))
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir.
func selfSigned(t *testing.T, dir string) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return crt, key
}
