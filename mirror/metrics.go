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
)

// MirrorStatus is Status for the API.
func (m *Mirror) MirrorStatus() any { return m.Status() }

// Collector exports mirroring as Prometheus metrics.
func (m *Mirror) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Mirror }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descLag, descConnected, descResyncs, descReceived, descRefused} {
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
	}
}
