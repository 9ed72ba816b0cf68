package bench

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Target names used in results. Reference targets for the ratio columns are
// HAProxy and Direct.
const (
	Direct        = "direct"
	Fulcrum       = "fulcrum"
	HAProxy       = "haproxy"
	HAProxySplice = "haproxy-splice"
	// FulcrumFastL4 is Fulcrum's L4 relay through a `type: fastl4` virtual
	// (kernel relay, eBPF sockmap), in the tcp-throughput scenario.
	FulcrumFastL4 = "fulcrum-fastl4"
	Nginx         = "nginx"
	Caddy         = "caddy"
)

// Metric is one measured quantity of a scenario.
type Metric struct {
	Key           string `json:"key"`   // "rps", "p50_us", …
	Label         string `json:"label"` // column header
	Unit          string `json:"unit"`  // "req/s", "µs", "Gbit/s", "B"
	LowerIsBetter bool   `json:"lower_is_better,omitempty"`
	// VsHAProxy adds a column with the row's ratio to HAProxy for this
	// metric (p99 always has one).
	VsHAProxy bool `json:"vs_haproxy,omitempty"`
}

// Scenario describes what was measured; Metrics[0] is the headline figure
// (the one charted and used for ratios in the chart).
type Scenario struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	How   string `json:"how"` // one line: load, concurrency, duration
	// Footnote is printed under the table (e.g. what the CPU columns count).
	Footnote string   `json:"footnote,omitempty"`
	Metrics  []Metric `json:"metrics"`
}

// Round is one measurement of one target: metric key → value.
type Round map[string]float64

// Row is one target in one scenario.
type Row struct {
	Target string `json:"target"`
	// Ref is the row the "vs HAProxy" columns compare with ("" = HAProxy);
	// in the scaling scenario, HAProxy with the same number of cores.
	Ref string `json:"ref,omitempty"`
	// ScaleFrom, when set, is the row this one's headline is compared with
	// in a "vs 1 core" column (the same proxy on fewer cores).
	ScaleFrom   string   `json:"scale_from,omitempty"`
	Unavailable string   `json:"unavailable,omitempty"` // why there is no figure
	Rounds      []Round  `json:"rounds,omitempty"`
	Failures    []string `json:"failures,omitempty"` // rounds that failed, with the reason
	Notes       []string `json:"notes,omitempty"`    // e.g. errors counted by the load generator
}

// Median of metric key over the row's rounds; NaN when there is none.
func (r *Row) Median(key string) float64 {
	var v []float64
	for _, rd := range r.Rounds {
		if x, ok := rd[key]; ok && !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	return Median(v)
}

// ScenarioResult is every target's rows for one scenario.
type ScenarioResult struct {
	Scenario
	Rows []*Row `json:"rows"`
}

// Row returns the row of target, or nil.
func (s *ScenarioResult) Row(target string) *Row {
	for _, r := range s.Rows {
		if r.Target == target {
			return r
		}
	}
	return nil
}

// RefOf is the row a row's "vs HAProxy" columns compare with.
func RefOf(r *Row) string {
	if r.Ref != "" {
		return r.Ref
	}
	return HAProxy
}

// Ratio is target's median of key divided by ref's; NaN when either is missing.
func (s *ScenarioResult) Ratio(target, ref, key string) float64 {
	a, b := s.Row(target), s.Row(ref)
	if a == nil || b == nil {
		return math.NaN()
	}
	x, y := a.Median(key), b.Median(key)
	if math.IsNaN(x) || math.IsNaN(y) || y == 0 {
		return math.NaN()
	}
	return x / y
}

// Machine describes where the run happened; it heads the report.
type Machine struct {
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	MemoryGB float64           `json:"memory_gb"`
	Kernel   string            `json:"kernel"`
	OS       string            `json:"os"`
	Versions map[string]string `json:"versions"` // tool → version string
	Pinning  string            `json:"pinning"`
	Sysctls  map[string]string `json:"sysctls,omitempty"`
}

// Result is one whole run.
type Result struct {
	Started   string            `json:"started"` // RFC 3339
	Mode      string            `json:"mode"`    // "default" or "quick"
	Rounds    int               `json:"rounds"`
	Duration  string            `json:"duration"` // per measurement
	Machine   Machine           `json:"machine"`
	Scenarios []*ScenarioResult `json:"scenarios"`
	Notes     []string          `json:"notes,omitempty"`
}

// Scenario returns the scenario with id, or nil.
func (r *Result) Scenario(id string) *ScenarioResult {
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Median of v (NaN for none); v is not modified.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// FormatValue prints a figure with a precision that suits its size.
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "—"
	}
	var s string
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		s = fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if v >= 10000 {
		s = thousands(int64(math.Round(v)))
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// FormatRatio prints a ratio as "1.23×" ("—" when there is none).
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r)
}

