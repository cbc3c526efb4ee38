//go:build !linux

package loadgen

import (
	"context"
)

// Run reports ErrLinuxOnly: the event loop is built on epoll.
func (e *EvLoop) Run(ctx context.Context, subs []*EvSub) error { return ErrLinuxOnly }
