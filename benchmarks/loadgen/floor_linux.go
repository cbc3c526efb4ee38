//go:build linux

package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The floor: what the scale run's traffic costs this machine with no
// product in the way. Procs server processes each hold Conns loopback TCP
// connections and write one pre-encoded message of Size bytes (a batch of
// ~9 ticks) to each once a second, from one loop, while Procs reader
// processes read them (one epoll loop each, as the load generator, or a
// goroutine per connection). A node's CPU per write is judged as a
// multiple of the servers' CPU per write measured the same way on the same
// machine, in the same run: machines of one kind differ by half.

// FloorConfig is a floor measurement.
type FloorConfig struct {
	Procs, Conns, Size int
	Duration           time.Duration
	Reader             string // "epoll" or "goroutine"
	// Command returns the command that runs one floor process: role
	// "server" (conns, size) or "reader" (addr, conns, reader). The caller
	// maps them to its own flags and calls FloorServe or FloorRead.
	Command func(role string, conns, size int, addr, reader string) *exec.Cmd
}

// FloorResult is a floor measurement's outcome.
type FloorResult struct {
	Config     FloorConfig
	UsPerWrite float64 // the servers' CPU per write
	Busy       float64 // share of the whole machine busy, 0..1
	CPUs       int
}

// Print writes the result.
func (r *FloorResult) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "%d connections × 1 write/s of %d bytes (%d servers, %d %s readers), %v:\n", c.Procs*c.Conns, c.Size, c.Procs, c.Procs, c.Reader, c.Duration)
	fmt.Fprintf(w, "  servers' CPU per write  %.1f µs\n", r.UsPerWrite)
	fmt.Fprintf(w, "  whole machine busy      %.0f%% of its %d CPUs (%.0f%% of one core)\n", 100*r.Busy, r.CPUs, 100*r.Busy*float64(r.CPUs))
}

// RunFloor starts the servers and readers, waits until every connection
// is up and measures for the configured duration.
func RunFloor(ctx context.Context, cfg FloorConfig) (*FloorResult, error) {
	procs, conns, size, dur, reader := cfg.Procs, cfg.Conns, cfg.Size, cfg.Duration, cfg.Reader
	if procs < 1 || conns < 1 || conns > 19_500 || size < 1 {
		return nil, errors.New("floor: procs and size must be positive and conns between 1 and 19,500")
	}
	if reader != "epoll" && reader != "goroutine" {
		return nil, fmt.Errorf("floor: reader %q: want epoll or goroutine", reader)
	}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	// start runs one floor process; its output lines arrive on the
	// returned channel.
	start := func(role, addr string) (*exec.Cmd, <-chan string, error) {
		c := cfg.Command(role, conns, size, addr, reader)
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
		c, out, err := start("server", "")
		if err != nil {
			return nil, err
		}
		servers, outs = append(servers, c), append(outs, out)
	}
	for i, out := range outs {
		a, err := line(out, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("floor server %d: no address: %w", i, err)
		}
		if _, _, err := start("reader", a); err != nil {
			return nil, err
		}
	}
	// Servers print "ready" once all their connections are accepted.
	for i, out := range outs {
		if l, err := line(out, 2*time.Minute); err != nil || l != "ready" {
			return nil, fmt.Errorf("floor server %d: connections not all up: %q %v", i, l, err)
		}
	}
	time.Sleep(3 * time.Second) // every connection written at least twice
	busy0, total0 := machineCPU()
	cpu0 := make([]time.Duration, len(servers))
	for i, s := range servers {
		cpu0[i] = ProcCPU(s.Process.Pid)
	}
	select {
	case <-time.After(dur):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	busy1, total1 := machineCPU()
	var srv time.Duration
	for i, s := range servers {
		srv += ProcCPU(s.Process.Pid) - cpu0[i]
	}
	writes := float64(procs*conns) * dur.Seconds()
	return &FloorResult{
		Config:     cfg,
		UsPerWrite: float64(srv.Microseconds()) / writes,
		Busy:       float64(busy1-busy0) / float64(total1-total0),
		CPUs:       ncpu(),
	}, nil
}

// FloorServe is a floor server process: it prints its address, accepts
// conns connections, prints "ready", then writes size bytes to each once a
// second, spread evenly over the second, until ctx is done.
func FloorServe(ctx context.Context, conns, size int, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, ln.Addr())
	cs := make([]net.Conn, 0, conns)
	for len(cs) < conns {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	fmt.Fprintln(out, "ready")
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

// FloorRead is a floor reader process: it opens conns connections to addr
// and reads them (one epoll loop for all, or a goroutine each) until ctx is
// done.
func FloorRead(ctx context.Context, addr string, conns int, how string) error {
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
