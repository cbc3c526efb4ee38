// Package esnode runs a spec-following EventSource client for tests: the npm
// eventsource package (v3, pinned in package.json) under node. Unlike the
// repository's own clients it gives up for good on any non-200 answer, as
// the HTML standard says and as browsers do, so a test with it shows what a
// third party's client sees.
//
// It needs node and npm (Debian's nodejs and npm packages, installed by
// ./scripts/test.sh); the first run installs the pinned package with
// `npm ci` into this folder's node_modules.
package esnode

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/tooltest"
)

// Client is one EventSource to open.
type Client struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Event is what a client reported: an SSE event (hello, ready, tick,
// goaway, resync, lagging), "open", or "error". ReadyState is the source's
// readyState right after it: 2 (CLOSED) after an error means the client
// gave up for good.
type Event struct {
	Client     string `json:"c"`
	Type       string `json:"t"`
	Data       string `json:"d"`
	ID         string `json:"id"`
	ReadyState int    `json:"rs"`
	Code       int    `json:"code"`
	Message    string `json:"msg"`
}

// Closed is the readyState of a source that gave up.
const Closed = 2

var (
	installOnce sync.Once
	npmMissing  bool
)

// Dir returns the folder of the tool (package.json, clients.mjs).
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// install runs `npm ci` once if the pinned package is missing.
func install(tb testing.TB) {
	tb.Helper()
	var err error
	installOnce.Do(func() {
		if _, e := os.Stat(filepath.Join(Dir(), "node_modules", "eventsource", "package.json")); e == nil {
			return
		}
		if _, e := exec.LookPath("npm"); e != nil {
			npmMissing = true
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = Dir()
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("npm ci in %s: %v\n%s", Dir(), e, out)
		}
	})
	if npmMissing {
		tooltest.Missing(tb, "npm", "npm is not installed (it installs the eventsource package)")
	}
	if err != nil {
		tb.Fatal(err)
	}
	if _, e := os.Stat(filepath.Join(Dir(), "node_modules", "eventsource", "package.json")); e != nil {
		tb.Fatalf("the npm eventsource package is not installed in %s: run npm ci there", Dir())
	}
}

// Start runs one node process with clients and calls on for every event,
// from one goroutine, in order. The process ends when the test does.
func Start(tb testing.TB, clients []Client, on func(Event)) {
	tb.Helper()
	bin := tooltest.Path(tb, "nodejs", "node")
	install(tb)
	arg, _ := json.Marshal(clients)
	cmd := exec.Command(bin, filepath.Join(Dir(), "clients.mjs"), string(arg))
	cmd.Dir = Dir()
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start node: %v", err)
	}
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		first := true
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				continue
			}
			if ev.Type == "started" {
				if first {
					close(started)
					first = false
				}
				continue
			}
			on(ev)
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	tb.Cleanup(func() {
		_ = stdin.Close() // the script exits when its input ends
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
	})
	select {
	case <-started:
	case <-done:
		tb.Fatal("node exited before opening its clients")
	case <-time.After(30 * time.Second):
		tb.Fatal("node did not start its clients in 30 s")
	}
}
