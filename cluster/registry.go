// Package cluster lets the fan-out nodes of one feed know each other and
// balance their subscribers.
//
// Every node announces itself in Redis (its name, address, subscriber
// counts by transport and mode, write load) every Interval, under a key
// that expires after TTL: a node that dies disappears from the cluster by
// itself, one that stops gracefully leaves at once. From the announcements
// every node knows the cluster's size and its mean load. A node well above
// the mean sends its excess away gradually (see Balancer): the clients
// reconnect through the load balancer, which places them on the lighter
// nodes.
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
	"strings"
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
	// Rebalance is false when the node never sheds (--rebalance=false).
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

// ErrBadName is returned for a node name the registry cannot hold.
var ErrBadName = errors.New("cluster: node name must be 1-200 bytes, without '{', '}' or control characters")

func checkName(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "{}") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return ErrBadName
	}
	return nil
}

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

// List returns the live nodes' announcements, by name. Names whose
// announcement expired are removed from the set on the way; entries that
// do not decode are skipped.
func (r *Registry) List(ctx context.Context) ([]Load, error) {
	names, err := r.rdb.SMembers(ctx, setKey).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster: list nodes: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = nodePrefx + n
	}
	vals, err := r.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster: read nodes: %w", err)
	}
	var out []Load
	var gone []any
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			gone = append(gone, names[i])
			continue
		}
		var l Load
		if json.Unmarshal([]byte(s), &l) != nil || l.Name != names[i] {
			continue
		}
		out = append(out, l)
	}
	if len(gone) > 0 {
		// Best effort: a node that announces again meanwhile re-adds itself.
		_ = r.rdb.SRem(ctx, setKey, gone...).Err()
	}
	return out, nil
}
