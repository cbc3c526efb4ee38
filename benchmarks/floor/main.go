//go:build linux

// Command floor measures what the scale run's traffic costs this machine
// with no product in the way: P server processes each hold N loopback TCP
// connections and write one pre-encoded 1,200-byte message (a batch of ~9
// ticks) to each connection once a second, from one loop, while P reader
// processes read them (one epoll loop each, as tickstream's load
// generator, or with -reader goroutine a goroutine per connection). It
// prints the
// servers' CPU per write and how busy the whole machine was. Whatever a real
// node, load generator, Redis and simulator add comes on top of this floor.
//
//	go run ./benchmarks/floor -procs 6 -conns 16667   # 100,000 connections
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tickstream/benchmarks/loadgen"
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
		err = serve(ctx, *conns, *size)
	case "reader":
		err = read(ctx, *addr, *conns, *reader)
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

// run starts the servers and readers, waits until every connection is up,
// measures for dur and prints the figures.
func run(ctx context.Context, procs, conns, size int, dur time.Duration, reader string) error {
	if procs < 1 || conns < 1 || conns > 19_500 {
		return errors.New("-procs must be positive and -conns between 1 and 19,500")
	}
	if reader != "epoll" && reader != "goroutine" {
		return fmt.Errorf("-reader %q: want epoll or goroutine", reader)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	// start runs this program with args; its output lines arrive on the
	// returned channel.
	start := func(args ...string) (*exec.Cmd, <-chan string, error) {
		c := exec.CommandContext(ctx, self, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		c.Stderr = os.Stderr
		stdout, err := c.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		if err := c.Start(); err != nil {
			return nil, nil, err
		}
		cmds = append(cmds, c)
		lines := make(chan string, 4)
		go func() { // ends when the process does
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		return c, lines, nil
	}
	line := func(ch <-chan string, d time.Duration) (string, error) {
		select {
		case l, ok := <-ch:
			if !ok {
				return "", errors.New("a process ended")
			}
			return l, nil
		case <-time.After(d):
			return "", errors.New("timed out")
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	var servers []*exec.Cmd
	var outs []<-chan string
	for range procs {
		c, out, err := start("-role", "server", "-conns", strconv.Itoa(conns), "-size", strconv.Itoa(size))
		if err != nil {
			return err
		}
		servers, outs = append(servers, c), append(outs, out)
	}
	for i, out := range outs {
		a, err := line(out, 10*time.Second)
		if err != nil {
			return fmt.Errorf("server %d: no address: %w", i, err)
		}
		if _, _, err := start("-role", "reader", "-addr", a, "-conns", strconv.Itoa(conns), "-reader", reader); err != nil {
			return err
		}
	}
	// Servers print "ready" once all their connections are accepted.
	for i, out := range outs {
		if l, err := line(out, 2*time.Minute); err != nil || l != "ready" {
			return fmt.Errorf("server %d: connections not all up: %q %v", i, l, err)
		}
	}
	time.Sleep(3 * time.Second) // every connection written at least twice
	busy0, total0 := machineCPU()
	cpu0 := make([]time.Duration, len(servers))
	for i, s := range servers {
		cpu0[i] = loadgen.ProcCPU(s.Process.Pid)
	}
	select {
	case <-time.After(dur):
	case <-ctx.Done():
		return ctx.Err()
	}
	busy1, total1 := machineCPU()
	var srv time.Duration
	for i, s := range servers {
		srv += loadgen.ProcCPU(s.Process.Pid) - cpu0[i]
	}
	writes := float64(procs*conns) * dur.Seconds()
	share := float64(busy1-busy0) / float64(total1-total0)
	fmt.Printf("%d connections × 1 write/s of %d bytes (%d servers, %d %s readers), %v:\n", procs*conns, size, procs, procs, reader, dur)
	fmt.Printf("  servers' CPU per write  %.1f µs\n", float64(srv.Microseconds())/writes)
	fmt.Printf("  whole machine busy      %.0f%% of its %d CPUs (%.0f%% of one core)\n", 100*share, ncpu(), 100*share*float64(ncpu()))
	return nil
}

// serve accepts conns connections, then writes size bytes to each once a
// second, spread evenly over the second, until ctx is done.
func serve(ctx context.Context, conns, size int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	cs := make([]net.Conn, 0, conns)
	for len(cs) < conns {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	fmt.Println("ready")
	msg := []byte(strings.Repeat("x", size-1) + "\n")
	t0 := time.Now()
	for round := 0; ctx.Err() == nil; round++ {
		for i, c := range cs {
			if i%100 == 0 { // pace: connection i of round r is due at r + i/conns seconds
				due := t0.Add(time.Duration(round)*time.Second + time.Duration(i)*time.Second/time.Duration(conns))
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
			}
			if _, err := c.Write(msg); err != nil {
				return err
			}
		}
	}
	return nil
}

// read opens conns connections to addr and reads them: one epoll loop for
// all, or a goroutine each.
func read(ctx context.Context, addr string, conns int, how string) error {
	var d net.Dialer
	cs := make([]net.Conn, 0, conns)
	for i := range conns {
		a := i / 100 // many source addresses keep connect(2) fast
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 2, byte(a/250%250), byte(1+a%250))}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	if how == "goroutine" {
		for _, c := range cs {
			go func() {
				b := make([]byte, 4096)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
				}
			}()
		}
		<-ctx.Done()
		return nil
	}
	// epoll: each socket leaves Go's poller (its fd is duplicated, the
	// original closed) and joins one level-triggered epoll set.
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer syscall.Close(epfd)
	for _, c := range cs {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		fd := -1
		_ = rc.Control(func(f uintptr) { fd, err = syscall.Dup(int(f)) })
		_ = c.Close()
		if err != nil {
			return err
		}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
			return err
		}
	}
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 256<<10)
	for ctx.Err() == nil {
		n, err := syscall.EpollWait(epfd, events, 100)
		if err != nil && err != syscall.EINTR {
			return err
		}
		for _, ev := range events[:max(n, 0)] {
			_, _ = syscall.Read(int(ev.Fd), buf)
		}
		if n < len(events) {
			time.Sleep(2 * time.Millisecond) // as the load generator: let data gather
		}
	}
	return nil
}

// machineCPU returns the busy and total jiffies of all CPUs.
func machineCPU() (busy, total uint64) {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	for i, s := range f {
		v, _ := strconv.ParseUint(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

func ncpu() int {
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return n
}
