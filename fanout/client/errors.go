package client

import "errors"

var (
	errLineTooLong = errors.New("sse: line longer than 1 MiB")
	// ErrRefused means the node refused the subscription (bad symbols,
	// interval or mode): retrying will not help.
	ErrRefused = errors.New("subscription refused")
)
