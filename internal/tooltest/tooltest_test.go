package tooltest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTB records how a test ended instead of ending it.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skip(args ...any)                  { f.skipped = args[0].(string) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = format }

// TestPathSkipsOrFailsOnAMissingProgram guards the bare-machine contract: a
// missing program skips with the Debian package's name, unless RequireEnv
// is set, when it fails; a present program is returned, from PATH or by an
// absolute path.
func TestPathSkipsOrFailsOnAMissingProgram(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "present-tool")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)

	t.Setenv(RequireEnv, "")
	f := &fakeTB{}
	if got := Path(f, "some-package", "absent-tool", "present-tool"); got != prog || f.skipped != "" || f.failed != "" {
		t.Errorf("present program: got %q, skipped %q, failed %q", got, f.skipped, f.failed)
	}
	f = &fakeTB{}
	if got := Path(f, "some-package", "/nonexistent/tool", prog); got != prog {
		t.Errorf("absolute path: got %q, want %q", got, prog)
	}
	f = &fakeTB{}
	Path(f, "some-package", "absent-tool")
	if !strings.Contains(f.skipped, "absent-tool is not installed") || !strings.Contains(f.skipped, "apt-get install some-package") || f.failed != "" {
		t.Errorf("missing program without %s: skipped %q, failed %q", RequireEnv, f.skipped, f.failed)
	}

	t.Setenv(RequireEnv, "1")
	f = &fakeTB{}
	Path(f, "some-package", "absent-tool")
	if f.failed == "" || f.skipped != "" {
		t.Errorf("missing program with %s=1: skipped %q, failed %q", RequireEnv, f.skipped, f.failed)
	}
	t.Setenv(RequireEnv, "0")
	f = &fakeTB{}
	Path(f, "some-package", "absent-tool")
	if f.skipped == "" || f.failed != "" {
		t.Errorf("missing program with %s=0: skipped %q, failed %q", RequireEnv, f.skipped, f.failed)
	}
}
