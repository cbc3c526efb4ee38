package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/tickstream/tickstream/fanout/client"
)

// runTail prints a node's stream, one line per tick, flushed as it goes.
// Status (connected, reconnecting, resync, lagging) goes to stderr.
func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("tail", "tail URL --symbols A,B [--raw] [--interval 250ms] [--format jsonl|csv] [--transport sse|ws]", stderr)
	symbols := f.str("symbols", "", "comma-separated symbols (required; * for all)")
	raw := f.boolean("raw", false, "every tick, gap-free across reconnects (default: conflated)")
	interval := f.interval("interval", 0, "conflation interval, e.g. 250ms or 250 (default: the node's)")
	format := f.choice("format", "jsonl", []string{"jsonl", "csv"}, "jsonl (the wire JSON, one tick a line) or csv")
	transport := f.choice("transport", "sse", []string{"sse", "ws"}, "how to subscribe")
	pos, err := f.parseArgs(args, 1)
	if err != nil {
		return err
	}
	url := os.Getenv("TICKSTREAM_URL")
	if len(pos) == 1 {
		url = pos[0]
	}
	switch {
	case url == "":
		return f.usageErr("a node URL is required, e.g. tickstream tail http://127.0.0.1:8080 --symbols AAPL")
	case *symbols == "":
		return f.usageErr("--symbols is required")
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if *format == "csv" {
		fmt.Fprintln(w, "sym,seq,bid,ask,last,size,ts")
	}
	cfg := client.Config{URL: url, Symbols: splitList(*symbols), Interval: *interval, Raw: *raw, Transport: *transport}
	err = client.Stream(ctx, cfg, func(m client.Message) error {
		switch m.Kind {
		case client.Tick:
			if *format == "csv" {
				writeCSV(w, m)
			} else {
				w.Write(m.JSON)
				w.WriteByte('\n')
			}
			if w.Buffered() > 0 {
				return w.Flush()
			}
		case client.Hello:
			fmt.Fprintf(stderr, "tail: connected to %s (node %s)\n", url, m.Node)
		case client.Reconnecting:
			fmt.Fprintf(stderr, "tail: %v; reconnecting in %v\n", m.Err, m.Delay.Round(1e6))
		case client.Resync:
			fmt.Fprintln(stderr, "tail: resync: the node lost history; a fresh snapshot follows")
		case client.Lagging:
			fmt.Fprintln(stderr, "tail: lagging: reading too slowly, updates are conflated harder")
		}
		return nil
	})
	if errors.Is(err, client.ErrRefused) {
		return usageError{err}
	}
	return err
}

func writeCSV(w *bufio.Writer, m client.Message) {
	t := m.Tick
	w.WriteString(t.Sym)
	w.WriteByte(',')
	w.WriteString(strconv.FormatUint(t.Seq, 10))
	for _, p := range []string{priceText(m.JSON, "bid"), priceText(m.JSON, "ask"), priceText(m.JSON, "last")} {
		w.WriteByte(',')
		w.WriteString(p)
	}
	w.WriteByte(',')
	w.WriteString(strconv.FormatInt(t.Size, 10))
	w.WriteByte(',')
	w.WriteString(strconv.FormatInt(t.TS, 10))
	w.WriteByte('\n')
}

// priceText returns a price exactly as the wire wrote it ("189.50", not
// "189.5").
func priceText(js []byte, field string) string {
	key := `"` + field + `":"`
	s := string(js)
	i := strings.Index(s, key)
	if i < 0 {
		return ""
	}
	s = s[i+len(key):]
	if j := strings.IndexByte(s, '"'); j >= 0 {
		return s[:j]
	}
	return ""
}
