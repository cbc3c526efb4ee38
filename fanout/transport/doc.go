// Package transport serves a fan-out hub over HTTP with Fiber: Server-Sent
// Events (the default), WebSocket, short and long polling, the dashboard,
// the universe, health, readiness and Prometheus metrics. One file per
// transport; each adapts a connection to the hub's fanout.Sink.
//
// SSE connections are hijacked from fasthttp once the request is validated:
// the hub's writer goroutines write to the socket directly, so an idle SSE
// subscriber costs no parked goroutine and no buffers, only its socket and
// its subscription.
//
// With Config.AuthSecret set, every route needs a signed token (auth.go)
// except the deliberate public list, PublicRoutes, and the dashboard's
// static files; the metrics are gathered at most once per
// Config.MetricsEvery, shared by the scrapes waiting (exposition.go).
package transport
