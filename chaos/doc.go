// Package chaos holds the end-to-end fault tests of a whole deployment:
// real redis-server, simulator and serve processes (the tickstream binary,
// built once by internal/bintest), nginx in front of them with
// deploy/nginx.conf, and subscribers over SSE and WebSocket, while a driver
// kills, restarts, pauses and drains them or writes into Redis behind
// them. It has no code of its own: only tests.
//
//   - chaos_test.go: TestChaos, the fault driver over three nodes (about a
//     minute; skipped with -short).
//   - faults_test.go: entries injected into Redis never reach subscribers;
//     a Redis restored from an older snapshot makes every node resync.
//   - exact_test.go: a raw resume on a node behind its cursor is exact;
//     forged cursors' replays are refused.
//   - resume_test.go: drains, slow links, slow raw readers and cursors
//     from the future: raw subscribers see no gap and no tick twice.
//   - observer_test.go: the observer that records every entry Redis ever
//     holds, so a test can check no subscriber got a tick Redis never had.
//
// Run them with `go test ./chaos/`. They need redis-server and nginx; on a
// machine without them they skip naming the Debian package to install
// (internal/tooltest), and ./scripts/test.sh, which installs both, turns
// such a skip into a failure. Tests of one component against real
// processes live beside that component (node/, fanout/transport/,
// cmd/tickstream/); this package is for faults across the deployment.
package chaos
