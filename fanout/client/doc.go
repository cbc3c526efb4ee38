// Package client is the Go client of tickstream's SSE and WebSocket
// streams: typed ticks with exact decimal prices, automatic reconnect with
// jittered backoff, resume from the last cursor, and resync and lagging
// notices surfaced to the caller. It is what `tickstream tail`, the load
// generator and the benchmarks use.
package client
