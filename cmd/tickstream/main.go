// Command tickstream streams live market prices to many screens and
// scripts at once. Subcommands:
//
//	run       the one-command demo: embedded store, simulator and a node (default)
//	simulate  publish simulated ticks into Redis
//	serve     run a fan-out node on Redis
//	tail      print a node's stream, one line per tick
//	loadgen   open many subscribers and report delivery and latency
//	token     mint a subscription token for nodes run with --auth-secret
//	version   print the module version and VCS revision (also --version)
//
// Every flag has an environment fallback, TICKSTREAM_<FLAG> (upper case,
// dashes as underscores); `tickstream <command> --help` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tickstream:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a bad command line; main exits 2 for it.
type usageError struct{ error }

// Run runs the subcommand named by args[0] (run when there is none).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "--version" || a == "-version" || a == "--help" || a == "-h" || a == "-help":
			cmd, args = a, args[1:]
		case a != "" && a[0] != '-':
			cmd, args = a, args[1:]
		}
	}
	switch cmd {
	case "run":
		return runDemo(ctx, args, stdout, stderr)
	case "simulate":
		return runSimulate(ctx, args, stdout, stderr)
	case "serve":
		return runServe(ctx, args, stdout, stderr)
	case "tail":
		return runTail(ctx, args, stdout, stderr)
	case "loadgen":
		return runLoadgen(ctx, args, stdout, stderr)
	case "token":
		return runToken(ctx, args, stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version())
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q (commands: run, simulate, serve, tail, loadgen, token, version; see tickstream --help)", cmd)}
}

const usage = `tickstream streams live market prices over SSE and WebSocket.

Usage:
  tickstream [run] [flags]            the demo: embedded store, simulator, one node on 127.0.0.1:8080
  tickstream simulate --redis URL     publish simulated ticks into Redis
  tickstream serve --redis URL        run a fan-out node (any number share one Redis)
  tickstream tail URL --symbols A,B   print a node's stream, one line per tick
  tickstream loadgen ...              open many subscribers and report delivery and latency
  tickstream token --symbols A,B      mint a subscription token (with --auth-secret on the nodes)
  tickstream version                  the module version and VCS revision (also --version)

Run 'tickstream <command> --help' for a command's flags. Every flag can also be
set in the environment as TICKSTREAM_<FLAG>, e.g. TICKSTREAM_REDIS.
`
