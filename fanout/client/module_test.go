package client_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tickstream/tickstream/internal/nodetest"
)

// TestClientFromAnotherModule guards the module path: a program in a
// module of its own requires github.com/tickstream/tickstream (through a
// replace to this checkout, as a user pins a fork or a local copy), builds
// with nothing renamed, and streams ticks from a node with the Go client.
func TestClientFromAnotherModule(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/quant\n\ngo 1.26.0\n\nrequire github.com/tickstream/tickstream v0.0.0\n\nreplace github.com/tickstream/tickstream => "+root+"\n")
	write("main.go", `package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tickstream/tickstream/fanout/client"
)

var errDone = errors.New("done")

func main() {
	n := 0
	err := client.Stream(context.Background(), client.Config{URL: os.Args[1], Symbols: []string{"AAPL"}, Raw: true}, func(m client.Message) error {
		if m.Kind == client.Tick {
			fmt.Println(m.Tick.Sym, m.Tick.Seq, m.Tick.Last)
			if n++; n == 3 {
				return errDone
			}
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`)
	// The checkout's go.sum vouches for the same dependencies: no network.
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	write("go.sum", string(sum))
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("go", "mod", "tidy")
	run("go", "build", "-o", "quant", ".")

	f := nodetest.NewFeed(t)
	stop := f.RunSimulator(200, 0)
	defer stop()
	n := f.StartNode(nil)
	out := run(filepath.Join(dir, "quant"), n.URL())
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "AAPL ") {
		t.Errorf("the other module's program printed %q, want 3 AAPL ticks", out)
	}
}
