package bench

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"strings"
	"testing"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestParseWrk(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file                string
		rps, p50, p99, xfer float64
		requests, errors    int64
		read                int64
	}{
		// Real wrk 4.1.0 output, keep-alive and Connection: close.
		{"wrk-keepalive.txt", 91235.33, 61, 346, 14.36 * (1 << 20), 100346, 0, 0},
		{"wrk-close.txt", 15836.78, 201, 634, 2.42 * (1 << 20), 17424, 0, 0},
		// Every error line wrk prints; read errors are not counted as errors.
		{"wrk-errors.txt", 40123.40, 1010, 2e6, 6.01 * (1 << 30), 401234, 3 + 4 + 5 + 17, 120},
	}
	for _, c := range cases {
		r, err := ParseWrk(string(read(t, c.file)))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !near(r.RPS, c.rps) || !near(r.P50US, c.p50) || !near(r.P99US, c.p99) || !near(r.TransferBytes, c.xfer) {
			t.Errorf("%s: rps %v p50 %v p99 %v transfer %v; want %v %v %v %v", c.file, r.RPS, r.P50US, r.P99US, r.TransferBytes, c.rps, c.p50, c.p99, c.xfer)
		}
		if r.Requests != c.requests || r.Errors() != c.errors || r.ErrRead != c.read {
			t.Errorf("%s: requests %d errors %d read %d; want %d %d %d", c.file, r.Requests, r.Errors(), r.ErrRead, c.requests, c.errors, c.read)
		}
	}
}

