package api

import (
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics exposes Prometheus metrics for one Fulcrum process.
//
// Counters and gauges that the engine already keeps (connections, requests,
// bytes, member health) are read from the Backend at scrape time by a custom
// collector that emits const metrics: the data path pays nothing for them.
// Only what the engine does not keep — the request-latency histogram and the
// per-reason count of rejected input — are live metric objects, fed by the
// data path through RequestObserver and Rejected.
type Metrics struct {
	reg      *prometheus.Registry
	latency  *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

// LatencyBuckets are the request_duration_seconds buckets: from half a
// millisecond (a LAN backend answering from cache) to 30 s (a slow report
// behind the default idle timeouts), dense where HTTP backends usually sit.
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics builds the metrics for Backend b (nil b: only the data-path
// metrics and the Go/process collectors). It registers everything on its own
// registry, never on prometheus.DefaultRegisterer, so several instances
// (tests, embedded use) do not collide.
func NewMetrics(b Backend) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fulcrum",
			Name:      "request_duration_seconds",
			Help:      "Time from sending a request to a pool member until its response headers arrived.",
			Buckets:   LatencyBuckets,
		}, []string{"virtual", "pool", "member"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fulcrum",
			Name:      "virtual_rejected_total",
			Help:      "Client inputs a virtual server rejected, by reason (bad_request, header_too_large, header_timeout, bad_request_body, client_aborted, client_timeout, client_gone, no_member, connection_limit, local_resources, ...).",
		}, []string{"virtual", "reason"}),
	}
	m.reg.MustRegister(m.latency, m.rejected,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if b != nil {
		m.reg.MustRegister(newBackendCollector(b))
	}
	return m
}

// Registry is the registry /metrics serves: Fulcrum's own metrics plus the
// Go runtime and process collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RequestObserver returns the latency histogram observer for (virtual, pool,
// member). Looking it up hashes the labels, so the data path should call this
// once per member (per plan) and keep the result.
func (m *Metrics) RequestObserver(virtual, pool, member string) prometheus.Observer {
	return m.latency.WithLabelValues(virtual, pool, member)
}

// Rejected counts one malformed or refused client input on a virtual server.
func (m *Metrics) Rejected(virtual, reason string) {
	m.rejected.WithLabelValues(virtual, reason).Inc()
}

// ForgetMember drops the latency series of a member that left its pool (after
// a reload), so removed members do not linger in every scrape. Observers the
// data path still holds for it keep working but are no longer exported.
func (m *Metrics) ForgetMember(pool, member string) {
	m.latency.DeletePartialMatch(prometheus.Labels{"pool": pool, "member": member})
}

// ForgetVirtual drops the latency and rejected series of a virtual server
// that no longer exists.
func (m *Metrics) ForgetVirtual(virtual string) {
	m.latency.DeletePartialMatch(prometheus.Labels{"virtual": virtual})
	m.rejected.DeletePartialMatch(prometheus.Labels{"virtual": virtual})
}

// memberStates are the states fulcrum_member_state always reports, one-hot,
// so that `fulcrum_member_state{state="disabled"} == 1` is a stable query.
var memberStates = []string{"enabled", "disabled", "forced-offline"}

// backendCollector turns Backend snapshots into const metrics at scrape time.
type backendCollector struct {
	b Backend

	vActive, vTotal, vRequests, vBytesIn, vBytesOut, vErrors, vClientErrors, vPersistFallbacks, vAvailable *prometheus.Desc
	vLBSP, vDSRPackets, vDSRDrops                                                                          *prometheus.Desc

	pAvailable, pTotal, pActive, pConns, pRequests, pBytesIn, pBytesOut, pErrors *prometheus.Desc

	mUp, mState, mActive, mTotal, mRequests, mBytesIn, mBytesOut, mErrors, mPassive, mLatency, mMonitorUp *prometheus.Desc
}

