//go:build linux

// Package deploy_test runs what deploy/ ships: the container image
// (Containerfile, scripts/image.sh), the compose file's commands, the
// systemd unit and the sample nginx configuration, with the real tools.
// The package holds tests only.
package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/wait"
)

// root is the repository's top directory.
func root(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// need returns the path of a program, or skips the test naming the Debian
// package that provides it (./scripts/test.sh installs them all).
func need(tb testing.TB, prog, pkg string) string {
	tb.Helper()
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	if p := "/usr/sbin/" + prog; isExec(p) {
		return p
	}
	tb.Skipf("%s is not installed: apt-get install %s (./scripts/test.sh installs it)", prog, pkg)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode()&0o111 != 0
}

// proc is a process a test started; it is stopped (SIGTERM, then SIGKILL
// after 15 s) when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr
	done chan struct{}
	// listen receives the address of the first "listening on http://ADDR/"
	// line of stdout (tickstream serve).
	listen chan string
}

var listenRE = regexp.MustCompile(`listening on http://([^/\s]+)/`)

// start runs name args with env added to the test's environment.
func start(tb testing.TB, env []string, name string, args ...string) *proc {
	tb.Helper()
	p := &proc{name: filepath.Base(name), done: make(chan struct{}), listen: make(chan string, 1)}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.Write([]byte(line + "\n"))
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case p.listen <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { <-scanned; _ = p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			tb.Errorf("%s did not stop within 15s of SIGTERM; output:\n%s", p.name, p.output())
		}
	})
	return p
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// addr waits for the process's "listening on" line.
func (p *proc) addr(tb testing.TB) string {
	tb.Helper()
	select {
	case a := <-p.listen:
		return a
	case <-p.done:
		tb.Fatalf("%s exited before listening: %v\n%s", p.name, p.cmd.ProcessState, p.output())
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s did not listen within 30s:\n%s", p.name, p.output())
	}
	return ""
}

// waitReady waits until base/readyz answers 200.
func waitReady(tb testing.TB, p *proc, base string) {
	tb.Helper()
	wait.For(tb, 30*time.Second, func() error {
		select {
		case <-p.done:
			tb.Fatalf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.output())
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s/readyz: %s", base, resp.Status)
		}
		return nil
	})
}

// run runs a command to its end and returns its combined output.
func run(tb testing.TB, name string, args ...string) (string, error) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root(tb)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitFor polls cond for up to 30 s.
func waitFor(tb testing.TB, cond func() error) {
	tb.Helper()
	wait.For(tb, 30*time.Second, cond)
}