func TestParseWrkRejects(t *testing.T) {
	t.Parallel()
	full := string(read(t, "wrk-keepalive.txt"))
	for name, in := range map[string]string{
		"empty":         "",
		"connect error": "unable to connect to 127.0.0.1:1 Connection refused\n",
		"no --latency":  strings.ReplaceAll(full, "99%", "98%"),
		"bad unit":      strings.Replace(full, "346.00us", "346.00xs", 1),
		"bad number":    strings.Replace(full, "Requests/sec:  91235.33", "Requests/sec:  nan-ish", 1),
	} {
		if _, err := ParseWrk(in); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestParseWrkTime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"601.00us": 601, "1.23ms": 1230, "2.00s": 2e6, "1.50m": 90e6, "0.50h": 1800e6} {
		got, err := parseWrkTime(in)
		if err != nil || !near(got, want) {
			t.Errorf("parseWrkTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestParseIperf3(t *testing.T) {
	t.Parallel()
	r, err := ParseIperf3(read(t, "iperf3.json"))
	if err != nil {
		t.Fatal(err)
	}
	if r.ReceivedBitsPerSec < 1e9 || r.Intervals != 2 || r.StalledIntervals != 0 {
		t.Errorf("got %+v", r)
	}
	// A path that stops forwarding must not pass as a slow one.
	if _, err := ParseIperf3(read(t, "iperf3-stalled.json")); err == nil || !strings.Contains(err.Error(), "stalled: 2 of 2") {
		t.Errorf("stalled transfer: err = %v", err)
	}
	if _, err := ParseIperf3([]byte(`{"error": "unable to connect to server: Connection refused", "end": {}}`)); err == nil ||
		!strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("iperf3 error: err = %v", err)
	}
	if _, err := ParseIperf3([]byte(`not json`)); err == nil {
		t.Error("garbage parsed")
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	in := []float64{5, 1, 3}
	if m := Median(in); m != 3 {
		t.Errorf("median %v", m)
	}
	if in[0] != 5 {
		t.Error("Median sorted its input")
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func sample() *Result {
	return &Result{
		Started: "2026-01-02 03:04 UTC", Mode: "quick", Rounds: 3, Duration: "10s",
		Machine: Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.18", Pinning: "proxy on CPU 1",
			Versions: map[string]string{"haproxy": "2.6.12"}},
		Scenarios: []*ScenarioResult{
			{Scenario: Scenario{ID: "http-keepalive", Title: "1. HTTP", How: "wrk",
				Metrics: []Metric{{Key: "rps", Label: "Requests/s", Unit: "req/s"}, {Key: "p99_us", Label: "p99", Unit: "µs", LowerIsBetter: true}}},
				Rows: []*Row{
					{Target: Direct, Rounds: []Round{{"rps": 90000, "p99_us": 500}}},
					{Target: Fulcrum, Rounds: []Round{{"rps": 30000, "p99_us": 900}, {"rps": 36000, "p99_us": 700}, {"rps": 33000, "p99_us": 800}}},
					{Target: HAProxy, Rounds: []Round{{"rps": 25000, "p99_us": 1000}, {"rps": 26000, "p99_us": 1000}, {"rps": 27000, "p99_us": 1000}}},
					{Target: Caddy, Unavailable: "not installed"},
				}},
			{Scenario: Scenario{ID: "idle-memory", Title: "4. Memory", How: "idle",
				Metrics: []Metric{{Key: "bytes_per_conn", Label: "RSS per connection", Unit: "B", LowerIsBetter: true}}},
				Rows: []*Row{
					{Target: Fulcrum, Rounds: []Round{{"bytes_per_conn": 3000}}},
					{Target: HAProxy, Rounds: []Round{{"bytes_per_conn": 1000}}, Failures: []string{"round 2 failed: boom"}},
				}},
		},
	}
}

func TestRatiosAndChecks(t *testing.T) {
	t.Parallel()
	r := sample()
	s := r.Scenario("http-keepalive")
	if got := s.Ratio(Fulcrum, HAProxy, "rps"); !near(got, 33000.0/26000) {
		t.Errorf("ratio to HAProxy %v", got)
	}
	if got := s.Ratio(Fulcrum, Direct, "rps"); !near(got, 33000.0/90000) {
		t.Errorf("ratio to direct %v", got)
	}
	if !math.IsNaN(s.Ratio(Caddy, HAProxy, "rps")) || !math.IsNaN(s.Ratio(Fulcrum, "nobody", "rps")) {
		t.Error("ratio without figures is not NaN")
	}
	checks := Checks(r)
	if len(checks) != 2 {
		t.Fatalf("checks %+v", checks)
	}
	// 1.27× HAProxy with p99 0.8×: met. 3000 B per connection: not met.
	if checks[0].Met != "yes" || checks[1].Met != "no" {
		t.Errorf("checks %+v", checks)
	}
	r.Scenario("http-keepalive").Row(Fulcrum).Rounds = []Round{{"rps": 30000, "p99_us": 1100}}
	if c := Checks(r)[0]; c.Met != "no" {
		t.Errorf("p99 worse than HAProxy's but %+v", c)
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	md := sample().Markdown()
	for _, want := range []string{
		"| CPU | Test CPU (2 cores) |",
		"| haproxy | 2.6.12 |",
		"| fulcrum | 33,000 req/s | 800 µs | 1.27× | 0.37× | 0.80× | 30,000 / 36,000 / 33,000 |",
		"| caddy | — | — | — | — | — | — | unavailable: not installed |",
		"round 2 failed: boom",
		"| Memory per idle client connection ≤ 2 KiB | 3000 B (3.00× HAProxy) | no |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestChart(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteChart(&b, sample()); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 1000 || img.Bounds().Dy() < 200 {
		t.Errorf("chart size %v", img.Bounds())
	}
	// Fulcrum's bar colour is drawn somewhere.
	found := false
	want := targetColors[Fulcrum]
	for y := 0; y < img.Bounds().Dy() && !found; y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if uint8(r>>8) == want.R && uint8(g>>8) == want.G && uint8(bl>>8) == want.B {
				found = true
				break
			}
		}
	}
	if !found {
		t.Error("no Fulcrum bar in the chart")
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{{123456.7, "req/s", "123,457 req/s"}, {12.345, "Gbit/s", "12.3 Gbit/s"}, {1.5, "", "1.50"}, {1096, "B", "1096 B"}, {math.NaN(), "x", "—"}, {0, "", "0"}} {
		if got := FormatValue(c.v, c.unit); got != c.want {
			t.Errorf("FormatValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
	if FormatRatio(1.234) != "1.23×" || FormatRatio(math.Inf(1)) != "—" {
		t.Error("FormatRatio")
	}
}

func TestMarkdownCPUAndScaling(t *testing.T) {
	t.Parallel()
	cpu := Metric{Key: "cpu_us_req", Label: "CPU per request", Unit: "µs", LowerIsBetter: true, VsHAProxy: true}
	r := &Result{Scenarios: []*ScenarioResult{
		{Scenario: Scenario{ID: "http-scaling", Title: "6. Scaling", How: "wrk", Footnote: "CPU footnote",
			Metrics: []Metric{{Key: "rps", Label: "Requests/s", Unit: "req/s"}, cpu}},
			Rows: []*Row{
				{Target: "fulcrum-1cpu", Ref: "haproxy-1cpu", Rounds: []Round{{"rps": 20000, "cpu_us_req": 50}}},
				{Target: "haproxy-1cpu", Ref: "haproxy-1cpu", Rounds: []Round{{"rps": 25000, "cpu_us_req": 40}}},
				{Target: "fulcrum-2cpu", Ref: "haproxy-2cpu", ScaleFrom: "fulcrum-1cpu", Rounds: []Round{{"rps": 30000, "cpu_us_req": 60}}},
				{Target: "haproxy-2cpu", Ref: "haproxy-2cpu", ScaleFrom: "haproxy-1cpu", Rounds: []Round{{"rps": 40000, "cpu_us_req": 40}}},
			}},
	}}
	md := r.Markdown()
	for _, want := range []string{
		"| Target | Requests/s | CPU per request | Requests/s vs HAProxy | Requests/s vs direct | CPU per request vs HAProxy | Requests/s vs fewest cores | Rounds | Notes |",
		"| fulcrum-1cpu | 20,000 req/s | 50 µs | 0.80× | — | 1.25× | — | 20,000 |  |",
		"| fulcrum-2cpu | 30,000 req/s | 60 µs | 0.75× | — | 1.50× | 1.50× | 30,000 |  |",
		"| haproxy-2cpu | 40,000 req/s | 40 µs | 1.00× | — | 1.00× | 1.60× | 40,000 |  |",
		"CPU footnote",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var b bytes.Buffer
	if err := WriteChart(&b, r); err != nil {
		t.Fatal(err)
	}
	if c, ok := colorOf("fulcrum-2cpu"); !ok || c != targetColors[Fulcrum] {
		t.Errorf("colorOf(fulcrum-2cpu) = %v, %v", c, ok)
	}
}

func TestParseGoBench(t *testing.T) {
	t.Parallel()
	out := "goos: linux\nBenchmarkTCPProfilesOverWAN-2   \t       1\t156552069449 ns/op\t         2.492 auto-s\t         2.473 direct-s\t        13.02 tcp-s\nPASS\n"
	m, err := ParseGoBench(out, "BenchmarkTCPProfilesOverWAN")
	if err != nil {
		t.Fatal(err)
	}
	if m["auto-s"] != 2.492 || m["direct-s"] != 2.473 || m["tcp-s"] != 13.02 || m["ns/op"] != 156552069449 {
		t.Errorf("got %v", m)
	}
	if _, err := ParseGoBench("FAIL\n", "BenchmarkTCPProfilesOverWAN"); err == nil {
		t.Error("no result line parsed")
	}
}
