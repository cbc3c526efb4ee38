package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Config tunes a Balancer. Zero values take the documented defaults.
type Config struct {
	// Disabled turns shedding off (--rebalance=false); the node still
	// announces itself, so /api/nodes and the metrics show the cluster,
	// but no node counts it in its mean.
	Disabled bool
	// Pool names the nodes that balance together (--pool): a node's mean
	// counts itself and the balancing nodes of the same pool, nothing
	// else. Default DefaultPool.
	Pool string
	// URLAllow, when not empty, lists the hosts an announced URL may name
	// (--cluster-url-allow); a record naming another host is ignored.
	// The node's own URL must be on it.
	URLAllow []string
	// MaxNodes is the most registry records read per listing; past it the
	// listing is incomplete (the names read are chosen at random, the rest
	// counted) and the node does not shed. Default DefaultMaxNodes.
	MaxNodes int
	// Interval is how often the node announces itself and reads the
	// others' announcements. Default 2s.
	Interval time.Duration
	// TTL is how long an announcement lives: a node silent this long has
	// left the cluster. Default 3 × Interval.
	TTL time.Duration
	// Threshold is how far above the cluster's mean a node must be, as a
	// fraction of the mean, before it starts shedding (--rebalance-threshold).
	// Once started it sheds down to the mean, never below: the gap between
	// the two is the hysteresis. Default 0.10.
	Threshold float64
	// Rate is the most subscribers the node sends away per second
	// (--rebalance-rate). Default 50.
	Rate float64
	// MaxFraction bounds, per second, the share of the node's subscribers
	// it sends away: never more than a small fraction reconnect at once.
	// Default 0.05.
	MaxFraction float64
	// MinExcess is the least excess over the mean, in subscribers, that
	// starts shedding: moving a handful of clients is not worth their
	// reconnects. Default 16.
	MinExcess int
	// Tau is the time constant of the shedding: the node sends away at most
	// excess/Tau subscribers per second, so it slows down as it nears the
	// mean (the others' counts are a few seconds old). Default 3s.
	Tau time.Duration
	// Settle is how long a subscriber sent away counts as in flight (as
	// still this node's) in the cluster's total: it may be counted by no
	// node meanwhile. Default Interval + 2s (the SSE retry: is at most
	// 1.25 s).
	Settle time.Duration
	// Step is how often the node decides whether to shed. Default 250ms.
	Step time.Duration
	// Rest is how long a node waits after a shedding episode ends before
	// it may start another, whatever ended it. Default Settle + Interval.
	Rest time.Duration
	// Cooldown is how long a node waits before it sheds again after it
	// sent away as many subscribers as its excess when it began, and its
	// own count fell by less than half of that: the clients it sends away
	// come back (the balancer in front is not least_conn, or the other
	// nodes refuse them), and moving them again would only churn. Default
	// 30s.
	Cooldown time.Duration
}

func (c *Config) setDefaults() {
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.TTL <= 0 {
		c.TTL = 3 * c.Interval
	}
	if c.Threshold <= 0 {
		c.Threshold = 0.10
	}
	if c.Rate <= 0 {
		c.Rate = 50
	}
	if c.MaxFraction <= 0 {
		c.MaxFraction = 0.05
	}
	if c.MinExcess <= 0 {
		c.MinExcess = 16
	}
	if c.Tau <= 0 {
		c.Tau = 3 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = c.Interval + 2*time.Second
	}
	if c.Step <= 0 {
		c.Step = 250 * time.Millisecond
	}
	if c.Cooldown <= 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.Rest <= 0 {
		c.Rest = c.Settle + c.Interval
	}
	if c.Pool == "" {
		c.Pool = DefaultPool
	}
	if c.MaxNodes <= 0 {
		c.MaxNodes = DefaultMaxNodes
	}
}

// Counts is a node's load, as the node reads it at one moment.
type Counts struct {
	Subscribers, SSE, WS, Raw int
	// Writes and Updates are cumulative (the balancer turns them into
	// rates).
	Writes, Updates uint64
}

