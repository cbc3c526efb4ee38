package cluster

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the balancer's metrics, all about this node: the size
// and mean of the cluster as it sees them, the subscribers it announced,
// whether it sheds and how many it sent away. No series names another
// node, so a sum over the nodes counts each once (every node's view of the
// others is on GET /api/nodes).
func (b *Balancer) Collector() prometheus.Collector { return (*collector)(b) }

type collector Balancer

var (
	descNodes = prometheus.NewDesc("tickstream_cluster_nodes",
		"Fan-out nodes in this node's mean: the rebalancing nodes of its pool (this one included if it rebalances).", nil, nil)
	descMean = prometheus.NewDesc("tickstream_cluster_mean_subscribers",
		"Mean subscribers per node over the cluster, counting those in flight between nodes.", nil, nil)
	descAnnounced = prometheus.NewDesc("tickstream_rebalance_announced_subscribers",
		"Subscribers this node announced in its last announcement to the cluster registry (absent until it is listed).", nil, nil)
	descShedding = prometheus.NewDesc("tickstream_rebalance_shedding",
		"1 while this node sends subscribers away because it is above the cluster's mean.", nil, nil)
	descSent = prometheus.NewDesc("tickstream_rebalance_sent_away_total",
		"Subscribers this node sent away to rebalance the cluster (goaway / close 1012).", nil, nil)
	descErrors = prometheus.NewDesc("tickstream_cluster_registry_errors_total",
		"Failed announcements or listings of the cluster registry in Redis.", nil, nil)
	descIgnored = prometheus.NewDesc("tickstream_cluster_records_ignored_total",
		"Registry records this node ignored, summed over its listings: invalid (too long, not JSON, out of bounds, bad name, pool or url) or unread (names beyond --cluster-max-nodes).", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descMean, descAnnounced, descShedding, descSent, descErrors, descIgnored} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	v := (*Balancer)(c).View()
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(v.Count))
	ch <- prometheus.MustNewConstMetric(descMean, prometheus.GaugeValue, v.MeanSubscribers)
	for _, l := range v.Nodes {
		if l.Name == v.Self {
			ch <- prometheus.MustNewConstMetric(descAnnounced, prometheus.GaugeValue, float64(l.Subscribers))
		}
	}
	shed := 0.0
	if v.Shedding {
		shed = 1
	}
	ch <- prometheus.MustNewConstMetric(descShedding, prometheus.GaugeValue, shed)
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(v.SentAway))
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(v.RegistryErrors))
	b := (*Balancer)(c)
	b.mu.Lock()
	invalid, unread := b.invalid, b.unread
	b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descIgnored, prometheus.CounterValue, float64(invalid), "invalid")
	ch <- prometheus.MustNewConstMetric(descIgnored, prometheus.CounterValue, float64(unread), "unread")
}
