package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDashboardScript runs the dashboard's JavaScript in Node against a live
// API with a token: it must ask for the token, send it as Bearer, render
// virtuals and pools with F5 status colours, and disable a member through
// PATCH. Skipped where Node is not installed.
func TestDashboardScript(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	fb := newFake()
	out := runDashboard(t, node, NewHandler(fb, nil, Options{Token: "tok"}))
	got := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			got[k] = v
		}
	}
	check := func(key, want string) {
		t.Helper()
		if !strings.Contains(got[key], want) {
			t.Errorf("%s = %q, want it to contain %q\nfull output:\n%s", key, got[key], want, out)
		}
	}
	check("login shown", "block") // first poll got 401
	check("status", "updated")
	check("virtuals", "web_vs 10.0.0.10:80 http web src 3 120 400 4.9 KiB 3.0 MiB 2 1")
	check("virtuals", "standard + TLS")
	check("pools", "127.0.0.1:8081 enabled up 1 0 3 100 390 2.0 KiB 1.5 KiB 0 monitor http: 200 OK")
	check("pools", "No members.")
	check("msg", "(none)")
	check("ha shown", "none")        // no device group: the section stays hidden
	check("isessions shown", "none") // no iSession: hidden too
	check("tunnels shown", "none")   // no tunnels: hidden too
	// app pool offline; web members: available, disabled, offline (the
	// first render after the click shows 8081 disabled).
	check("dots", "dot offline,dot available,dot disabled,dot disabled,dot offline")
	check("calls", "GET /api/v1/pools auth=Bearer tok")
	check("calls", "PATCH /api/v1/pools/web/members/127.0.0.1%3A8081 auth=Bearer tok")
	if s := fb.member("web", "127.0.0.1:8081").State; s != "disabled" {
		t.Errorf("member state after clicking Disable: %q", s)
	}
}

type fakeHA struct {
	mu        sync.Mutex
	failovers []string
}

func (f *fakeHA) HAStatus() any {
	return map[string]any{
		"device": "a", "interval_ns": 100e6, "dead_time_ns": 3e9,
		"devices": []map[string]any{{"name": "a", "self": true, "up": true},
			{"name": "b", "up": true, "paths": []map[string]any{{"remote": "10.0.0.2:1026", "last_heard": time.Now().Format(time.RFC3339Nano)}}}},
		"traffic_groups": []map[string]any{{"name": "tg1", "state": "active", "active_on": "a", "next_active": "b",
			"generation": 3, "failovers": 2, "changed": time.Now().Add(-time.Minute).Format(time.RFC3339Nano), "reason": "handed over by b"}},
	}
}

func (f *fakeHA) Failover(ctx context.Context, group, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failovers = append(f.failovers, group+"->"+target)
	return nil
}

type fakeMirroring struct{}

func (fakeMirroring) MirrorStatus() any {
	return map[string]any{"traffic_groups": []map[string]any{{"name": "tg1", "role": "sending", "peer": "b", "connected": "10.0.0.2:1029", "lag": 7}}}
}

type fakeSync struct{}

func (fakeSync) SyncStatus() any {
	return map[string]any{"mode": "automatic", "sync": "behind", "local": map[string]any{"generation": 5}}
}
func (fakeSync) Push(context.Context, bool) error { return nil }
func (fakeSync) Pull(context.Context) error       { return nil }

// TestDashboardDeviceGroup: with a device group the dashboard shows the
// traffic groups (where active, next active, mirroring lag), the devices,
// config sync, and moves a group with the Failover button.
func TestDashboardDeviceGroup(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	h := &fakeHA{}
	isessions := func() any {
		return map[string]any{"pools": map[string]any{"wan": map[string]any{"Dials": 1, "Tunnels": []map[string]any{{
			"Peer": "dc", "Remote": "198.51.100.10:7443", "Outcome": "compression [zstd] adaptive",
			"Mux":      map[string]any{"StreamsOpen": 3, "RawOut": 4000, "WireOut": 1000, "RawIn": 2048, "WireIn": 1024},
			"DedupOut": map[string]any{"Chunks": 10, "Refs": 7}, "TCPRTT": 100e6}}}}}
	}
	tunnels := func() any {
		return []map[string]any{{"name": "to-dc2", "interface": "to-dc2", "vlan_group": "vms", "local_address": "198.51.100.1",
			"remote_address": "203.0.113.1", "mtu": 1464, "state": "up", "packets_in": 12, "bytes_in": 2048, "packets_out": 34,
			"bytes_out": 4096, "drops": map[string]any{"bad_version": 3, "short": 0}, "foreign_source_drops": 2}}
	}
	out := runDashboard(t, node, NewHandler(newFake(), nil, Options{Token: "tok", HA: h, Mirroring: fakeMirroring{}, Sync: fakeSync{}, ISessions: isessions, Tunnels: tunnels}))
	for _, want := range []string{"ha shown: block", "tg1 active a b 3 2 to b, lag 7", "handed over by b",
		"Config sync (automatic): behind, generation 5", "b up 0: 10.0.0.2:1026",
		"isessions shown: block", "remote wan dc 198.51.100.10:7443 3", "0.250", "7 / 10", "100.0 ms", "compression [zstd] adaptive",
		"tunnels shown: block", "to-dc2 to-dc2 vms 198.51.100.1 → 203.0.113.1 1464 up 12 2.0 KiB 34 4.0 KiB bad_version 3, foreign_source 2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dashboard output lacks %q:\n%s", want, out)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failovers) != 1 || h.failovers[0] != "tg1->" {
		t.Errorf("failover calls: %v", h.failovers)
	}
}

// runDashboard serves handler and runs the dashboard's script against it in
// Node (testdata/dashboard_harness.js, token "tok"); it returns what the
// harness printed.
func runDashboard(t *testing.T, node string, handler http.Handler) []byte {
	t.Helper()
	srv := httptest.NewServer(handler)
	defer srv.Close()
	_, rest, _ := strings.Cut(string(dashboardHTML), "<script>")
	script, _, _ := strings.Cut(rest, "</script>")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/dashboard_harness.js", srv.URL, "tok")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	return out
}