// Check is one of the project's performance targets, evaluated on a result.
type Check struct {
	Target   string // what was promised
	Measured string // what this run measured
	Met      string // "yes", "no" or "n/a"
}

func metOrNot(ok bool, values ...float64) string {
	for _, v := range values {
		if math.IsNaN(v) {
			return "n/a"
		}
	}
	if ok {
		return "yes"
	}
	return "no"
}

// Checks evaluates the targets against r: HTTP requests/s ≥ 1.2×
// HAProxy with p99 no worse; new connections/s ≥ HAProxy; L4 throughput ≥ 2×
// HAProxy and ≥ 70 % of direct; memory per idle connection ≤ 2 KiB.
func Checks(r *Result) []Check {
	var out []Check
	if s := r.Scenario("http-keepalive"); s != nil {
		rps, p99 := s.Ratio(Fulcrum, HAProxy, "rps"), s.Ratio(Fulcrum, HAProxy, "p99_us")
		out = append(out, Check{
			Target:   "HTTP keep-alive requests/s ≥ 1.2× HAProxy, p99 no worse",
			Measured: fmt.Sprintf("%s requests/s, p99 %s of HAProxy's", FormatRatio(rps), FormatRatio(p99)),
			Met:      metOrNot(rps >= 1.2 && p99 <= 1.0, rps, p99),
		})
	}
	if s := r.Scenario("http-close"); s != nil {
		c := s.Ratio(Fulcrum, HAProxy, "rps")
		out = append(out, Check{
			Target:   "New connections/s ≥ HAProxy",
			Measured: FormatRatio(c) + " HAProxy",
			Met:      metOrNot(c >= 1.0, c),
		})
	}
	if s := r.Scenario("tcp-throughput"); s != nil {
		h, d := s.Ratio(Fulcrum, HAProxy, "gbps"), s.Ratio(Fulcrum, Direct, "gbps")
		hs := s.Ratio(Fulcrum, HAProxySplice, "gbps")
		pct := percent(d)
		out = append(out, Check{
			Target:   "L4 throughput ≥ 2× HAProxy and ≥ 70% of direct",
			Measured: fmt.Sprintf("%s HAProxy (%s HAProxy with splice), %s of direct", FormatRatio(h), FormatRatio(hs), pct),
			Met:      metOrNot(h >= 2 && d >= 0.7, h, d),
		})
		if row := s.Row(FulcrumFastL4); row != nil {
			h, d := s.Ratio(FulcrumFastL4, HAProxy, "gbps"), s.Ratio(FulcrumFastL4, Direct, "gbps")
			measured := fmt.Sprintf("%s HAProxy, %s of direct", FormatRatio(h), percent(d))
			if row.Unavailable != "" {
				measured = "unavailable: " + row.Unavailable
			}
			out = append(out, Check{
				Target:   "L4 throughput through a `fastl4` virtual ≥ 2× HAProxy and ≥ 70% of direct",
				Measured: measured,
				Met:      metOrNot(h >= 2 && d >= 0.7, h, d),
			})
		}
	}
	if s := r.Scenario("idle-memory"); s != nil {
		row := s.Row(Fulcrum)
		v := math.NaN()
		if row != nil {
			v = row.Median("bytes_per_conn")
		}
		out = append(out, Check{
			Target:   "Memory per idle client connection ≤ 2 KiB",
			Measured: FormatValue(v, "B") + " (" + FormatRatio(s.Ratio(Fulcrum, HAProxy, "bytes_per_conn")) + " HAProxy)",
			Met:      metOrNot(v <= 2048, v),
		})
	}
	return out
}

// percent prints a ratio as a percentage ("—" when there is none).
func percent(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", r*100)
}

