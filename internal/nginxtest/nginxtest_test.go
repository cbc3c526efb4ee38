package nginxtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStopLeavesNoProcess: when the test that started nginx ends, its
// master and its workers are gone (the master used to be killed alone,
// leaving workers running with the test's deleted log open).
func TestStopLeavesNoProcess(t *testing.T) {
	var master int
	var group []int
	t.Run("proxy", func(t *testing.T) {
		Start(t, []string{"127.0.0.1:9"}, nil)
		for _, p := range procs(t) {
			if p.ppid == os.Getpid() && p.comm == "nginx" {
				master = p.pid
			}
		}
		if master == 0 {
			t.Fatal("no nginx child found")
		}
		for _, p := range procs(t) {
			if p.pgid == master {
				group = append(group, p.pid)
			}
		}
		if len(group) < 2 {
			t.Fatalf("nginx group %d has %d processes, want the master and a worker", master, len(group))
		}
	})
	for _, p := range procs(t) {
		if p.pgid == master || p.pid == master {
			t.Errorf("process %d (%s, group %d) still running after the test ended", p.pid, p.comm, p.pgid)
		}
	}
	t.Logf("nginx master %d and %d other processes stopped", master, len(group)-1)
}

type proc struct {
	pid, ppid, pgid int
	comm            string
}

// procs lists the processes in /proc with their parent and group.
func procs(t *testing.T) []proc {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []proc
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // exited meanwhile
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:]) // state ppid pgrp ...
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		out = append(out, proc{pid: pid, ppid: ppid, pgid: pgid, comm: s[open+1 : close]})
	}
	return out
}
