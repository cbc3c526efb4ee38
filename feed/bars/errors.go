package bars

import "errors"

var (
	// ErrUnknownSymbol means the symbol is not in the builder's universe.
	ErrUnknownSymbol = errors.New("unknown symbol")
	// ErrBadTimeframe means a timeframe other than 5s, 1m or 5m.
	ErrBadTimeframe = errors.New("timeframe must be 5s, 1m or 5m")
)
