// Package redisstream is tickstream's Redis Streams adapter: the Publisher
// that stores ticks and the Reader that feeds a fan-out node from them.
//
// Layout (see DESIGN.md):
//
//	ticks:{i}           stream of shard i; one entry per tick with fields
//	                    s (symbol), q (seq), t (ts, µs) and d (the tick's
//	                    wire JSON); trimmed with MAXLEN ~ N
//	last:{i}            hash of shard i: symbol → wire JSON of its latest
//	                    tick, written in the same MULTI as the entries, so a
//	                    node rebuilds every symbol's value in one read
//	tickstream:universe the symbol universe as JSON, with tick sizes
//	tickstream:meta     hash: shards (the shard count)
//	tickstream:epoch    a random token; it changes when Redis lost its
//	                    history (restarted empty), so readers resynchronise
//
// The braces are Redis Cluster hash tags: a shard's stream and hash share a
// slot, and shards spread across a cluster.
package redisstream
