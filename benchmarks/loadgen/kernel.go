package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// TCPCounters are the machine's TCP counters that explain a bad run on
// loopback: segments retransmitted (a receive queue dropped them), receive
// queue drops (socket memory ran out), and memory pressure episodes (the
// kernel's tcp_mem limit was reached). All count since boot;
// a run reports the difference.
type TCPCounters struct {
	RetransSegs, RcvQDrop, MemoryPressures uint64
}

// ReadTCPCounters reads them from /proc/net/snmp and /proc/net/netstat.
func ReadTCPCounters() (TCPCounters, error) {
	var c TCPCounters
	snmp, err := procTable("/proc/net/snmp", "Tcp:")
	if err != nil {
		return c, err
	}
	ext, err := procTable("/proc/net/netstat", "TcpExt:")
	if err != nil {
		return c, err
	}
	c.RetransSegs = snmp["RetransSegs"]
	c.RcvQDrop = ext["TCPRcvQDrop"]
	c.MemoryPressures = ext["TCPMemoryPressures"]
	return c, nil
}

// Sub returns c - base.
func (c TCPCounters) Sub(base TCPCounters) TCPCounters {
	return TCPCounters{c.RetransSegs - base.RetransSegs, c.RcvQDrop - base.RcvQDrop, c.MemoryPressures - base.MemoryPressures}
}

// procTable parses a /proc/net table: a header line and a value line,
// both starting with prefix.
func procTable(path, prefix string) (map[string]uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tcp counters: %w", err)
	}
	var rows [][]string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			rows = append(rows, strings.Fields(l)[1:])
		}
	}
	if len(rows) < 2 || len(rows[0]) != len(rows[1]) {
		return nil, fmt.Errorf("tcp counters: %s has no %s table", path, prefix)
	}
	out := make(map[string]uint64, len(rows[0]))
	for i, k := range rows[0] {
		v, _ := strconv.ParseUint(rows[1][i], 10, 64)
		out[k] = v
	}
	return out, nil
}

// TCPMemKB returns the kernel's TCP buffer memory in use now (KB), from
// /proc/net/sockstat, and its pressure threshold (the middle of tcp_mem).
func TCPMemKB() (used, pressure int64) {
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "TCP:" {
				for i := 1; i+1 < len(f); i += 2 {
					if f[i] == "mem" {
						v, _ := strconv.ParseInt(f[i+1], 10, 64)
						used = v * int64(os.Getpagesize()) / 1024
					}
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			pressure = v * int64(os.Getpagesize()) / 1024
		}
	}
	return used, pressure
}
