package main

import (
	"context"
	"fmt"
	"io"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("serve", "serve --redis URL [--addr :8080] [flags]", stderr)
	var rf redisFlags
	rf.register(f, "redis://127.0.0.1:6379")
	var nc nodeConfig
	nc.register(f, ":8080")
	var lf logFlags
	lf.register(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := rf.check(f); err != nil {
		return err
	}
	if err := nc.rebalance.check(); err != nil {
		return err
	}
	log := lf.logger(stderr)
	rdb, err := rf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return serveNode(ctx, rdb, &nc, log, func(addr string) { printListening(stdout, addr) })
}

func printListening(w io.Writer, addr string) {
	fmt.Fprintf(w, "listening on http://%s/\n", addr)
}