// Shedder sends a node's subscribers away (fanout.Shedder). Its methods
// are goroutine-safe and do not block on any peer.
type Shedder interface {
	// SendAway closes up to n subscribers telling them to reconnect, the
	// most recently arrived first, none connected for less than minAge,
	// and returns how many it closed.
	SendAway(n int, minAge time.Duration) int
	// Sweep releases the subscribers whose peer is gone and returns how
	// many remain.
	Sweep() int
}

// Balancer announces one node and sheds its excess subscribers.
type Balancer struct {
	cfg    Config
	reg    *Registry
	name   string
	url    string
	counts func() Counts
	shed   Shedder
	log    *slog.Logger

	mu        sync.Mutex
	nodes     []Load    // the last listing, self included
	self      Load      // the last announcement
	listedAt  time.Time // when the last listing succeeded
	failing   bool      // the registry's last call failed
	shedding  bool
	budget    int // what the current episode may still send away
	epSent    int // sent away in the current episode
	epFrom    int // own count when the episode began
	lastSend  time.Time
	quietTill time.Time // no new episode before this (after a spent budget)
	tokens    float64
	recent    []shedMark // sent away within Settle
	history   []shedMark // own subscriber counts of the last 2 × Interval, oldest first
	shedTotal uint64
	errors    uint64
	listing   Listing // the last listing's counts (Nodes not kept)
	invalid   uint64  // records refused, over all listings
	unread    uint64  // names not read (beyond MaxNodes), over all listings
	steps     uint64  // decisions taken
	mean      float64
	count     int
	prev      Counts
	prevAt    time.Time
	left      bool
	leave     chan struct{}
	leaveOnce sync.Once
}

type shedMark struct {
	at time.Time
	n  int
}

// NewBalancer returns a balancer for the node called name, reachable at
// url, whose load counts reads and whose subscribers shed sends away. Run
// starts it.
func NewBalancer(reg *Registry, name, url string, counts func() Counts, shed Shedder, cfg Config, log *slog.Logger) (*Balancer, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := checkPool(cfg.Pool); err != nil {
		return nil, err
	}
	if err := checkURL(url, cfg.URLAllow); err != nil {
		return nil, fmt.Errorf("cluster: the node's own url %q: %w", url, err)
	}
	if reg.ttl <= 0 {
		reg.ttl = cfg.TTL
	}
	if log == nil {
		log = slog.Default()
	}
	return &Balancer{cfg: cfg, reg: reg, name: name, url: url, counts: counts, shed: shed, log: log, leave: make(chan struct{})}, nil
}

// Config returns the balancer's configuration with its defaults filled in.
func (b *Balancer) Config() Config { return b.cfg }

// Run announces the node every Interval and decides every Step whether to
// shed, until ctx is done or Leave is called. The node leaves the registry
// when Run returns.
func (b *Balancer) Run(ctx context.Context) {
	b.announce(ctx)
	announce := time.NewTicker(b.cfg.Interval)
	defer announce.Stop()
	step := time.NewTicker(b.cfg.Step)
	defer step.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			b.Leave(context.Background())
			return
		case <-b.leave:
			return
		case <-announce.C:
			b.announce(ctx)
		case <-step.C:
			now := time.Now() // not the tick's time: a starved goroutine gets it late
			b.step(now, now.Sub(last))
			last = now
		}
	}
}

// Leave stops the balancer and removes the node from the registry at once
// (a draining node: its subscribers are going elsewhere and the others'
// mean must not count it). Safe to call more than once.
func (b *Balancer) Leave(ctx context.Context) {
	b.leaveOnce.Do(func() {
		b.mu.Lock()
		b.left, b.shedding = true, false
		b.mu.Unlock()
		close(b.leave)
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := b.reg.Leave(ctx, b.name); err != nil {
			b.log.Warn("cannot leave the cluster registry (the entry expires by itself)", "err", err)
		}
	})
}

// inFlight returns, under b.mu, the subscribers sent away within Settle.
func (b *Balancer) inFlight(now time.Time) int {
	i := 0
	for i < len(b.recent) && now.Sub(b.recent[i].at) > b.cfg.Settle {
		i++
	}
	b.recent = b.recent[i:]
	n := 0
	for _, m := range b.recent {
		n += m.n
	}
	return n
}

