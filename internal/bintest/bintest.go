// Package bintest builds the tickstream binary once per test process, for
// tests and benchmarks that run it as separate processes.
package bintest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Tickstream returns the path of a freshly built tickstream binary.
func Tickstream(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		dir, e := os.MkdirTemp("", "tsbin")
		if e != nil {
			err = e
			return
		}
		path = filepath.Join(dir, "tickstream")
		if out, e := exec.Command("go", "build", "-o", path, "github.com/tickstream/tickstream/cmd/tickstream").CombinedOutput(); e != nil {
			err = fmt.Errorf("go build: %v\n%s", e, out)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	return path
}
