// Package benchmarks compares tickstream's transports over real sockets:
// a real fan-out node (the tickstream binary, in its own process so its CPU
// is measured alone) on a real redis-server, fed by the real publisher, and
// 1,000 real clients with keep-alive, for SSE, WebSocket, short polling and
// long polling, under three loads. Run:
//
//	go test -run XXX -bench . ./benchmarks                 # ~3 minutes
//	go test -run XXX -bench . -benchtime 10x ./benchmarks  # 10 s windows
//
// One op is one second of measurement, at least 3 (sparse load: at least 20).
package benchmarks