// announce publishes the node's load and reads the others'.
func (b *Balancer) announce(ctx context.Context) {
	now := time.Now()
	c := b.counts()
	b.mu.Lock()
	if b.left {
		b.mu.Unlock()
		return
	}
	l := Load{Name: b.name, URL: b.url, Pool: b.cfg.Pool, Subscribers: c.Subscribers, SSE: c.SSE, WS: c.WS, Raw: c.Raw,
		InFlight: b.inFlight(now), Shedding: b.shedding, ShedTotal: b.shedTotal, Rebalance: !b.cfg.Disabled, At: now.UnixMilli()}
	if el := now.Sub(b.prevAt).Seconds(); !b.prevAt.IsZero() && el > 0 {
		l.WritesPerSec = float64(c.Writes-b.prev.Writes) / el
		l.UpdatesPerSec = float64(c.Updates-b.prev.Updates) / el
	}
	b.prev, b.prevAt = c, now
	b.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, max(b.cfg.TTL, time.Second))
	defer cancel()
	err := b.reg.Announce(rctx, l)
	var ls Listing
	if err == nil {
		ls, err = b.reg.Scan(rctx, b.cfg.MaxNodes, b.cfg.URLAllow)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.self = l
	if err != nil {
		// A slow or failed call: go on with the last listing while it is
		// younger than TTL (step checks), then stop shedding.
		b.errors++
		if !b.failing {
			b.log.Warn("cluster registry unreachable: using the last listing, for at most the TTL", "err", err, "ttl", b.cfg.TTL)
		}
		b.failing = true
		return
	}
	if b.failing {
		b.log.Info("cluster registry reachable again")
	}
	b.failing = false
	if b.left {
		return
	}
	b.noteListing(ls)
	b.nodes, b.listedAt = ls.Nodes, time.Now()
}

// noteListing counts, under b.mu, what a listing ignored, and logs when
// that changes: records refused, names beyond MaxNodes.
func (b *Balancer) noteListing(ls Listing) {
	prev := b.listing
	b.invalid += uint64(ls.Invalid)
	b.unread += uint64(ls.Unread)
	ls.Nodes = nil
	b.listing = ls
	if ls.Invalid > 0 && prev.Invalid == 0 {
		b.log.Warn("cluster registry holds records this node ignores (not in the mean, not listed)", "invalid", ls.Invalid, "first", ls.FirstInvalid)
	}
	if ls.Unread > 0 && prev.Unread == 0 {
		b.log.Warn("cluster registry holds more names than --cluster-max-nodes reads: listing incomplete, shedding paused", "names", ls.Names, "unread", ls.Unread, "max", b.cfg.MaxNodes)
	}
	if ls.Unread == 0 && prev.Unread > 0 {
		b.log.Info("cluster registry listing complete again", "names", ls.Names)
	}
}

// balancing reports whether l counts in this node's mean: another node of
// the same pool that rebalances.
func (b *Balancer) balancing(l Load) bool {
	return l.Name != b.name && l.Rebalance && l.Pool == b.cfg.Pool
}

// filling records own and reports whether the node's subscribers grew by
// more than MinExcess within the last two announcements: clients are still
// arriving (a ramp-up, a node that left and whose clients come over). The
// balancer in front places new ones on the lighter nodes by itself, and the
// others' counts lag by up to an announcement, so an excess seen now is
// mostly theirs in transit: shedding starts only once arrivals settle.
// Called under mu.
func (b *Balancer) filling(now time.Time, own int) bool {
	k := 0
	for k < len(b.history) && now.Sub(b.history[k].at) > 2*b.cfg.Interval {
		k++
	}
	b.history = append(b.history[:copy(b.history, b.history[k:])], shedMark{at: now, n: own})
	low := own
	for _, h := range b.history {
		low = min(low, h.n)
	}
	return own-low > b.cfg.MinExcess
}

