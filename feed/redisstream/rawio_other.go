//go:build !linux

package redisstream

import "net"

// rawIO is Linux only; elsewhere the connection's own methods are used.
type rawIO struct{}

func newRawIO(net.Conn) *rawIO { return nil }

func (*rawIO) read([]byte) (int, error)  { panic("unreachable") }
func (*rawIO) write([]byte) (int, error) { panic("unreachable") }
