package mirror

import "github.com/prometheus/client_golang/prometheus"

var (
	descSent = prometheus.NewDesc("fulcrum_mirror_messages_sent_total",
		"Mirroring messages sent to the peer on the current connection (records, deletions, snapshot markers).", []string{"traffic_group"}, nil)
	descLag = prometheus.NewDesc("fulcrum_mirror_lag_messages",
		"Messages sent and not yet acknowledged by the peer.", []string{"traffic_group"}, nil)
	descConnected = prometheus.NewDesc("fulcrum_mirror_connected",
		"1 while this device, active for the group, is connected to its mirror peer.", []string{"traffic_group"}, nil)
	descResyncs = prometheus.NewDesc("fulcrum_mirror_resyncs_total",
		"Full snapshots sent to the peer.", []string{"traffic_group"}, nil)
	descReceived = prometheus.NewDesc("fulcrum_mirror_records_received_total",
		"Records applied from the peer.", []string{"traffic_group"}, nil)
	descRefused = prometheus.NewDesc("fulcrum_mirror_refused_total",
		"Mirroring connections and records refused (unknown device, wrong group, malformed).", []string{"traffic_group"}, nil)
	descConnsOpen = prometheus.NewDesc("fulcrum_mirror_connections_open",
		"Connections of mirrored virtuals being mirrored now (active side).", []string{"traffic_group"}, nil)
	descConnsLost = prometheus.NewDesc("fulcrum_mirror_connections_lost_total",
		"Connections whose mirroring ended before they did because the channel went down: they will not survive a failover.", []string{"traffic_group"}, nil)
	descConnBytes = prometheus.NewDesc("fulcrum_mirror_connection_bytes_total",
		"Relayed bytes mirrored to the standby.", []string{"traffic_group"}, nil)
	descResumable = prometheus.NewDesc("fulcrum_mirror_connections_resumable",
		"Connections this device holds and could resume if the group failed over to it now (standby side).", []string{"traffic_group"}, nil)
	descShadowDrops = prometheus.NewDesc("fulcrum_mirror_connections_dropped_total",
		"Mirrored connections the standby dropped: over its limits, a gap in the stream, or a new stream from the peer.", []string{"traffic_group"}, nil)
)

// MirrorStatus is Status for the API.
func (m *Mirror) MirrorStatus() any { return m.Status() }

// Collector exports mirroring as Prometheus metrics.
func (m *Mirror) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Mirror }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descLag, descConnected, descResyncs, descReceived, descRefused,
		descConnsOpen, descConnsLost, descConnBytes, descResumable, descShadowDrops} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.m.Status().Groups {
		conn := 0.0
		if g.Connected != "" {
			conn = 1
		}
		ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(g.Sent), g.Name)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(g.Lag), g.Name)
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, conn, g.Name)
		ch <- prometheus.MustNewConstMetric(descResyncs, prometheus.CounterValue, float64(g.Resyncs), g.Name)
		ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(g.Received), g.Name)
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(g.Refused), g.Name)
		cs := g.Connections
		ch <- prometheus.MustNewConstMetric(descConnsOpen, prometheus.GaugeValue, float64(cs.Open), g.Name)
		ch <- prometheus.MustNewConstMetric(descConnsLost, prometheus.CounterValue, float64(cs.Lost), g.Name)
		ch <- prometheus.MustNewConstMetric(descConnBytes, prometheus.CounterValue, float64(cs.Bytes), g.Name)
		ch <- prometheus.MustNewConstMetric(descResumable, prometheus.GaugeValue, float64(cs.Shadows), g.Name)
		ch <- prometheus.MustNewConstMetric(descShadowDrops, prometheus.CounterValue, float64(cs.Dropped), g.Name)
	}
}
