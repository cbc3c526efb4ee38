package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/fanout/client"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// An example node on an embedded store, with one known tick.
func exampleNode() (url string, stop func()) {
	mr := miniredis.NewMiniRedis()
	_ = mr.StartAddr("127.0.0.1:0")
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pub, _ := redisstream.NewPublisher(ctx, rdb, redisstream.PublisherConfig{Universe: simulator.Universe(0), Logger: quiet})
	_ = pub.Publish(ctx, []feed.Tick{{Sym: "EURUSD", Seq: 1, Bid: decimal.RequireFromString("1.08450"),
		Ask: decimal.RequireFromString("1.08452"), Last: decimal.RequireFromString("1.08451"), Size: 10000, TS: 1764180000123456}})
	n, _ := node.Start(ctx, rdb, node.Config{Addr: "127.0.0.1:0", Logger: quiet})
	return n.URL(), func() { _ = n.Shutdown(ctx); _ = rdb.Close(); mr.Close() }
}

var errDone = errors.New("done")

// Stream subscribes, reconnects and resumes by itself; prices arrive as
// exact decimals.
func ExampleStream() {
	url, stop := exampleNode()
	defer stop()
	err := client.Stream(context.Background(), client.Config{URL: url, Symbols: []string{"EURUSD"}},
		func(m client.Message) error {
			if m.Kind == client.Tick {
				fmt.Println(string(m.JSON))
				fmt.Println("spread", m.Tick.Ask.Sub(m.Tick.Bid)) // decimal: exact
				return errDone
			}
			return nil
		})
	fmt.Println(err)
	// Output:
	// {"sym":"EURUSD","seq":1,"bid":"1.08450","ask":"1.08452","last":"1.08451","size":10000,"ts":1764180000123456,"prev_close":"1.08328","open":"1.08453"}
	// spread 0.00002
	// done
}
