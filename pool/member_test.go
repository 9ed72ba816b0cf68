package pool

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPassiveDetection(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var logs logBuf
	cfg := Config{Name: "app", Members: members(2), Monitored: true,
		Passive: PassiveConfig{Enabled: true, Failures: 3, Interval: 10 * time.Second, Retry: 30 * time.Second}}
	p := New(cfg, nil, logs.logger())
	p.now = clk.Now
	m := p.Member(addr(1))

	// Below the threshold, and a success resets the run.
	m.ReportFailure("connect refused")
	m.ReportFailure("connect refused")
	m.ReportSuccess()
	m.ReportFailure("connect refused")
	m.ReportFailure("connect refused")
	if !m.Available() {
		t.Fatal("down after 2+2 failures separated by a success")
	}
	// Failures spread wider than Interval do not add up.
	clk.Advance(11 * time.Second)
	m.ReportFailure("connect refused")
	if !m.Available() {
		t.Fatal("down although the window restarted")
	}
	m.ReportFailure("connect refused")
	m.ReportFailure("reset by peer")
	if m.Available() || m.PersistOK() {
		t.Fatal("still available after 3 consecutive failures within Interval")
	}
	st := m.Stats()
	if st.Health != "down" || st.Availability != "offline" || !strings.Contains(st.Reason, "reset by peer") {
		t.Fatalf("stats while passively down: %+v", st)
	}
	if st.Failures != 7 {
		t.Fatalf("passive_failures = %d, want 7", st.Failures)
	}
	if got := pickRelease(t, p, 4, Hint{}); got[addr(1)] != 0 {
		t.Fatalf("passively down member picked: %s", fmtCounts(got))
	}

	// A monitor "up" does not cut the passive-down period short.
	m.SetHealth(true, "monitor ok")
	clk.Advance(29 * time.Second)
	if m.Available() {
		t.Fatal("available before Retry elapsed")
	}
	clk.Advance(2 * time.Second)
	if !m.Available() {
		t.Fatal("not available after Retry elapsed")
	}

	// Half-open: a single failure re-arms Retry.
	m.ReportFailure("connect timeout")
	if m.Available() {
		t.Fatal("half-open member survived a failure")
	}
	clk.Advance(31 * time.Second)
	if !m.Available() {
		t.Fatal("not available after second Retry")
	}
	// A success closes the circuit: back to needing 3 failures.
	m.ReportSuccess()
	m.ReportFailure("x")
	m.ReportFailure("x")
	if !m.Available() {
		t.Fatal("down after 2 failures following a success")
	}

	var trans []string
	for _, r := range logs.records(t, "member status changed") {
		if r["kind"] == "passive" {
			if r["pool"] != "app" || r["member"] != "10.0.0.1:80" || r["reason"] == "" {
				t.Fatalf("log record missing attrs: %v", r)
			}
			trans = append(trans, r["from"].(string)+">"+r["to"].(string))
		}
	}
	if got := strings.Join(trans, " "); got != "up>down down>up up>down down>up" {
		t.Fatalf("passive log transitions = %q", got)
	}
}

func TestPassiveDisabled(t *testing.T) {
	t.Parallel()
	p := testPool(t, Config{Members: members(1)}, newFakeClock(), nil)
	m := p.Members()[0]
	for range 100 {
		m.ReportFailure("x")
	}
	if !m.Available() {
		t.Fatal("passive detection off, yet member went down")
	}
	if m.Stats().Failures != 100 {
		t.Fatal("failures not counted")
	}
}

