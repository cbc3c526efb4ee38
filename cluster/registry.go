// Package cluster lets the fan-out nodes of one feed know each other and
// balance their subscribers.
//
// Every node announces itself in Redis (its name, address, subscriber
// counts by transport and mode, write load) every Interval, under a key
// that expires after TTL: a node that dies disappears from the cluster by
// itself, one that stops gracefully leaves at once. From the announcements
// every node knows the mean load of the nodes that balance in its pool. A
// node well above the mean sends its excess away gradually (see Balancer):
// the clients reconnect through the load balancer, which places them on
// the lighter nodes.
//
// Anyone who can write to Redis can write an announcement, so the registry
// reads them as untrusted input: a bounded number of records per listing,
// each bounded in size and checked (name, pool, URL, figures) before it
// counts or is shown; see Scan.
//
// The registry is a second Redis adapter beside feed/redisstream (it
// imports go-redis). Its keys share one hash tag, so it works unchanged on
// Redis Cluster: a set of node names, tickstream:{nodes}, and one string
// per node, tickstream:{nodes}:<name>, holding the announcement as JSON
// with an expiry (SET … PX).
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Keys of the registry: one hash tag, so one slot of a Redis Cluster.
const (
	setKey    = "tickstream:{nodes}"
	nodePrefx = "tickstream:{nodes}:"
)

// Load is what a node announces about itself.
type Load struct {
	// Name is the node's name (unique in the cluster).
	Name string `json:"name"`
	// URL is the node's own base URL (not the balancer's).
	URL string `json:"url"`
	// Pool names the nodes that balance together (--pool): a node counts
	// only the balancing nodes of its own pool in its mean.
	Pool string `json:"pool"`
	// Subscribers is the number of streaming subscribers the node holds
	// (SSE and WebSocket).
	Subscribers int `json:"subscribers"`
	// SSE and WS split Subscribers by transport; Raw counts the raw ones.
	SSE int `json:"sse"`
	WS  int `json:"ws"`
	Raw int `json:"raw"`
	// InFlight is how many subscribers the node sent away in the last few
	// seconds: they are reconnecting and may be counted by no node yet.
	InFlight int `json:"in_flight"`
	// WritesPerSec and UpdatesPerSec are the node's write load: socket
	// writes and updates written per second over the last interval.
	WritesPerSec  float64 `json:"writes_per_sec"`
	UpdatesPerSec float64 `json:"updates_per_sec"`
	// Shedding is true while the node sends subscribers away; ShedTotal
	// counts those it sent away since it started.
	Shedding  bool   `json:"shedding"`
	ShedTotal uint64 `json:"shed_total"`
	// Rebalance is false when the node never sheds (--rebalance=false):
	// it is listed, but no node counts it in its mean.
	Rebalance bool `json:"rebalance"`
	// At is when the node announced this, in Unix milliseconds (its clock).
	At int64 `json:"at"`
}

// Registry is the cluster's membership in Redis.
type Registry struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewRegistry returns a registry on rdb whose announcements expire after
// ttl; 0 takes the TTL of the first Balancer built on it (or 6s).
func NewRegistry(rdb redis.UniversalClient, ttl time.Duration) *Registry {
	return &Registry{rdb: rdb, ttl: ttl}
}

// defaultTTL is the expiry of an announcement when none was set.
const defaultTTL = 6 * time.Second

// Announce stores l under l.Name with the registry's expiry.
func (r *Registry) Announce(ctx context.Context, l Load) error {
	if err := checkName(l.Name); err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("cluster: encode announcement: %w", err)
	}
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ttl := r.ttl
		if ttl <= 0 {
			ttl = defaultTTL // never an announcement that outlives its node
		}
		p.Set(ctx, nodePrefx+l.Name, b, ttl)
		p.SAdd(ctx, setKey, l.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: announce %s: %w", l.Name, err)
	}
	return nil
}

// Leave removes the node named name at once.
func (r *Registry) Leave(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, nodePrefx+name)
		p.SRem(ctx, setKey, name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: leave %s: %w", name, err)
	}
	return nil
}

