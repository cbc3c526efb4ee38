package feed

import "errors"

var (
	// ErrUnknownSymbol reports a symbol that is not in the universe.
	ErrUnknownSymbol = errors.New("unknown symbol")
	// ErrBadSymbol reports a symbol name that is not well formed.
	ErrBadSymbol = errors.New("malformed symbol")
	// ErrBadTick reports a tick whose encoding cannot be decoded.
	ErrBadTick = errors.New("malformed tick")
)

// ErrTooManySymbols reports a subscription longer than the limit.
var ErrTooManySymbols = errors.New("too many symbols")
