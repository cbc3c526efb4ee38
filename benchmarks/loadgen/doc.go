// Package loadgen drives many subscribers of a tickstream node at once and
// measures what they get: updates, wire bytes, and change-to-screen delay
// (for every tick published on a watched symbol, the time from its feed
// timestamp until the client first holds that tick or a newer one of the
// same symbol). Its clients read sym, seq and ts out of each tick by
// scanning bytes, without decoding JSON, so the load generator is not the
// bottleneck. The benchmarks and `tickstream loadgen` use it.
package loadgen
