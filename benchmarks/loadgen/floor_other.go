//go:build !linux

package loadgen

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"time"
)

// FloorConfig is a floor measurement (Linux only: it reads /proc and
// epoll).
type FloorConfig struct {
	Procs, Conns, Size int
	Duration           time.Duration
	Reader             string
	Command            func(role string, conns, size int, addr, reader string) *exec.Cmd
}

// FloorResult is a floor measurement's outcome.
type FloorResult struct {
	Config     FloorConfig
	UsPerWrite float64
	Busy       float64
	CPUs       int
}

// Print writes the result.
func (r *FloorResult) Print(w io.Writer) { fmt.Fprintln(w, "no floor measured") }

// RunFloor is not supported outside Linux.
func RunFloor(context.Context, FloorConfig) (*FloorResult, error) { return nil, ErrLinuxOnly }

// FloorServe is not supported outside Linux.
func FloorServe(context.Context, int, int, io.Writer) error { return ErrLinuxOnly }

// FloorRead is not supported outside Linux.
func FloorRead(context.Context, string, int, string) error { return ErrLinuxOnly }