// Listing is what one read of the registry found.
type Listing struct {
	// Nodes are the valid announcements read, by name.
	Nodes []Load
	// Names is how many names the registry's set held.
	Names int
	// Unread is how many of them were not read (beyond the bound).
	Unread int
	// Invalid is how many records read were refused (too long, not JSON,
	// out of bounds, a bad name, pool or URL).
	Invalid int
	// FirstInvalid says why the first refused record was refused.
	FirstInvalid error
}

// Complete reports whether every name in the registry was read.
func (l Listing) Complete() bool { return l.Unread == 0 }

// List returns the live nodes' valid announcements, by name, reading at
// most DefaultMaxNodes records and accepting any URL host.
func (r *Registry) List(ctx context.Context) ([]Load, error) {
	l, err := r.Scan(ctx, DefaultMaxNodes, nil)
	return l.Nodes, err
}

// Scan reads at most maxNodes records of the registry (chosen at random
// when the set holds more names: the listing is then incomplete) and
// returns the valid ones, by name. Each record is read only up to
// MaxRecordBytes+1 bytes, and refused if longer; a record is also refused
// when it does not decode or fails its bounds (see Load.check, allow
// restricts URL hosts). Names whose record expired are removed from the
// set on the way.
func (r *Registry) Scan(ctx context.Context, maxNodes int, allow []string) (Listing, error) {
	if maxNodes <= 0 {
		maxNodes = DefaultMaxNodes
	}
	var card *redis.IntCmd
	var pick *redis.StringSliceCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		card = p.SCard(ctx, setKey)
		pick = p.SRandMemberN(ctx, setKey, int64(maxNodes)) // distinct names, all of them if fewer
		return nil
	})
	if err != nil {
		return Listing{}, fmt.Errorf("cluster: list nodes: %w", err)
	}
	names := pick.Val()
	out := Listing{Names: int(card.Val())}
	out.Unread = max(out.Names-len(names), 0)
	var gone []any
	names = slices.DeleteFunc(names, func(n string) bool {
		if checkName(n) != nil {
			gone = append(gone, n) // never announced by a node: drop it
			out.Invalid++
			return true
		}
		return false
	})
	slices.Sort(names)
	vals := make([]*redis.StringCmd, len(names))
	if len(names) > 0 {
		_, err = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range names {
				vals[i] = p.GetRange(ctx, nodePrefx+n, 0, MaxRecordBytes) // at most MaxRecordBytes+1 bytes
			}
			return nil
		})
		var reply redis.Error // a reply of Redis to one command (WRONGTYPE): that record only
		if err != nil && !errors.As(err, &reply) {
			return Listing{}, fmt.Errorf("cluster: read nodes: %w", err)
		}
	}
	for i, v := range vals {
		if e := v.Err(); e != nil && !errors.Is(e, redis.Nil) {
			out.Invalid++ // a key of another type: not a record
			if out.FirstInvalid == nil {
				out.FirstInvalid = fmt.Errorf("%w: %s: %v", ErrBadRecord, names[i], e)
			}
			continue
		}
		l, err := decodeLoad(names[i], v.Val(), allow)
		switch {
		case errors.Is(err, errExpired):
			gone = append(gone, names[i])
		case err != nil:
			out.Invalid++
			if out.FirstInvalid == nil {
				out.FirstInvalid = err
			}
		default:
			out.Nodes = append(out.Nodes, l)
		}
	}
	if len(gone) > 0 {
		// Best effort: a node that announces again meanwhile re-adds itself.
		_ = r.rdb.SRem(ctx, setKey, gone...).Err()
	}
	return out, nil
}

// errExpired marks a name whose record is gone (GETRANGE reads "").
var errExpired = errors.New("cluster: record expired")

// decodeLoad parses and checks the record s stored under name.
func decodeLoad(name, s string, allow []string) (Load, error) {
	var l Load
	switch {
	case s == "":
		return l, errExpired
	case len(s) > MaxRecordBytes:
		return l, fmt.Errorf("%w: %s: record longer than %d bytes", ErrBadRecord, name, MaxRecordBytes)
	}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return l, fmt.Errorf("%w: %s: %v", ErrBadRecord, name, err)
	}
	if err := l.check(name, allow); err != nil {
		return l, fmt.Errorf("record of %q: %w", name, err)
	}
	return l, nil
}
