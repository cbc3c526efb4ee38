//go:build linux

// Command floor measures what the scale run's traffic costs this machine
// with no product in the way: P server processes each hold N loopback TCP
// connections and write one pre-encoded 1,200-byte message (a batch of ~9
// ticks) to each connection once a second, from one loop, while P reader
// processes read them (one epoll loop each, as tickstream's load
// generator, or with -reader goroutine a goroutine per connection). It
// prints the servers' CPU per write and how busy the whole machine was.
// Whatever a real node, load generator, Redis and simulator add comes on
// top of this floor. `tickstream loadgen` measures it too, after its scale
// run, and reports the nodes' CPU per write as a multiple of it.
//
//	go run ./benchmarks/floor -procs 6 -conns 16667   # 100,000 connections
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
)

func main() {
	procs := flag.Int("procs", 6, "server processes, and as many reader processes (a process holds ~19,900 sockets here)")
	conns := flag.Int("conns", 16667, "connections per server process")
	size := flag.Int("size", 1200, "bytes per write")
	dur := flag.Duration("duration", 10*time.Second, "measurement window, after all are connected")
	reader := flag.String("reader", "epoll", "how readers read: epoll (one loop for all connections, as tickstream's load generator) or goroutine (one per connection)")
	role := flag.String("role", "", "internal: server or reader")
	addr := flag.String("addr", "", "internal: the server to read from")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "server":
		err = loadgen.FloorServe(ctx, *conns, *size, os.Stdout)
	case "reader":
		err = loadgen.FloorRead(ctx, *addr, *conns, *reader)
	case "":
		err = run(ctx, *procs, *conns, *size, *dur, *reader)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// run measures the floor with this program's own server and reader roles.
func run(ctx context.Context, procs, conns, size int, dur time.Duration, reader string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	res, err := loadgen.RunFloor(ctx, loadgen.FloorConfig{
		Procs: procs, Conns: conns, Size: size, Duration: dur, Reader: reader,
		Command: func(role string, conns, size int, addr, reader string) *exec.Cmd {
			return exec.CommandContext(ctx, self, "-role", role, "-conns", strconv.Itoa(conns),
				"-size", strconv.Itoa(size), "-addr", addr, "-reader", reader)
		},
	})
	if err != nil {
		return err
	}
	res.Print(os.Stdout)
	return nil
}
