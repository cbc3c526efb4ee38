// Package chaos holds the fault test: real redis-server, simulator and
// three serve processes behind nginx, subscribers over SSE and WebSocket,
// while a driver kills, restarts and pauses them. It has no code of its own.
package chaos