// step decides whether to shed, and sheds, dt after the previous step.
func (b *Balancer) step(now time.Time, dt time.Duration) {
	c := b.counts()
	b.mu.Lock()
	b.steps++
	own := c.Subscribers
	filling := b.filling(now, own)
	others, n := 0.0, 0
	for _, l := range b.nodes {
		if b.balancing(l) {
			others += float64(l.Subscribers + l.InFlight)
			n++
		}
	}
	mean := func(own int) float64 {
		if b.cfg.Disabled {
			return others / float64(max(n, 1))
		}
		return (others + float64(own+b.inFlight(now))) / float64(n+1)
	}
	b.mean, b.count = mean(own), n
	if !b.cfg.Disabled {
		b.count++
	}
	if b.cfg.Disabled || b.left || b.listedAt.IsZero() || now.Sub(b.listedAt) > b.cfg.TTL || b.count < 2 || !b.listing.Complete() {
		if b.shedding && !b.left {
			b.log.Warn("shedding stopped: no recent complete listing of the cluster's mean load", "listed_ago", now.Sub(b.listedAt), "nodes", b.count, "unread", b.listing.Unread)
			b.endEpisode(now, b.cfg.Rest)
		}
		b.mu.Unlock()
		return
	}
	excess := float64(own) - b.mean
	start := func() bool {
		return excess > b.cfg.Threshold*b.mean && !filling && excess >= float64(b.cfg.MinExcess) && !now.Before(b.quietTill)
	}
	if !b.shedding && start() {
		// Count only live streams: a closed stream not yet noticed (its
		// peer left between two heartbeats) is no load to move.
		b.mu.Unlock()
		live := b.shed.Sweep()
		b.mu.Lock()
		own = min(own, live)
		b.mean = mean(own)
		excess = float64(own) - b.mean
		if !b.left && !b.shedding && start() {
			b.shedding, b.budget, b.epSent, b.epFrom = true, int(math.Ceil(excess)), 0, own
			b.log.Info("above the cluster's mean: shedding", "subscribers", own, "mean", math.Round(b.mean), "nodes", b.count, "cluster", b.describe(own, now))
		}
	}
	if b.shedding && b.epSent == 0 && filling {
		// Nobody sent away yet (the excess is too young to move) and
		// clients are still arriving: the plan rests on counts that are
		// already stale. Judge again once arrivals settle.
		b.endEpisode(now, 0)
		b.log.Info("clients still arriving: shedding deferred", "subscribers", own, "mean", math.Round(b.mean))
	}
	if b.shedding && excess < 1 {
		b.endEpisode(now, b.cfg.Rest)
		b.log.Info("at the cluster's mean: shedding stopped", "subscribers", own, "mean", math.Round(b.mean), "sent_away", b.shedTotal, "rest", b.cfg.Rest, "cluster", b.describe(own, now))
	}
	if b.shedding && b.budget <= 0 && now.Sub(b.lastSend) < b.cfg.Settle {
		b.mu.Unlock() // budget spent: wait for the last ones to land before judging
		return
	}
	if b.shedding && b.budget <= 0 && 2*(b.epFrom-own) >= b.epSent {
		// They went elsewhere: the excess was underestimated (the others'
		// counts are seconds old). Go on with a new budget.
		b.budget, b.epSent, b.epFrom = int(math.Ceil(excess)), 0, own
	}
	if b.shedding && b.budget <= 0 {
		b.endEpisode(now, b.cfg.Cooldown)
		b.log.Warn("sent away as many as the excess and still above the mean (do the clients come back? the balancer should be least_conn): pausing",
			"subscribers", own, "mean", math.Round(b.mean), "for", b.cfg.Cooldown)
	}
	if !b.shedding {
		b.mu.Unlock()
		return
	}
	perSec := min(b.cfg.Rate, b.cfg.MaxFraction*float64(own), excess/b.cfg.Tau.Seconds())
	perSec = max(perSec, 1)
	b.tokens = min(b.tokens+perSec*dt.Seconds(), perSec)
	k := int(min(math.Floor(b.tokens), math.Floor(excess), float64(b.budget)))
	b.mu.Unlock()
	if k <= 0 {
		return
	}
	sent := b.shed.SendAway(k, b.cfg.Settle)
	b.mu.Lock()
	b.tokens -= float64(k) // a subscriber gone by itself meanwhile still spends its token
	b.budget -= sent
	b.epSent += sent
	if sent > 0 {
		b.lastSend = now
		b.recent = append(b.recent, shedMark{at: now, n: sent})
		b.shedTotal += uint64(sent)
	}
	b.mu.Unlock()
}

