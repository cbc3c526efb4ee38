package cluster

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the balancer's metrics: the cluster's size and mean,
// every node's announced subscribers, whether this node sheds and how many
// it sent away.
func (b *Balancer) Collector() prometheus.Collector { return (*collector)(b) }

type collector Balancer

var (
	descNodes = prometheus.NewDesc("tickstream_cluster_nodes",
		"Fan-out nodes in this node's mean: the rebalancing nodes of its pool (this one included if it rebalances).", nil, nil)
	descMean = prometheus.NewDesc("tickstream_cluster_mean_subscribers",
		"Mean subscribers per node over the cluster, counting those in flight between nodes.", nil, nil)
	descNode = prometheus.NewDesc("tickstream_cluster_node_subscribers",
		"Subscribers each listed node of this pool announced (its last announcement; at most 128 nodes).", []string{"node"}, nil)
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
	for _, d := range []*prometheus.Desc{descNodes, descMean, descNode, descShedding, descSent, descErrors, descIgnored} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	v := (*Balancer)(c).View()
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(v.Count))
	ch <- prometheus.MustNewConstMetric(descMean, prometheus.GaugeValue, v.MeanSubscribers)
	for _, l := range v.Nodes {
		ch <- prometheus.MustNewConstMetric(descNode, prometheus.GaugeValue, float64(l.Subscribers), l.Name)
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
