//go:build !linux

package redisstream

import "net"

// detach is Linux only (detach_linux.go); elsewhere the connection stays
// on Go's network poller.
func detach(conn net.Conn) net.Conn { return conn }
