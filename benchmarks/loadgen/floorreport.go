package loadgen

import (
	"fmt"
	"io"
)

// NodeUsPerWrite is the nodes' CPU per write, all told (reading the feed,
// timers and housekeeping included): their CPU over the hold divided by
// the writes they made. Zero when nothing was written.
func (r *ScaleResult) NodeUsPerWrite() float64 {
	if r.WritesPerSec <= 0 {
		return 0
	}
	var cores float64
	for _, n := range r.Nodes {
		cores += n.CPUPercent / 100
	}
	return 1e6 * cores / r.WritesPerSec
}

// BytesPerWrite is the mean size of a node's write during the hold.
func (r *ScaleResult) BytesPerWrite() int {
	if r.WritesPerSec <= 0 {
		return 0
	}
	return int(r.BytesPerSec / r.WritesPerSec)
}

// PrintVsFloor writes the nodes' CPU per write as a multiple of the floor
// measured on the same machine in the same run.
func PrintVsFloor(w io.Writer, r *ScaleResult, f *FloorResult) {
	fmt.Fprintf(w, "\nfloor, measured after the run on the same machine: ")
	f.Print(w)
	node := r.NodeUsPerWrite()
	fmt.Fprintf(w, "  node CPU per write    %.1f µs all told (feed reading included) = %.2f× the floor's %.1f µs\n",
		node, node/f.UsPerWrite, f.UsPerWrite)
}
