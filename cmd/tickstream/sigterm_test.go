package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
)

var errNothingYet = errors.New("nothing published yet")

// TestSimulateStopsOnSIGTERM: `tickstream simulate` (--procs 1 by default:
// its loop paced on its own thread for windows up to 5 ms, on a timer for
// longer ones) exits 0 after SIGTERM, its last batch confirmed (no "not
// confirmed" warning); with Redis hung, it still exits (after its flush
// timeout, 2 s, when a batch was in flight).
func TestSimulateStopsOnSIGTERM(t *testing.T) {
	bin := bintest.Tickstream(t)
	for _, tc := range []struct {
		window string
		paused bool
	}{{"2ms", false}, {"20ms", false}, {"1s", false}, {"2ms", true}} {
		name := tc.window
		if tc.paused {
			name += "-redis-paused"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			var stderr syncBuf
			cmd := exec.Command(bin, "simulate", "--redis", srv.URL(), "--rate", "20000", "--publish-every", tc.window, "--shards", "4")
			cmd.Stderr = &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() { _ = cmd.Process.Kill() }()
			wait.For(t, 30*time.Second, func() error {
				n, err := rdb.XLen(context.Background(), "ticks:{0}").Result()
				if err == nil && n == 0 {
					return errNothingYet
				}
				return err
			})
			if tc.paused {
				srv.Pause()
				defer srv.Resume()
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil && !tc.paused {
					t.Errorf("exit: %v\n%s", err, stderr.String())
				}
				// Paused, the batch in flight may or may not have had its
				// reply before the pause: either way it exits.
				if !tc.paused && strings.Contains(stderr.String(), "not confirmed") {
					t.Errorf("the last batch was not confirmed:\n%s", stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30 s after SIGTERM\n%s", stderr.String())
			}
		})
	}
}
