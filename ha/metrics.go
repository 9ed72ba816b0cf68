package ha

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// HAStatus is Status for the API (api.HA).
func (m *Manager) HAStatus() any { return m.Status() }

var (
	descActive = prometheus.NewDesc("fulcrum_ha_traffic_group_active",
		"1 when the traffic group is active on this device.", []string{"traffic_group"}, nil)
	descFailovers = prometheus.NewDesc("fulcrum_ha_failovers_total",
		"Times this device took the traffic group over.", []string{"traffic_group"}, nil)
	descPeerUp = prometheus.NewDesc("fulcrum_ha_peer_up",
		"1 while a peer device is heard on at least one HA path.", []string{"device"}, nil)
	descHeard = prometheus.NewDesc("fulcrum_ha_heartbeats_received_total",
		"Authentic heartbeats received, per HA path.", []string{"path"}, nil)
	descSendErr = prometheus.NewDesc("fulcrum_ha_heartbeat_send_errors_total",
		"Heartbeats the kernel refused to send, per HA path (an unreachable path).", []string{"path"}, nil)
	descPathUp = prometheus.NewDesc("fulcrum_ha_path_up",
		"1 while the HA path to the peer delivers heartbeats (heard within dead_time).", []string{"device", "path"}, nil)
	descPathDowns = prometheus.NewDesc("fulcrum_ha_path_down_total",
		"Times the HA path to the peer went silent for dead_time.", []string{"device", "path"}, nil)
	descRefused = prometheus.NewDesc("fulcrum_ha_heartbeats_refused_total",
		"Heartbeats refused, by reason.", []string{"reason"}, nil)
)

// Collector exports the device group's state as Prometheus metrics, read
// from the published Status at scrape time.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descFailovers, descPeerUp, descHeard, descSendErr, descRefused, descPathUp, descPathDowns} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Status()
	for _, g := range s.Groups {
		v := 0.0
		if g.State == "active" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, v, g.Name)
		ch <- prometheus.MustNewConstMetric(descFailovers, prometheus.CounterValue, float64(g.Failovers), g.Name)
	}
	for _, d := range s.Devices {
		if d.Self {
			continue
		}
		v := 0.0
		if d.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descPeerUp, prometheus.GaugeValue, v, d.Name)
		for i, p := range d.Paths {
			up := 0.0
			if p.Up {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(descPathUp, prometheus.GaugeValue, up, d.Name, strconv.Itoa(i))
			ch <- prometheus.MustNewConstMetric(descPathDowns, prometheus.CounterValue, float64(p.Downs), d.Name, strconv.Itoa(i))
		}
	}
	for i := range c.m.recvd {
		p := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(descHeard, prometheus.CounterValue, float64(c.m.recvd[i].Load()), p)
		ch <- prometheus.MustNewConstMetric(descSendErr, prometheus.CounterValue, float64(c.m.sendErrs[i].Load()), p)
	}
	r := s.Refused
	for reason, n := range map[string]uint64{"malformed": r.Malformed, "unauthenticated": r.Unauthenticated,
		"unknown_device": r.UnknownDevice, "replayed": r.Replayed, "wrong_source": r.WrongSource, "overflow": r.Overflow, "late": r.Late} {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(n), reason)
	}
}
