package feed

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// MaxSymbolLen is the longest symbol name accepted.
const MaxSymbolLen = 32

// Asset classes of the default universe.
const (
	ClassEquity = "equity"
	ClassETF    = "etf"
	ClassFX     = "fx"
	ClassCrypto = "crypto"
	ClassFuture = "future"
)

// Symbol describes one instrument.
type Symbol struct {
	Name     string          `json:"sym"`
	Class    string          `json:"class"`
	TickSize decimal.Decimal `json:"tick_size"`
	// Desc is a human-readable name, for the dashboard.
	Desc string `json:"desc,omitempty"`
	// PrevClose is the previous session's closing price: the reference of
	// a session's change and change %. Zero (left out of the JSON) when the
	// feed has none.
	PrevClose decimal.Decimal `json:"prev_close,omitzero"`
	// Open is the session's opening price. Zero (left out) when unknown.
	Open decimal.Decimal `json:"open,omitzero"`
}

// ValidateSymbolName reports whether s is a well-formed symbol name: 1 to
// MaxSymbolLen characters of A-Z, 0-9 and . - / _ :
func ValidateSymbolName(s string) error {
	if s == "" || len(s) > MaxSymbolLen {
		return fmt.Errorf("%w: %q: length must be 1 to %d", ErrBadSymbol, s, MaxSymbolLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '/', c == '_', c == ':':
		default:
			return fmt.Errorf("%w: %q: only A-Z, 0-9 and . - / _ : are allowed", ErrBadSymbol, s)
		}
	}
	return nil
}

// ShardOf returns the shard (0..shards-1) of a symbol: a stable FNV-1a hash
// of its name, the same in every process and release.
func ShardOf(sym string, shards int) int {
	h := uint32(2166136261) // 32-bit FNV-1a, inline: no hash.Hash, no copy of sym
	for i := 0; i < len(sym); i++ {
		h ^= uint32(sym[i])
		h *= 16777619
	}
	return int(h % uint32(shards))
}

// Universe is an immutable set of symbols, ordered by name.
type Universe struct {
	syms  []Symbol
	index map[string]int
	steps []gridStep // per symbol, for ScanTick
}

// NewUniverse builds a universe, rejecting malformed and duplicate names and
// non-positive tick sizes.
func NewUniverse(syms []Symbol) (*Universe, error) {
	u := &Universe{syms: append([]Symbol(nil), syms...), index: make(map[string]int, len(syms))}
	sort.Slice(u.syms, func(i, j int) bool { return u.syms[i].Name < u.syms[j].Name })
	for i, s := range u.syms {
		if err := ValidateSymbolName(s.Name); err != nil {
			return nil, err
		}
		if !s.TickSize.IsPositive() {
			return nil, fmt.Errorf("symbol %s: tick size %s must be positive", s.Name, s.TickSize)
		}
		if _, dup := u.index[s.Name]; dup {
			return nil, fmt.Errorf("symbol %s: listed twice", s.Name)
		}
		u.index[s.Name] = i
		u.steps = append(u.steps, newGridStep(s.TickSize))
	}
	return u, nil
}

// Len returns the number of symbols.
func (u *Universe) Len() int { return len(u.syms) }

// Symbols returns the symbols ordered by name. The caller must not modify it.
func (u *Universe) Symbols() []Symbol { return u.syms }

// Lookup returns the symbol named name.
func (u *Universe) Lookup(name string) (Symbol, bool) {
	i, ok := u.index[name]
	if !ok {
		return Symbol{}, false
	}
	return u.syms[i], true
}

// Index returns the place of the symbol named name in Symbols.
func (u *Universe) Index(name string) (int, bool) {
	i, ok := u.index[name]
	return i, ok
}

// Names returns the symbol names in order.
func (u *Universe) Names() []string {
	out := make([]string, len(u.syms))
	for i, s := range u.syms {
		out[i] = s.Name
	}
	return out
}

// ParseSymbolList parses a comma-separated list of symbols, trimming spaces
// and upper-casing, dropping duplicates, and checking each against u. "*"
// stands for the whole universe. An empty list is an error; so is a list
// longer than max (when max > 0).
func (u *Universe) ParseSymbolList(list string, max int) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("%w: no symbols given", ErrBadSymbol)
	}
	if strings.TrimSpace(list) == "*" {
		if max > 0 && u.Len() > max {
			return nil, fmt.Errorf("%w: the universe has %d symbols, the limit is %d", ErrTooManySymbols, u.Len(), max)
		}
		return u.Names(), nil
	}
	parts := strings.Split(list, ",")
	seen := make(map[string]struct{}, len(parts))
	out := make([]string, 0, len(parts))
	var unknown []string // every one is named, not only the first
	for _, p := range parts {
		s := strings.ToUpper(strings.TrimSpace(p))
		if s == "" {
			continue
		}
		if err := ValidateSymbolName(s); err != nil {
			return nil, err
		}
		if _, ok := u.index[s]; !ok {
			unknown = append(unknown, s)
			continue
		}
		if _, dup := seen[s]; dup {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
		if max > 0 && len(out) > max {
			return nil, fmt.Errorf("%w: more than %d symbols", ErrTooManySymbols, max)
		}
	}
	if n := len(unknown); n > 20 {
		return nil, fmt.Errorf("%w: %s and %d more", ErrUnknownSymbol, strings.Join(unknown[:20], ", "), n-20)
	} else if n > 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnknownSymbol, strings.Join(unknown, ", "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no symbols given", ErrBadSymbol)
	}
	return out, nil
}
