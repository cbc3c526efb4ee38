// Package feed holds tickstream's domain types: the Tick, its wire encoding
// and the symbol universe. It imports nothing of tickstream's own, so every
// other package can depend on it.
//
// Prices are decimal.Decimal from the model to the wire and travel as JSON
// strings, exact to the symbol's tick size; timestamps are Unix microseconds
// (exact in JavaScript's Number).
package feed
