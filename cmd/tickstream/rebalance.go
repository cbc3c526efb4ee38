package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tickstream/tickstream/cluster"
)

// rebalanceFlags are the cluster flags of a node (run and serve).
type rebalanceFlags struct {
	on        *bool
	threshold *float64
	rate      *float64
	interval  *time.Duration
	pool      *string
	urlAllow  *string
	maxNodes  *int
}

func (r *rebalanceFlags) register(f *flags) {
	r.on = f.boolean("rebalance", true, "send subscribers away, a few per second, while this node holds well above the cluster's mean; they reconnect through the balancer (least_conn) to lighter nodes (false: never)")
	r.threshold = f.positive("rebalance-threshold", 0.10, "how far above the cluster's mean, as a fraction of it, a node must be before it sheds; it then sheds down to the mean, never below")
	r.rate = f.positive("rebalance-rate", 50, "most subscribers a node sends away per second while it sheds (and never more than 5% of its subscribers per second)")
	r.interval = f.duration("announce-interval", 2*time.Second, "how often a node announces its load in Redis; an announcement expires after three of these")
	r.pool = f.str("pool", cluster.DefaultPool, "name of the nodes that balance together: a node's mean counts only the rebalancing nodes of its pool (1-64 letters, digits, . _ -)")
	r.urlAllow = f.str("cluster-url-allow", "", "comma-separated hosts a node's announced URL may name; a record naming another host is ignored (not listed by /api/nodes, in no mean); this node's own host must be on it (empty: any host)")
	r.maxNodes = f.integer("cluster-max-nodes", cluster.DefaultMaxNodes, "most registry records a node reads per announcement; with more names in Redis the listing is incomplete and the node does not shed")
}

func (r *rebalanceFlags) config() cluster.Config {
	return cluster.Config{Disabled: !*r.on, Threshold: *r.threshold, Rate: *r.rate, Interval: max(*r.interval, 100*time.Millisecond),
		Pool: *r.pool, URLAllow: splitList(*r.urlAllow), MaxNodes: *r.maxNodes}
}

// check refuses a pool name or a records bound the registry cannot use.
func (r *rebalanceFlags) check() error {
	if err := cluster.CheckPool(*r.pool); err != nil {
		return usageError{fmt.Errorf("--pool %q: %w", *r.pool, err)}
	}
	if *r.maxNodes <= 0 || *r.maxNodes > 100_000 {
		return usageError{fmt.Errorf("--cluster-max-nodes: %d is not within 1-100000", *r.maxNodes)}
	}
	return nil
}

// positive defines a float flag that must be above zero.
func (f *flags) positive(name string, def float64, usage string) *float64 {
	v := positiveValue(def)
	f.Var(&v, name, usage)
	return (*float64)(&v)
}

type positiveValue float64

func (v *positiveValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }

func (v *positiveValue) Set(s string) error {
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || !(x > 0) || x > 1e9 {
		return errors.New("want a number above zero")
	}
	*v = positiveValue(x)
	return nil
}
