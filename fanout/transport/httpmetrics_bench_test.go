package transport

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/simulator"
)

// BenchmarkRequestCounting measures a plain request through the server's
// handler chain (no socket), the request counter included: its cost is
// the difference with the counter's middleware taken out.
func BenchmarkRequestCounting(b *testing.B) {
	uni := simulator.Universe(0)
	hub, err := fanout.New(fanout.Config{Symbols: uni.Names()})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	s, err := New(Config{Hub: hub, Universe: uni, Logger: nil})
	if err != nil {
		b.Fatal(err)
	}
	h := s.app.Handler()
	for _, path := range []string{"/healthz", "/no/such/path"} {
		b.Run("path="+path, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Request.Reset()
				ctx.Response.Reset()
				ctx.Request.SetRequestURI(path)
				h(&ctx)
			}
		})
	}
}