func TestSetHealthLogsAndHealthWords(t *testing.T) {
	t.Parallel()
	var logs logBuf
	clk := newFakeClock()
	p := New(Config{Name: "api", Members: members(1), Monitored: true}, nil, logs.logger())
	p.now = clk.Now
	m := p.Members()[0]
	if h := m.Stats().Health; h != "unchecked" {
		t.Fatalf("initial health %q", h)
	}
	m.SetHealth(true, "http 200")
	m.SetHealth(true, "http 200") // repeat: no log
	clk.Advance(time.Second)
	m.SetHealth(false, "timeout after 16s")
	st := m.Stats()
	if st.Health != "down" || st.Reason != "timeout after 16s" || !st.Since.Equal(clk.Now()) {
		t.Fatalf("stats %+v", st)
	}
	m.SetState(Disabled, "maintenance")
	recs := logs.records(t, "member status changed")
	want := []string{"health unchecked>up http 200", "health up>down timeout after 16s", "state enabled>disabled maintenance"}
	if len(recs) != len(want) {
		t.Fatalf("got %d log records, want %d: %v", len(recs), len(want), recs)
	}
	for i, r := range recs {
		got := r["kind"].(string) + " " + r["from"].(string) + ">" + r["to"].(string) + " " + r["reason"].(string)
		if got != want[i] || r["pool"] != "api" || r["member"] != "10.0.0.1:80" {
			t.Errorf("record %d = %v, want %q", i, r, want[i])
		}
	}
}

func TestSlowRamp(t *testing.T) {
	t.Parallel()
	for _, method := range []string{MethodRatio, MethodLeastConnections, MethodPowerOfTwo} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			cfg := Config{Method: method, Members: members(2), SlowRamp: 10 * time.Second, Monitored: true}
			p := testPool(t, cfg, clk, nil)
			ms := p.Members()
			// The first health result does not ramp.
			ms[0].SetHealth(true, "ok")
			ms[1].SetHealth(true, "ok")
			if pct := ms[1].Stats().SlowRampPct; pct != 100 {
				t.Fatalf("ramping after first up: %d%%", pct)
			}
			ms[1].SetHealth(false, "fail")
			ms[1].SetHealth(true, "ok") // down→up: ramp starts now

			// Holding connections shows the weight share: w1/(w0+w1).
			// With releases, least-connections and p2c would see only
			// idle members and ratio-blind ties.
			steps := []struct {
				at       time.Duration
				pct      int
				share    float64
				tolerant float64
			}{
				{0, 10, 1.0 / 11, 0.03},
				{5 * time.Second, 50, 1.0 / 3, 0.04},
				{10 * time.Second, 100, 0.5, 0.04},
			}
			var last time.Duration
			for _, s := range steps {
				clk.Advance(s.at - last)
				last = s.at
				if pct := ms[1].Stats().SlowRampPct; pct != s.pct {
					t.Fatalf("at %v SlowRampPct = %d, want %d", s.at, pct, s.pct)
				}
				got := pickHold(t, p, 660)
				releaseAll(p)
				if sh := share(got, addr(2)); !within(sh, s.share, s.tolerant) {
					t.Fatalf("at %v ramping member share %.3f, want %.3f (%s)", s.at, sh, s.share, fmtCounts(got))
				}
			}
		})
	}
}

func TestSlowRampOnEnableAndPassiveRecovery(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	cfg := Config{Method: MethodRatio, Members: members(2), SlowRamp: 10 * time.Second,
		Passive: PassiveConfig{Enabled: true, Failures: 1, Retry: 5 * time.Second}}
	cfg.Members[0].State = Disabled
	p := testPool(t, cfg, clk, nil)
	ms := p.Members()
	if pct := ms[0].Stats().SlowRampPct; pct != 100 {
		t.Fatalf("configured member ramps: %d%%", pct)
	}
	ms[0].SetState(Enabled, "maintenance over")
	clk.Advance(2 * time.Second)
	if pct := ms[0].Stats().SlowRampPct; pct != 20 {
		t.Fatalf("after enable + 2s SlowRampPct = %d, want 20", pct)
	}
	ms[1].ReportFailure("reset")
	clk.Advance(5*time.Second + 3*time.Second) // recovered 3s ago
	if pct := ms[1].Stats().SlowRampPct; pct != 30 {
		t.Fatalf("3s after passive recovery SlowRampPct = %d, want 30", pct)
	}
	// Round-robin ignores ramp.
	p = testPool(t, Config{Method: MethodRoundRobin, Members: members(2), SlowRamp: time.Hour}, clk, nil)
	p.Members()[1].SetState(Disabled, "x")
	p.Members()[1].SetState(Enabled, "x")
	if got := pickRelease(t, p, 100, Hint{}); got[addr(2)] != 50 {
		t.Fatalf("round-robin ramped: %s", fmtCounts(got))
	}
}

