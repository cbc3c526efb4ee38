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
// batch entry), within size bounds; its JSON holds exactly the wire keys
// and the entry exactly one layout's fields (no key or field twice, in
// another case or unknown). The live reader, replay and the charts'
// read-back judge an entry with the same functions.
//
// The seq rule: a tick whose seq is the next of its symbol (the seq the
// node holds + 1) is believed. Any other seq above it (a jump) is believed
// only when the latest-value hash holds that seq or a later one: the
// publisher writes the hash in the same script run as the entry, so a
// genuine jump (entries trimmed while the node was away, ticks lost
// upstream, a publisher resuming from the hash) is always confirmed, while
// a forged entry ahead of the hash is refused (ReasonSeqJump) and never
// becomes the latest value: the genuine ticks that follow it are still the
// next seqs, so no node finds Redis behind it and no one resynchronises. A
// seq not above what the node holds is refused (ReasonSeqOld). A refused
// tick of a batch does not take the others with it. Refusals are counted
// per reason (Reasons) and logged once per interval.
//
// A Redis behind the node (a stream whose last ID, or a latest value whose
// seq, is below what the node holds: an older snapshot restored) has lost
// history: the reader starts a new epoch (compare-and-set, so several nodes
// agree on one), every node resynchronises and clients get a resync with
// Redis's values. A read over a newly dialled connection is believed only
// after a look at the epoch and the streams, so entries of a Redis that
// restarted empty are never published under the old epoch.
package redisstream
