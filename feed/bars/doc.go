// Package bars builds OHLC + volume bars and a short time & sales tape per
// symbol from the ticks a fan-out node reads, for charts.
//
// A Builder is fed every tick in stream order (Add, from the reader's
// goroutine) and answers requests from memory (AppendBars, AppendTrades),
// so a chart request costs no Redis scan. A node seeds it at start from
// the retained streams: the seed is built in a second Builder, off the
// reader's path, and merged in (Merge) while live ticks keep arriving.
//
// Prices are kept as integers on the symbol's decimal scale (the number of
// decimals of its tick size) and written back as exact decimal strings.
package bars
