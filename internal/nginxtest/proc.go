package nginxtest

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// groupAttr starts nginx as the leader of a new process group, which its
// workers join, so that stop reaches them all.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// stop ends the nginx that cmd started, workers included: SIGTERM (nginx's
// fast shutdown: the master stops its workers and waits for them), then,
// if the master has not exited within 5 s, SIGKILL to the whole group. It
// returns once the master has been reaped and no process of the group is
// left.
func stop(cmd *exec.Cmd) error {
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Workers exit after the master in a fast shutdown only if it waited
	// for them; make sure, then wait for the group to empty.
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(pgid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return errors.New("nginx workers outlived their master; killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// groupAlive reports whether any process of group pgid is left.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, os.ErrPermission)
}
