// Package simulator generates a realistic, deterministic stream of price
// ticks and publishes it at a controlled rate.
//
// Each symbol's mid price follows a random walk in log space with its own
// volatility; bid and ask sit on the symbol's tick grid around the mid with a
// spread of at least one tick, so bid < ask and prices stay positive. Ticks
// arrive as a Poisson process whose rate is shared across symbols by a Zipf
// popularity law: a few hot symbols carry most of the ticks, as in real
// markets. Given the same seed and universe the sequence of ticks (all but
// their wall-clock timestamps) is the same on every run.
package simulator
