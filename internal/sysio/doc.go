// Package sysio reads and writes non-blocking sockets (Unix) without
// entering the Go scheduler's system-call state, for the feed's
// connections and the subscribers' sockets. Callers wait for readiness on
// Go's network poller (syscall.RawConn), as net.Conn does.
package sysio
