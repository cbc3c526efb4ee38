// Package tooltest finds the programs that tests run beside Go:
// redis-server, nginx, Chromium, node and npm, python3, prlimit.
//
// When one is missing, the test skips with a message naming the Debian
// package that provides it, so `go test ./...` passes on a bare machine.
// When the environment variable TICKSTREAM_REQUIRE_TOOLS is set to a value
// other than "" or "0" (./scripts/test.sh sets it after installing every
// package), a missing program fails the test instead: a run that promised
// the tools never passes on a dependency it did not run.
package tooltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RequireEnv names the environment variable that turns a missing program
// from a skip into a failure.
const RequireEnv = "TICKSTREAM_REQUIRE_TOOLS"

// Required reports whether RequireEnv asks for every program to be present.
func Required() bool {
	v := os.Getenv(RequireEnv)
	return v != "" && v != "0"
}

// Path returns the path of the first of names that exists: a bare name is
// looked up in PATH, an absolute one (such as /usr/sbin/nginx, outside a
// user's PATH) is taken as it is. If none exists it calls Missing with
// names[0] and pkg, the Debian package that provides it.
func Path(tb testing.TB, pkg string, names ...string) string {
	tb.Helper()
	for _, name := range names {
		if filepath.IsAbs(name) {
			if fi, err := os.Stat(name); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return name
			}
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(tb, pkg, fmt.Sprintf("%s is not installed", names[0]))
	return ""
}

// Missing ends the test because what it needs is absent: it skips, or, when
// Required, fails. The message says what is missing and names pkg, the
// Debian package to install (./scripts/test.sh installs them all).
func Missing(tb testing.TB, pkg, what string) {
	tb.Helper()
	msg := fmt.Sprintf("%s: apt-get install %s (./scripts/test.sh installs every test tool)", what, pkg)
	if Required() {
		tb.Fatalf("%s; %s is set, so a missing tool fails the test", msg, RequireEnv)
		return
	}
	tb.Skip(msg)
}