func newBackendCollector(b Backend) *backendCollector {
	v := []string{"virtual"}
	p := []string{"pool"}
	pm := []string{"pool", "member"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("fulcrum_"+name, help, labels, nil)
	}
	return &backendCollector{
		b:                 b,
		vActive:           d("virtual_connections_active", "Client connections open on the virtual server.", v),
		vTotal:            d("virtual_connections_total", "Client connections the virtual server accepted.", v),
		vRequests:         d("virtual_requests_total", "HTTP requests (or UDP datagrams) the virtual server handled.", v),
		vBytesIn:          d("virtual_bytes_in_total", "Bytes received from clients.", v),
		vBytesOut:         d("virtual_bytes_out_total", "Bytes sent to clients.", v),
		vErrors:           d("virtual_errors_total", "Connections or requests that ended in an error charged to a member or to Fulcrum itself.", v),
		vClientErrors:     d("virtual_client_errors_total", "Requests the client broke (truncated, malformed or stalled body, gone mid-response); never charged to a member.", v),
		vPersistFallbacks: d("virtual_persist_fallbacks_total", "Connections or datagrams whose first bytes gave a msrdp, sip or ssl persistence profile no key (nothing in time, garbage, no cookie, Call-ID or session ID); they were balanced without it.", v),
		vAvailable:        d("virtual_available", "1 when the virtual server is enabled and its pool has an available member.", v),
		vDSRPackets:       d("virtual_dsr_packets_total", "Packets a dsr virtual's address received (shared by the dsr virtuals of one address), by what became of them: forwarded or dropped.", []string{"virtual", "outcome"}),
		vDSRDrops:         d("virtual_dsr_drops_total", "Packets a dsr virtual's address dropped, by reason (malformed, not_virtual, no_flow, no_member, table_full, no_neighbor, send_error, other_protocol).", []string{"virtual", "reason"}),
		vLBSP: d("virtual_lbsp_connections_total", "Connections of a virtual with lbsp persistence, by how the member was chosen (server_option, client_identity, balanced, no_option) or why an option was ignored (not_member, malformed, unreadable).",
			[]string{"virtual", "outcome"}),

		pAvailable: d("pool_members_available", "Members of the pool that may take new connections.", p),
		pTotal:     d("pool_members_total", "Members configured in the pool.", p),
		pActive:    d("pool_connections_active", "Server-side connections open to the pool's members.", p),
		pConns:     d("pool_connections_total", "Server-side connections opened to the pool's members.", p),
		pRequests:  d("pool_requests_total", "Requests sent to the pool's members.", p),
		pBytesIn:   d("pool_bytes_in_total", "Bytes received from the pool's members.", p),
		pBytesOut:  d("pool_bytes_out_total", "Bytes sent to the pool's members.", p),
		pErrors:    d("pool_errors_total", "Connect failures, resets and timeouts talking to the pool's members.", p),

		mUp:        d("member_up", "1 unless health monitors or passive failure detection have marked the member down (independent of its admin state).", pm),
		mState:     d("member_state", "Administrative state of the member, one-hot: enabled, disabled, forced-offline.", []string{"pool", "member", "state"}),
		mActive:    d("member_connections_active", "Server-side connections open to the member.", pm),
		mTotal:     d("member_connections_total", "Server-side connections opened to the member.", pm),
		mRequests:  d("member_requests_total", "Requests sent to the member.", pm),
		mBytesIn:   d("member_bytes_in_total", "Bytes received from the member.", pm),
		mBytesOut:  d("member_bytes_out_total", "Bytes sent to the member.", pm),
		mErrors:    d("member_errors_total", "Connect failures, resets and timeouts talking to the member.", pm),
		mPassive:   d("member_passive_failures_total", "Failures counted by passive (inband) health detection.", pm),
		mLatency:   d("member_latency_ewma_seconds", "Moving average of the member's response latency (used by the fastest method).", pm),
		mMonitorUp: d("member_monitor_up", "Last result of each health monitor on the member (only monitors that have run).", []string{"pool", "member", "monitor"}),
	}
}

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.vActive, c.vTotal, c.vRequests, c.vBytesIn, c.vBytesOut, c.vErrors, c.vClientErrors, c.vPersistFallbacks, c.vAvailable, c.vLBSP, c.vDSRPackets, c.vDSRDrops,
		c.pAvailable, c.pTotal, c.pActive, c.pConns, c.pRequests, c.pBytesIn, c.pBytesOut, c.pErrors,
		c.mUp, c.mState, c.mActive, c.mTotal, c.mRequests, c.mBytesIn, c.mBytesOut, c.mErrors, c.mPassive, c.mLatency, c.mMonitorUp,
	} {
		ch <- d
	}
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	for _, v := range c.b.Virtuals() {
		gauge(c.vActive, float64(v.Active), v.Name)
		counter(c.vTotal, v.Total, v.Name)
		counter(c.vRequests, v.Requests, v.Name)
		counter(c.vBytesIn, v.BytesIn, v.Name)
		counter(c.vBytesOut, v.BytesOut, v.Name)
		counter(c.vErrors, v.Errors, v.Name)
		counter(c.vClientErrors, v.ClientErrors, v.Name)
		counter(c.vPersistFallbacks, v.PersistFallbacks, v.Name)
		gauge(c.vAvailable, b2f(v.Availability == "available"), v.Name)
		if d := v.DSR; d != nil {
			counter(c.vDSRPackets, d.Forwarded, v.Name, "forwarded")
			var dropped uint64
			for _, n := range d.Drops {
				dropped += n
			}
			counter(c.vDSRPackets, dropped, v.Name, "dropped")
			for _, r := range slices.Sorted(maps.Keys(d.Drops)) {
				counter(c.vDSRDrops, d.Drops[r], v.Name, r)
			}
		}
		if l := v.LBSP; l != nil {
			for _, o := range []struct {
				name string
				n    uint64
			}{{"server_option", l.ByServer}, {"client_identity", l.ByIdentity}, {"balanced", l.Balanced}, {"no_option", l.NoOption},
				{"not_member", l.IgnoredNotMember}, {"malformed", l.Malformed}, {"unreadable", l.Unreadable}} {
				counter(c.vLBSP, o.n, v.Name, o.name)
			}
		}
	}
	for _, p := range c.b.Pools() {
		gauge(c.pAvailable, float64(p.Available), p.Name)
		gauge(c.pTotal, float64(p.Total), p.Name)
		gauge(c.pActive, float64(p.Active), p.Name)
		counter(c.pConns, p.TotalConns, p.Name)
		counter(c.pRequests, p.Requests, p.Name)
		counter(c.pBytesIn, p.BytesIn, p.Name)
		counter(c.pBytesOut, p.BytesOut, p.Name)
		counter(c.pErrors, p.Errors, p.Name)
		for _, mb := range p.Members {
			l := []string{p.Name, mb.Address}
			gauge(c.mUp, b2f(mb.Health != "down" && mb.Availability != "offline"), l...)
			known := false
			for _, s := range memberStates {
				known = known || s == mb.State
				gauge(c.mState, b2f(s == mb.State), p.Name, mb.Address, s)
			}
			if !known && mb.State != "" {
				// A state this build does not know: still show it rather than
				// report the member in no state at all.
				gauge(c.mState, 1, p.Name, mb.Address, mb.State)
			}
			gauge(c.mActive, float64(mb.Active), l...)
			counter(c.mTotal, mb.Total, l...)
			counter(c.mRequests, mb.Requests, l...)
			counter(c.mBytesIn, mb.BytesIn, l...)
			counter(c.mBytesOut, mb.BytesOut, l...)
			counter(c.mErrors, mb.Errors, l...)
			counter(c.mPassive, mb.PassiveFailures, l...)
			gauge(c.mLatency, time.Duration(mb.LatencyEWMANS).Seconds(), l...)
			for _, mon := range mb.Monitors {
				if mon.Checked {
					gauge(c.mMonitorUp, b2f(mon.Up), p.Name, mb.Address, mon.Monitor)
				}
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
