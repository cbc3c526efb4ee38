//go:build unix && !linux

package sysio

import "syscall"

// Write is syscall.Write (Linux: a raw system call).
func Write(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }

// Read is syscall.Read (Linux: a raw system call).
func Read(fd int, p []byte) (int, error) { return syscall.Read(fd, p) }
