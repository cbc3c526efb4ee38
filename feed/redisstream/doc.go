// Package redisstream is tickstream's Redis Streams adapter: the Publisher
// that stores ticks and the Reader that feeds a fan-out node from them.
//
// Layout (see DESIGN.md):
//
//	ticks:{i}           stream of shard i; one entry per publish batch with
//	                    one field, b: the batch's ticks of the shard, each
//	                    its wire JSON, separated by newlines (entries of the
//	                    first layout, one per tick with fields s (symbol),
//	                    q (seq), t (ts, µs) and d (its wire JSON), are read
//	                    too); trimmed with MAXLEN ~ N
//	last:{i}            hash of shard i: symbol → wire JSON of its latest
//	                    tick, written by the same script run as the entry,
//	                    so a node rebuilds every symbol's value in one read
//	tickstream:universe the symbol universe as JSON, with tick sizes
//	tickstream:meta     hash: shards (the shard count)
//	tickstream:epoch    a random token; it changes when Redis lost its
//	                    history (restarted empty), so readers resynchronise
//
// The braces are Redis Cluster hash tags: a shard's stream and hash share a
// slot, and shards spread across a cluster.
//
// Redis is a trust boundary. Every entry and latest value is validated
// before it reaches the hub (DecodeTicks): each tick must decode as a tick
// with decimal-string prices on its symbol's tick grid, of the symbol, seq
// and time the entry names (a one-tick entry) or of the entry's shard (a
// batch entry), within size bounds; a seq that jumps further than
// MaxSeqJump must be confirmed by the latest-value hash (the publisher writes
// both in one script run), and a seq not above what the node holds is
// refused. A refused tick of a batch does not take the others with it.
// Refusals are counted per reason (Reasons) and logged once per interval.
//
// A Redis behind the node (a stream whose last ID, or a latest value whose
// seq, is below what the node holds: an older snapshot restored) has lost
// history: the reader starts a new epoch (compare-and-set, so several nodes
// agree on one), every node resynchronises and clients get a resync with
// Redis's values. A read over a newly dialled connection is believed only
// after a look at the epoch and the streams, so entries of a Redis that
// restarted empty are never published under the old epoch.
package redisstream