func TestAcquireReleaseCounters(t *testing.T) {
	t.Parallel()
	cfg := Config{Members: members(1)}
	cfg.Members[0].ConnLimit = 2
	var logs logBuf
	p := New(cfg, nil, logs.logger())
	m := p.Members()[0]
	first, second, third := m.Acquire(), m.Acquire(), m.Acquire()
	if !first || !second || third {
		t.Fatal("limit 2 not enforced")
	}
	m.Release()
	m.Release()
	m.Release() // unbalanced: ignored and logged
	if m.Active() != 0 {
		t.Fatalf("active = %d", m.Active())
	}
	if !m.Acquire() {
		t.Fatal("Acquire after releases failed")
	}
	if len(logs.records(t, "pool member released more connections than acquired")) != 1 {
		t.Fatal("unbalanced release not logged")
	}
	m.AddRequest()
	m.AddBytes(100, 2000)
	m.AddBytes(-1, 0)
	m.AddError()
	st := m.Stats()
	if st.Total != 3 || st.Active != 1 || st.Requests != 1 || st.BytesIn != 100 || st.BytesOut != 2000 || st.Errors != 1 || st.ConnLimit != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStatsJSON(t *testing.T) {
	t.Parallel()
	p := testPool(t, Config{Name: "web", Method: MethodRatio, Members: members(2)}, nil, nil)
	ms := p.Members()
	ms[0].Acquire()
	ms[0].AddBytes(10, 20)
	ms[1].SetState(ForcedOffline, "decommission")
	s := p.Stats()
	if s.Name != "web" || s.Method != "ratio" || s.Total != 2 || s.Available != 1 || s.Availability != "available" ||
		s.Active != 1 || s.TotalConns != 1 || s.BytesIn != 10 || s.BytesOut != 20 || len(s.Members) != 2 {
		t.Fatalf("pool stats %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"name":"web"`, `"available":1`, `"active_connections":1`, `"total_connections":1`,
		`"bytes_in":10`, `"members":[`, `"address":"10.0.0.2:80"`, `"state":"forced-offline"`, `"availability":"disabled"`,
		`"reason":"decommission"`, `"slow_ramp_percent":100`, `"health":"unchecked"`, `"connection_limit":0`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}

func TestMemberString(t *testing.T) {
	t.Parallel()
	cfg := Config{Name: "v6", Members: []MemberConfig{{Addr: mustAddrPort(t, "[2001:db8::1]:443")}}}
	m := testPool(t, cfg, nil, nil).Members()[0]
	if m.String() != "[2001:db8::1]:443" || m.PoolName() != "v6" || m.Ratio() != 1 {
		t.Fatalf("String %q PoolName %q Ratio %d", m.String(), m.PoolName(), m.Ratio())
	}
}

func TestNewRepairsInput(t *testing.T) {
	t.Parallel()
	var logs logBuf
	cfg := Config{Members: []MemberConfig{
		{Addr: addr(1), Ratio: 0, ConnLimit: -5, State: State(7)},
		{Addr: addr(1), Ratio: 3},
		{Addr: addr(2), Ratio: MaxRatio * 10},
	}}
	p := New(cfg, nil, logs.logger())
	if p.Len() != 2 {
		t.Fatalf("duplicate kept: %d members", p.Len())
	}
	m := p.Member(addr(1))
	if m.Ratio() != 1 || m.ConnLimit() != 0 || m.State() != Enabled {
		t.Fatalf("repaired member: ratio %d limit %d state %v", m.Ratio(), m.ConnLimit(), m.State())
	}
	if p.Member(addr(2)).Ratio() != MaxRatio {
		t.Fatal("ratio not clamped")
	}
	if len(logs.records(t, "duplicate pool member ignored")) != 1 || len(logs.records(t, "invalid member state, using enabled")) != 1 {
		t.Fatal("repairs not logged")
	}
	m.SetState(State(9), "bad")
	if m.State() != Enabled {
		t.Fatal("invalid SetState applied")
	}
	if p.Member(addr(99)) != nil {
		t.Fatal("Member of unknown address not nil")
	}
}