// Markdown renders the report: machine description, one table per scenario
// (medians, ratios to HAProxy and to direct, per-round headline values), and
// the targets.
func (r *Result) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Fulcrum benchmark — %s\n\n", r.Started)
	fmt.Fprintf(&b, "Mode **%s**: %d round(s), %s per measurement, medians over rounds. Generated by `bench/run`.\n\n", r.Mode, r.Rounds, r.Duration)
	m := r.Machine
	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| CPU | %s (%d cores) |\n", md(m.CPU), m.Cores)
	fmt.Fprintf(&b, "| Memory | %.1f GiB |\n", m.MemoryGB)
	fmt.Fprintf(&b, "| Kernel | %s |\n", md(m.Kernel))
	fmt.Fprintf(&b, "| OS | %s |\n", md(m.OS))
	fmt.Fprintf(&b, "| CPU placement | %s |\n", md(m.Pinning))
	for _, k := range sortedKeys(m.Versions) {
		fmt.Fprintf(&b, "| %s | %s |\n", md(k), md(m.Versions[k]))
	}
	for _, k := range sortedKeys(m.Sysctls) {
		fmt.Fprintf(&b, "| sysctl %s | %s |\n", md(k), md(m.Sysctls[k]))
	}
	b.WriteString("\n")
	if checks := Checks(r); len(checks) > 0 {
		b.WriteString("## Targets\n\n| Target | Measured (Fulcrum) | Met |\n|---|---|---|\n")
		for _, c := range checks {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", md(c.Target), md(c.Measured), c.Met)
		}
		b.WriteString("\n")
	}
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", s.Title, s.How)
		b.WriteString("| Target |")
		for _, mt := range s.Metrics {
			fmt.Fprintf(&b, " %s |", md(mt.Label))
		}
		head := s.Metrics[0]
		fmt.Fprintf(&b, " %s vs HAProxy | %s vs direct |", md(head.Label), md(head.Label))
		var vs []Metric // metrics with their own ratio-to-HAProxy column
		for _, mt := range s.Metrics[1:] {
			if mt.Key == "p99_us" || mt.VsHAProxy {
				vs = append(vs, mt)
				fmt.Fprintf(&b, " %s vs HAProxy |", md(mt.Label))
			}
		}
		scaling := false
		for _, row := range s.Rows {
			scaling = scaling || row.ScaleFrom != ""
		}
		if scaling {
			fmt.Fprintf(&b, " %s vs fewest cores |", md(head.Label))
		}
		b.WriteString(" Rounds | Notes |\n|---|")
		n := len(s.Metrics) + 4 + len(vs)
		if scaling {
			n++
		}
		b.WriteString(strings.Repeat("---:|", n-1) + "---|\n")
		for _, row := range s.Rows {
			fmt.Fprintf(&b, "| %s |", row.Target)
			if row.Unavailable != "" {
				b.WriteString(strings.Repeat(" — |", n-1))
				fmt.Fprintf(&b, " unavailable: %s |\n", md(row.Unavailable))
				continue
			}
			ref := RefOf(row)
			for _, mt := range s.Metrics {
				fmt.Fprintf(&b, " %s |", FormatValue(row.Median(mt.Key), mt.Unit))
			}
			fmt.Fprintf(&b, " %s | %s |", FormatRatio(s.Ratio(row.Target, ref, head.Key)), FormatRatio(s.Ratio(row.Target, Direct, head.Key)))
			for _, mt := range vs {
				fmt.Fprintf(&b, " %s |", FormatRatio(s.Ratio(row.Target, ref, mt.Key)))
			}
			if scaling {
				r := math.NaN()
				if row.ScaleFrom != "" {
					r = s.Ratio(row.Target, row.ScaleFrom, head.Key)
				}
				fmt.Fprintf(&b, " %s |", FormatRatio(r))
			}
			var rounds []string
			for _, rd := range row.Rounds {
				rounds = append(rounds, FormatValue(rd[head.Key], ""))
			}
			fmt.Fprintf(&b, " %s |", strings.Join(rounds, " / "))
			notes := append(append([]string(nil), row.Notes...), row.Failures...)
			fmt.Fprintf(&b, " %s |\n", md(strings.Join(notes, "; ")))
		}
		if s.Footnote != "" {
			fmt.Fprintf(&b, "\n%s\n", s.Footnote)
		}
		b.WriteString("\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func md(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
