// Package redistest starts private redis-server instances for tests: each
// on its own unix socket in its own temporary directory, killed when the
// test ends. If redis-server is not installed it skips the test naming the
// Debian package, or fails it when tooltest.RequireEnv is set (as
// ./scripts/test.sh, which installs it, does).
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/internal/tooltest"
)

// Server is a running private redis-server.
type Server struct {
	tb      testing.TB
	dir     string
	sock    string
	port    int
	persist bool
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Option configures Start.
type Option func(*Server)

// WithPersistence turns on the append-only file, fsynced on every write,
// so that a killed server restarts with its data.
func WithPersistence() Option { return func(s *Server) { s.persist = true } }

// WithTCP makes the server listen on a free loopback TCP port as well as the
// unix socket (for clients, such as separate processes, that need host:port).
func WithTCP() Option { return func(s *Server) { s.port = freePort(s.tb) } }

// Start starts a private redis-server and stops it when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := tooltest.Path(tb, "redis-server", "redis-server")
	// Unix socket paths are limited to ~100 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "rt")
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{tb: tb, dir: dir, sock: filepath.Join(dir, "redis.sock")}
	for _, o := range opts {
		o(s)
	}
	tb.Cleanup(func() {
		s.Kill()
		_ = os.RemoveAll(dir)
	})
	s.start(bin)
	return s
}

func (s *Server) start(bin string) {
	s.tb.Helper()
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--unixsocket", s.sock, "--unixsocketperm", "700",
		"--dir", s.dir, "--save", "", "--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"), "--protected-mode", "no",
	}
	if s.persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, s.exited)
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: s.sock})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.tb.Fatalf("redis-server did not start: %v\n%s", err, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// URL returns a go-redis URL for the server's unix socket.
func (s *Server) URL() string { return "unix://" + s.sock }

// TCPURL returns a redis:// URL on loopback; the server must have been
// started WithTCP.
func (s *Server) TCPURL() string {
	if s.port == 0 {
		s.tb.Fatal("redistest: TCPURL needs WithTCP")
	}
	return fmt.Sprintf("redis://127.0.0.1:%d", s.port)
}

// Client returns a go-redis client for the server, closed when the test
// ends.
func (s *Server) Client() *redis.Client {
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: s.sock})
	s.tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Kill kills the server with SIGKILL (no shutdown, no final save) and waits
// for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart kills the server and starts it again on the same socket. With
// keepData false the data files are deleted first, so it comes back empty,
// as a server without persistence does.
func (s *Server) Restart(keepData bool) {
	s.tb.Helper()
	s.Kill()
	if !keepData {
		_ = os.RemoveAll(filepath.Join(s.dir, "appendonlydir"))
		_ = os.Remove(filepath.Join(s.dir, "dump.rdb"))
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatal(err)
	}
	s.start(bin)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SaveData copies the server's persisted data (its append-only files) as
// they are now, for RestoreData: a backup taken while nothing is being
// written. The server must have been started WithPersistence.
func (s *Server) SaveData() (backup string) {
	s.tb.Helper()
	if !s.persist {
		s.tb.Fatal("redistest: SaveData needs WithPersistence")
	}
	backup, err := os.MkdirTemp("", "rtbak")
	if err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(func() { _ = os.RemoveAll(backup) })
	if err := copyDir(filepath.Join(s.dir, "appendonlydir"), filepath.Join(backup, "appendonlydir")); err != nil {
		s.tb.Fatalf("save redis data: %v", err)
	}
	return backup
}

// RestoreData kills the server and restarts it on the same socket with the
// data of an earlier SaveData: Redis restored from an older snapshot, the
// writes since then lost.
func (s *Server) RestoreData(backup string) {
	s.tb.Helper()
	s.Kill()
	dst := filepath.Join(s.dir, "appendonlydir")
	_ = os.RemoveAll(dst)
	if err := copyDir(filepath.Join(backup, "appendonlydir"), dst); err != nil {
		s.tb.Fatalf("restore redis data: %v", err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatal(err)
	}
	s.start(bin)
}

func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Pause stops the server with SIGSTOP (a hung Redis: connections stay
// open, nothing answers) until Resume or the end of the test.
func (s *Server) Pause() {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(s.Resume)
}

// Resume continues a paused server.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }
