package cluster

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
)

// Bounds on what the registry reads. Redis is a trust boundary: anyone who
// can write to it can write a record, so a record is read as untrusted
// input and refused (ignored: not in the mean, not listed) unless it fits.
const (
	// MaxRecordBytes is the largest announcement read; a longer one is
	// refused without being parsed (a node's own is about 300 bytes).
	MaxRecordBytes = 4096
	// MaxSubscribers is the most subscribers, of each kind, an
	// announcement may claim.
	MaxSubscribers = 10_000_000
	// maxRate bounds the announced writes and updates per second.
	maxRate = 1e12
	// maxURL is the longest announced URL.
	maxURL = 512
	// maxPool is the longest pool name.
	maxPool = 64
	// DefaultPool is the pool of a node given none, and of an announcement
	// that names none.
	DefaultPool = "default"
	// DefaultMaxNodes is the default of Config.MaxNodes.
	DefaultMaxNodes = 1000
	// MaxListed is the most nodes View lists (GET /api/nodes).
	MaxListed = 128
)

// Errors of a record or of a balancer's own settings.
var (
	// ErrBadName is returned for a node name the registry cannot hold.
	ErrBadName = errors.New("cluster: node name must be 1-200 bytes of letters, digits and . _ - : @ [ ]")
	// ErrBadPool is returned for a pool name that is not 1-64 bytes of
	// letters, digits, '.', '_' or '-'.
	ErrBadPool = errors.New("cluster: pool name must be 1-64 bytes of letters, digits and . _ -")
	// ErrBadURL is returned for a node URL other than http(s)://host[:port][/path],
	// or whose host is not allowed.
	ErrBadURL = errors.New("cluster: node url must be http(s)://host[:port][/path], without user, query or fragment, on an allowed host")
	// ErrBadRecord is returned for an announcement whose figures are out
	// of bounds or inconsistent.
	ErrBadRecord = errors.New("cluster: announcement out of bounds")
)

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-:@[]", c) >= 0
}

// checkName accepts 1-200 bytes of letters, digits and . _ - : @ [ ]
// (hostname:port, an IPv6 address in brackets); never a hash tag's braces,
// a space or a control character.
func checkName(name string) error {
	if name == "" || len(name) > 200 {
		return ErrBadName
	}
	for i := range len(name) {
		if !nameByte(name[i]) {
			return ErrBadName
		}
	}
	return nil
}

// CheckPool returns ErrBadPool unless pool is 1-64 bytes of letters,
// digits and . _ -.
func CheckPool(pool string) error { return checkPool(pool) }

// checkPool accepts 1-64 bytes of letters, digits and . _ -.
func checkPool(pool string) error {
	if pool == "" || len(pool) > maxPool {
		return ErrBadPool
	}
	for i := range len(pool) {
		if c := pool[i]; !nameByte(c) || strings.IndexByte(":@[]", c) >= 0 {
			return ErrBadPool
		}
	}
	return nil
}

// checkURL accepts an absolute http or https URL with a host, an optional
// port and path, no user information, query or fragment, at most 512
// bytes; when allow is not empty, its host (without the port) must be one
// of allow (case-insensitive).
func checkURL(raw string, allow []string) error {
	if raw == "" || len(raw) > maxURL {
		return ErrBadURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" ||
		strings.ContainsAny(raw, " \t\r\n\\#?") {
		return ErrBadURL
	}
	if len(allow) == 0 {
		return nil
	}
	for _, h := range allow {
		if strings.EqualFold(h, u.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("%w: host %q is not in the allowed list", ErrBadURL, u.Hostname())
}

// in reports whether 0 <= v <= hi.
func in(v, hi int) bool { return v >= 0 && v <= hi }

// rate reports whether v is a plausible per-second figure.
func rate(v float64) bool { return v >= 0 && v <= maxRate && !math.IsNaN(v) }

// check validates an announcement read from the registry under the key of
// name; allow restricts the URL's host (see checkURL). An empty pool reads
// as DefaultPool; SSE, WS and Raw are clamped to Subscribers.
func (l *Load) check(name string, allow []string) error {
	if l.Name != name {
		return fmt.Errorf("%w: name %q under the key of %q", ErrBadRecord, l.Name, name)
	}
	if err := checkName(l.Name); err != nil {
		return err
	}
	if l.Pool == "" {
		l.Pool = DefaultPool
	}
	if err := checkPool(l.Pool); err != nil {
		return err
	}
	if err := checkURL(l.URL, allow); err != nil {
		return err
	}
	if !in(l.Subscribers, MaxSubscribers) || !in(l.SSE, MaxSubscribers) || !in(l.WS, MaxSubscribers) ||
		!in(l.Raw, MaxSubscribers) || !in(l.InFlight, MaxSubscribers) || l.ShedTotal > math.MaxInt64 ||
		!rate(l.WritesPerSec) || !rate(l.UpdatesPerSec) {
		return fmt.Errorf("%w: %s: subscribers %d (sse %d, ws %d, raw %d), in flight %d", ErrBadRecord,
			l.Name, l.Subscribers, l.SSE, l.WS, l.Raw, l.InFlight)
	}
	// The split by transport and mode is read at another moment than the
	// total (a stream opening or closing in between): clamped, not refused.
	l.SSE, l.WS, l.Raw = min(l.SSE, l.Subscribers), min(l.WS, l.Subscribers), min(l.Raw, l.Subscribers)
	return nil
}
