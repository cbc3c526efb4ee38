//go:build unix && !linux

package transport

const tcpUserTimeout = 0 // Linux only