// endEpisode ends, under b.mu, a shedding episode: no new one starts
// before pause has passed.
func (b *Balancer) endEpisode(now time.Time, pause time.Duration) {
	b.shedding, b.tokens = false, 0
	b.quietTill = now.Add(pause)
}

// describe returns, under b.mu, the counts the decision used: each node's
// subscribers + in flight, and the age of its announcement.
func (b *Balancer) describe(own int, now time.Time) string {
	out := fmt.Sprintf("%s=%d+%d", b.name, own, b.inFlight(now))
	for _, l := range b.nodes {
		if b.balancing(l) {
			out += fmt.Sprintf(" %s=%d+%d(%dms old)", l.Name, l.Subscribers, l.InFlight, now.UnixMilli()-l.At)
		}
	}
	return out
}

// View is the cluster as this node sees it: GET /api/nodes. Its size is
// bounded: at most MaxListed nodes, each record at most MaxRecordBytes.
type View struct {
	// Self is this node's name; Pool its pool.
	Self string `json:"self"`
	Pool string `json:"pool"`
	// Nodes are the valid announcements of the nodes of this pool, by
	// name, at most MaxListed (Omitted counts the rest); a node with
	// rebalance false is listed but counts in no mean.
	Nodes   []Load `json:"nodes"`
	Omitted int    `json:"omitted"`
	// Count is the number of nodes in the mean (the balancing nodes of
	// the pool, this one included if it balances); MeanSubscribers their
	// mean load, counting the subscribers in flight between nodes.
	Count           int     `json:"count"`
	MeanSubscribers float64 `json:"mean_subscribers"`
	// OtherPools counts the valid announcements of other pools (not
	// listed).
	OtherPools int `json:"other_pools"`
	// Invalid counts the records of the last listing that were refused
	// (not listed, in no mean); Unread the names beyond MaxNodes it did
	// not read (while any, the node does not shed).
	Invalid int `json:"invalid"`
	Unread  int `json:"unread"`
	// Rebalance tells whether this node sheds; Threshold and Rate are its
	// settings; Shedding whether it sheds now; SentAway how many it sent
	// away since it started; Decisions how many times it decided whether
	// to shed.
	Rebalance bool    `json:"rebalance"`
	Threshold float64 `json:"threshold"`
	Rate      float64 `json:"rate"`
	Shedding  bool    `json:"shedding"`
	SentAway  uint64  `json:"sent_away"`
	Decisions uint64  `json:"decisions"`
	// RegistryErrors counts failed announcements or listings.
	RegistryErrors uint64 `json:"registry_errors"`
}

// View returns the cluster as this node last saw it.
func (b *Balancer) View() View {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := View{Self: b.name, Pool: b.cfg.Pool, Nodes: []Load{}, Count: b.count, MeanSubscribers: math.Round(b.mean*10) / 10,
		Invalid: b.listing.Invalid, Unread: b.listing.Unread,
		Rebalance: !b.cfg.Disabled, Threshold: b.cfg.Threshold, Rate: b.cfg.Rate,
		Shedding: b.shedding, SentAway: b.shedTotal, Decisions: b.steps, RegistryErrors: b.errors}
	for _, l := range b.nodes {
		switch {
		case l.Pool != b.cfg.Pool:
			v.OtherPools++
		case len(v.Nodes) == MaxListed:
			v.Omitted++
		default:
			v.Nodes = append(v.Nodes, l)
		}
	}
	return v
}

// ViewJSON returns View as JSON.
func (b *Balancer) ViewJSON() ([]byte, error) {
	out, err := json.Marshal(b.View())
	if err != nil {
		return nil, fmt.Errorf("cluster: encode view: %w", err)
	}
	return out, nil
}
