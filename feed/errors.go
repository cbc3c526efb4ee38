package feed

import (
	"errors"
	"fmt"
)

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

// ErrTickKeys reports a tick whose JSON object does not hold exactly the
// wire keys (DecodeTickStrict): a key twice, a key in another case or
// escaped, a key this version does not know, or a required one missing. It
// wraps ErrBadTick.
var ErrTickKeys = fmt.Errorf("%w: not the wire keys", ErrBadTick)
