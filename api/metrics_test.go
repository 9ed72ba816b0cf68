package api

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	fb := newFake()
	m := NewMetrics(fb)
	m.RequestObserver("web_vs", "web", "127.0.0.1:8081").Observe(0.003)
	m.RequestObserver("web_vs", "web", "127.0.0.1:8081").Observe(0.2)
	m.Rejected("web_vs", "header_too_large")
	m.Rejected("web_vs", "header_too_large")
	m.Rejected("web_vs", "bad_request")

	rec := do(t, NewHandler(fb, m, Options{}), "GET", "/metrics", "")
	wantStatus(t, rec, 200)
	body := rec.Body.String()
	for _, want := range []string{
		`fulcrum_virtual_connections_active{virtual="web_vs"} 3`,
		`fulcrum_virtual_connections_total{virtual="web_vs"} 120`,
		`fulcrum_virtual_requests_total{virtual="web_vs"} 400`,
		`fulcrum_virtual_bytes_in_total{virtual="web_vs"} 5000`,
		`fulcrum_virtual_bytes_out_total{virtual="web_vs"} 3.145728e+06`,
		`fulcrum_virtual_errors_total{virtual="web_vs"} 2`,
		`fulcrum_virtual_available{virtual="web_vs"} 1`,
		`fulcrum_virtual_available{virtual="app_vs"} 0`,
		`fulcrum_virtual_rejected_total{reason="header_too_large",virtual="web_vs"} 2`,
		`fulcrum_virtual_rejected_total{reason="bad_request",virtual="web_vs"} 1`,
		`fulcrum_pool_members_available{pool="web"} 1`,
		`fulcrum_pool_members_total{pool="web"} 3`,
		`fulcrum_pool_members_total{pool="app"} 0`,
		`fulcrum_pool_connections_active{pool="web"} 3`,
		`fulcrum_pool_connections_total{pool="web"} 120`,
		`fulcrum_pool_requests_total{pool="web"} 400`,
		`fulcrum_member_up{member="127.0.0.1:8081",pool="web"} 1`,
		`fulcrum_member_up{member="127.0.0.1:8082",pool="web"} 1`, // disabled but healthy
		`fulcrum_member_up{member="[::1]:8083",pool="web"} 0`,
		`fulcrum_member_state{member="127.0.0.1:8082",pool="web",state="disabled"} 1`,
		`fulcrum_member_state{member="127.0.0.1:8082",pool="web",state="enabled"} 0`,
		`fulcrum_member_state{member="127.0.0.1:8082",pool="web",state="forced-offline"} 0`,
		`fulcrum_member_connections_active{member="127.0.0.1:8081",pool="web"} 3`,
		`fulcrum_member_connections_total{member="127.0.0.1:8081",pool="web"} 100`,
		`fulcrum_member_requests_total{member="127.0.0.1:8081",pool="web"} 390`,
		`fulcrum_member_bytes_in_total{member="127.0.0.1:8081",pool="web"} 2048`,
		`fulcrum_member_bytes_out_total{member="127.0.0.1:8081",pool="web"} 1536`,
		`fulcrum_member_errors_total{member="[::1]:8083",pool="web"} 7`,
		`fulcrum_member_passive_failures_total{member="127.0.0.1:8082",pool="web"} 4`,
		`fulcrum_member_latency_ewma_seconds{member="127.0.0.1:8081",pool="web"} 0.002`,
		`fulcrum_member_monitor_up{member="127.0.0.1:8081",monitor="http",pool="web"} 1`,
		`fulcrum_member_monitor_up{member="[::1]:8083",monitor="http",pool="web"} 0`,
		`fulcrum_request_duration_seconds_count{member="127.0.0.1:8081",pool="web",virtual="web_vs"} 2`,
		`fulcrum_request_duration_seconds_bucket{member="127.0.0.1:8081",pool="web",virtual="web_vs",le="0.005"} 1`,
		`# TYPE fulcrum_member_connections_total counter`,
		`# TYPE fulcrum_member_connections_active gauge`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// gathered returns the value of every series of one metric family in g,
// keyed by its labels rendered as name=value pairs in label-name order.
func gathered(t *testing.T, g prometheus.Gatherer, family string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key []string
			for _, l := range m.GetLabel() {
				key = append(key, l.GetName()+"="+l.GetValue())
			}
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Histogram != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
			out[strings.Join(key, ",")] = v
		}
	}
	return out
}

// Counters come from the backend at scrape time: a change in the backend
// shows in the next scrape without anything being pushed.
func TestMetricsReadAtScrapeTime(t *testing.T) {
	t.Parallel()
	fb := newFake()
	m := NewMetrics(fb)
	if got := gathered(t, m.Registry(), "fulcrum_pool_members_available"); got["pool=web"] != 1 || got["pool=app"] != 0 || len(got) != 2 {
		t.Fatalf("before: %v", got)
	}
	fb.mu.Lock()
	fb.pools[0].Available = 3
	fb.pools = fb.pools[:1] // pool "app" removed by a reload
	fb.mu.Unlock()
	if got := gathered(t, m.Registry(), "fulcrum_pool_members_available"); got["pool=web"] != 3 || len(got) != 1 {
		t.Fatalf("after: %v", got)
	}
}

func TestMetricsForget(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	m.RequestObserver("v1", "p", "a:1").Observe(1)
	m.RequestObserver("v1", "p", "b:1").Observe(1)
	m.RequestObserver("v2", "q", "c:1").Observe(1)
	m.Rejected("v1", "timeout")
	m.Rejected("v2", "timeout")
	const lat, rej = "fulcrum_request_duration_seconds", "fulcrum_virtual_rejected_total"
	if n := len(gathered(t, m.Registry(), lat)); n != 3 {
		t.Fatalf("%d latency series, want 3", n)
	}
	m.ForgetMember("p", "a:1")
	if got := gathered(t, m.Registry(), lat); len(got) != 2 || got["member=b:1,pool=p,virtual=v1"] != 1 {
		t.Errorf("after ForgetMember: %v", got)
	}
	m.ForgetVirtual("v2")
	if got := gathered(t, m.Registry(), lat); len(got) != 1 {
		t.Errorf("after ForgetVirtual: %v", got)
	}
	if got := gathered(t, m.Registry(), rej); len(got) != 1 || got["reason=timeout,virtual=v1"] != 1 {
		t.Errorf("after ForgetVirtual: %v", got)
	}
}

// Two instances must not share state: tests and embedders create several.
func TestMetricsInstancesIndependent(t *testing.T) {
	t.Parallel()
	a, b := NewMetrics(newFake()), NewMetrics(newFake())
	a.Rejected("v", "timeout")
	if got := gathered(t, b.Registry(), "fulcrum_virtual_rejected_total"); len(got) != 0 {
		t.Errorf("metrics leaked between instances: %v", got)
	}
}

// A backend that reports the same pool twice must not blank the scrape.
func TestMetricsDuplicateSeriesDoNotFailScrape(t *testing.T) {
	t.Parallel()
	fb := newFake()
	fb.pools = append(fb.pools, fb.pools[1]) // "app" twice
	rec := do(t, NewHandler(fb, nil, Options{}), "GET", "/metrics", "")
	wantStatus(t, rec, 200)
	if !strings.Contains(rec.Body.String(), `fulcrum_virtual_connections_active{virtual="web_vs"} 3`) {
		t.Error("scrape lost good series because of one duplicate")
	}
}
