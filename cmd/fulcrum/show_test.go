package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
)

// showBackend is a small in-memory api.Backend for the CLI tests.
type showBackend struct {
	mu        sync.Mutex
	pools     []api.PoolStatus
	lastConn  api.ConnQuery
	lastPers  api.PersistQuery
	reloadErr error
	reloads   int
	killed    []uint64
	deleted   []api.PersistDelete
}

var tShow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newShowBackend() *showBackend {
	return &showBackend{pools: []api.PoolStatus{
		{Name: "web", Method: "round-robin", Availability: "available", Available: 1, Total: 2,
			Active: 3, TotalConns: 120, Requests: 400, BytesIn: 1536, BytesOut: 5 << 20,
			Members: []api.MemberStatus{
				{Address: "127.0.0.1:8081", State: "enabled", Health: "up", Availability: "available",
					Reason: "monitor http: 200 OK", Active: 3, Total: 100, Requests: 390, BytesIn: 2048, BytesOut: 1536,
					ConnLimit: 50, SlowRampPercent: 40},
				{Address: "[2001:db8::5]:8082", State: "enabled", Health: "down", Availability: "offline",
					Reason: "monitor http:\nconnection refused", Total: 20},
			}},
		{Name: "empty", Method: "least-connections", Availability: "offline"},
	}}
}

func (b *showBackend) Virtuals() []api.VirtualStatus {
	return []api.VirtualStatus{
		{Name: "app_vs", Destination: "10.0.0.11:443", Type: "http", Pool: "web", TLS: true, Enabled: true,
			Availability: "available", Active: 1, Total: 9, Requests: 12, BytesIn: 100, BytesOut: 3 << 30},
		{Name: "web_vs", Destination: "10.0.0.10:80", Type: "standard", Pool: "web", Persistence: "src",
			Enabled: false, Availability: "disabled"},
	}
}

func (b *showBackend) Pools() []api.PoolStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]api.PoolStatus, len(b.pools))
	for i, p := range b.pools {
		out[i] = p
		out[i].Members = append([]api.MemberStatus(nil), p.Members...)
	}
	return out
}

func (b *showBackend) Connections(q api.ConnQuery) []api.ConnectionStatus {
	b.mu.Lock()
	b.lastConn = q
	b.mu.Unlock()
	all := []api.ConnectionStatus{
		{ID: 7, Virtual: "web_vs", Proto: "tcp", Pool: "web", Client: "192.0.2.7:50000", VirtualAddr: "10.0.0.10:80",
			ServerLocal: "127.0.0.1:40000", Server: "127.0.0.1:8081", AgeSeconds: 125, IdleSeconds: 3.7,
			BytesIn: 1 << 10, BytesOut: 5 << 20},
		{ID: 8, Virtual: "web_vs", Proto: "tcp", Client: "192.0.2.8:50001", VirtualAddr: "10.0.0.10:80", AgeSeconds: 0.2},
	}
	if q.Limit < len(all) {
		all = all[:q.Limit]
	}
	return all
}

func (b *showBackend) Persistence(q api.PersistQuery) []api.PersistenceRecord {
	b.mu.Lock()
	b.lastPers = q
	b.mu.Unlock()
	return []api.PersistenceRecord{
		{Key: "k1", Type: "source-address", Value: "192.0.2.7", Profile: "src", Virtual: "web_vs", Pool: "web",
			Member: "127.0.0.1:8081", Created: tShow.Add(-90 * time.Second), Expires: tShow.Add(90 * time.Second), TimeoutSeconds: 180},
		{Key: "cookie-abc", Type: "cookie", Profile: "ck", Virtual: "app_vs", Pool: "web", Member: "127.0.0.1:8081",
			Created: tShow.Add(-time.Hour), Expires: tShow.Add(-time.Second)},
	}
}

func (b *showBackend) SetMemberState(pool, member, state string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for pi := range b.pools {
		if b.pools[pi].Name != pool {
			continue
		}
		for mi := range b.pools[pi].Members {
			if m := &b.pools[pi].Members[mi]; m.Address == member {
				m.State = state
				m.Availability = "disabled"
				return nil
			}
		}
		return fmt.Errorf("%w: member %s in pool %q", api.ErrNotFound, member, pool)
	}
	return fmt.Errorf("%w: pool %q", api.ErrNotFound, pool)
}

func (b *showBackend) LoadConfig([]byte) (api.ConfigApplied, error) { return api.ConfigApplied{}, nil }

func (b *showBackend) RunningConfig() (api.ConfigSource, error) {
	return api.ConfigSource{File: "f.yaml", YAML: []byte("management:\n  token: abc\n")}, nil
}

func (b *showBackend) KillConnection(id uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id != 42 {
		return fmt.Errorf("%w: connection %d", api.ErrNotFound, id)
	}
	b.killed = append(b.killed, id)
	return nil
}

func (b *showBackend) DeletePersistence(d api.PersistDelete) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleted = append(b.deleted, d)
	if d.Key != "" && d.Key != "k1" {
		return 0, fmt.Errorf("%w: persistence record %q", api.ErrNotFound, d.Key)
	}
	if d.Key == "" {
		return 2, nil
	}
	return 1, nil
}

func (b *showBackend) Reload() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reloads++
	return b.reloadErr
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs one command against a server for backend b, with the given
// environment and a fixed clock. The -api flag is added unless env sets
// FULCRUM_API.
func runCLI(t *testing.T, b *showBackend, token string, env map[string]string, fn func(*apiCLI, []string) int, args ...string) cliResult {
	t.Helper()
	srv := httptest.NewServer(api.NewHandler(b, nil, api.Options{Token: token}))
	t.Cleanup(srv.Close)
	var out, errOut bytes.Buffer
	c := &apiCLI{stdout: &out, stderr: &errOut, now: func() time.Time { return tShow },
		getenv: func(k string) string { return env[k] }}
	if _, ok := env["FULCRUM_API"]; !ok {
		// Without a scheme, as an operator would type it.
		args = append([]string{"-api", strings.TrimPrefix(srv.URL, "http://")}, args...)
	}
	code := fn(c, args)
	return cliResult{code, out.String(), errOut.String()}
}

func show(c *apiCLI, a []string) int {
	// Put the subcommand first, as `fulcrum show pools -api ...` would.
	for i, s := range a {
		switch s {
		case "virtuals", "pools", "connections", "persistence", "bogus", "conns":
			return c.show(append(append([]string{s}, a[:i]...), a[i+1:]...))
		}
	}
	return c.show(a)
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// checkAligned checks that values[i] starts in row i+1 exactly where the
// column header hdr starts in the header line table[0].
func checkAligned(t *testing.T, table []string, hdr string, values ...string) {
	t.Helper()
	col := strings.Index(table[0], hdr)
	if col < 0 {
		t.Fatalf("no %q in header %q", hdr, table[0])
	}
	for i, v := range values {
		row := table[i+1]
		if len(row) < col || !strings.HasPrefix(row[col:], v) || (col > 0 && row[col-1] != ' ') {
			t.Errorf("row %d: %q not at column %d under %q:\n%s", i+1, v, col, hdr, strings.Join(table, "\n"))
		}
	}
}

func TestShowVirtualsTable(t *testing.T) {
	t.Parallel()
	r := runCLI(t, newShowBackend(), "", nil, show, "virtuals")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	tbl := lines(r.stdout)
	if len(tbl) != 3 {
		t.Fatalf("want header + 2 rows:\n%s", r.stdout)
	}
	if !strings.HasPrefix(tbl[0], "NAME") || !strings.Contains(tbl[0], "BYTES OUT") {
		t.Errorf("header %q", tbl[0])
	}
	checkAligned(t, tbl, "DESTINATION", "10.0.0.11:443", "10.0.0.10:80")
	checkAligned(t, tbl, "AVAILABILITY", "available", "disabled")
	for _, want := range []string{"http+tls", "3.0 GiB", "100 B"} {
		if !strings.Contains(tbl[1], want) {
			t.Errorf("row %q lacks %q", tbl[1], want)
		}
	}
	if !strings.Contains(tbl[2], "src") || !strings.Contains(tbl[2], " disabled ") {
		t.Errorf("row %q", tbl[2])
	}
}

func TestShowPoolsTable(t *testing.T) {
	t.Parallel()
	r := runCLI(t, newShowBackend(), "", nil, show, "pools")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	out := lines(r.stdout)
	// Pools are sorted by the API: "empty" first.
	want0 := "pool empty  offline  method least-connections  members 0/0 available"
	if !strings.HasPrefix(out[0], want0) || out[1] != "  (no members)" || out[2] != "" {
		t.Fatalf("empty pool block:\n%s", r.stdout)
	}
	if !strings.HasPrefix(out[3], "pool web  available  method round-robin  members 1/2 available  connections 3 active, 120 total") ||
		!strings.Contains(out[3], "bytes in 1.5 KiB, out 5.0 MiB") {
		t.Errorf("web header %q", out[3])
	}
	members := out[4:]
	if len(members) != 3 || !strings.HasPrefix(members[0], "  MEMBER") {
		t.Fatalf("member table:\n%s", strings.Join(members, "\n"))
	}
	checkAligned(t, members, "AVAILABILITY", "available", "offline")
	checkAligned(t, members, "ACTIVE", "3/50", "0")
	for _, want := range []string{"127.0.0.1:8081", "up (ramp 40%)", "2.0 KiB", "monitor http: 200 OK"} {
		if !strings.Contains(members[1], want) {
			t.Errorf("member row %q lacks %q", members[1], want)
		}
	}
	// A reason with a newline stays on its row.
	if !strings.HasPrefix(members[2], "  [2001:db8::5]:8082") || !strings.HasSuffix(members[2], "monitor http: connection refused") {
		t.Errorf("member row %q", members[2])
	}
}

func TestShowOnePoolAndUnknownPool(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	r := runCLI(t, b, "", nil, show, "pools", "web", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var p api.PoolStatus
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Name != "web" || len(p.Members) != 2 {
		t.Fatalf("json %q: %v", r.stdout, err)
	}
	if !strings.Contains(r.stdout, "\n  \"name\": \"web\"") {
		t.Errorf("json not indented:\n%s", r.stdout)
	}

	r = runCLI(t, b, "", nil, show, "pools", "nope")
	if r.code != 1 || r.stderr != "fulcrum: pool \"nope\" not found\n" {
		t.Errorf("unknown pool: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestShowJSON(t *testing.T) {
	t.Parallel()
	for _, what := range []string{"virtuals", "pools", "connections", "persistence"} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, newShowBackend(), "", nil, show, what, "-o", "json")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			var rows []map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 2 {
				t.Fatalf("want a JSON array of 2: %v\n%s", err, r.stdout)
			}
			if !strings.HasPrefix(r.stdout, "[\n  {") {
				t.Errorf("not indented: %q", r.stdout[:min(20, len(r.stdout))])
			}
		})
	}
}

func TestShowConnections(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	r := runCLI(t, b, "", nil, show, "connections", "-virtual", "web_vs", "-pool", "web",
		"-member", "127.0.0.1:8081", "-client", "192.0.2.7", "-limit", "5")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := (api.ConnQuery{Virtual: "web_vs", Pool: "web", Member: "127.0.0.1:8081", Client: "192.0.2.7", Limit: 5}); b.lastConn != want {
		t.Errorf("query %+v, want %+v", b.lastConn, want)
	}
	out := lines(r.stdout)
	if len(out) != 4 {
		t.Fatalf("want header, 2 rows, count:\n%s", r.stdout)
	}
	checkAligned(t, out[:3], "CLIENT -> VIRTUAL ADDR", "192.0.2.7:50000 -> 10.0.0.10:80", "192.0.2.8:50001 -> 10.0.0.10:80")
	checkAligned(t, out[:3], "SERVER LOCAL -> SERVER", "127.0.0.1:40000 -> 127.0.0.1:8081", "(not connected)")
	checkAligned(t, out[:3], "AGE", "2m05s", "0s")
	for _, want := range []string{"1.0 KiB", "5.0 MiB", " 3s "} {
		if !strings.Contains(out[1], want) {
			t.Errorf("row %q lacks %q", out[1], want)
		}
	}
	if out[3] != "2 connections" {
		t.Errorf("count line %q", out[3])
	}

	// When the limit is reached the operator is told more may exist.
	r = runCLI(t, b, "", nil, show, "connections", "-limit", "1")
	if !strings.Contains(r.stdout, "1 connection (limit 1 reached") {
		t.Errorf("limit warning missing:\n%s", r.stdout)
	}
}

func TestShowPersistence(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	r := runCLI(t, b, "", nil, show, "persistence", "-profile", "src", "-virtual", "web_vs", "-pool", "web")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := (api.PersistQuery{Virtual: "web_vs", Pool: "web", Profile: "src", Limit: api.DefaultLimit}); b.lastPers != want {
		t.Errorf("query %+v, want %+v", b.lastPers, want)
	}
	out := lines(r.stdout)
	if len(out) != 4 {
		t.Fatalf("output:\n%s", r.stdout)
	}
	checkAligned(t, out[:3], "VALUE", "192.0.2.7", "cookie-abc") // no Value: the key
	checkAligned(t, out[:3], "AGE", "1m30s", "1h00m")
	checkAligned(t, out[:3], "EXPIRES IN", "1m30s", "expired")
	checkAligned(t, out[:3], "KEY", `'k1'`, `'cookie-abc'`)
	if out[3] != "2 records" {
		t.Errorf("count line %q", out[3])
	}
}

func TestShowUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	r := runCLI(t, newShowBackend(), "", map[string]string{"FULCRUM_API": addr}, show, "pools")
	want := fmt.Sprintf("fulcrum: cannot reach the Fulcrum API at http://%s: is `fulcrum run` running? (-c FILE takes the address from its configuration)\n", addr)
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestShowToken(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	r := runCLI(t, b, "tok", nil, show, "virtuals")
	if r.code != 1 || !strings.Contains(r.stderr, "refused the request: missing or invalid bearer token (set -token or FULCRUM_TOKEN)") {
		t.Errorf("without token: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, b, "tok", map[string]string{"FULCRUM_TOKEN": "tok"}, show, "virtuals"); r.code != 0 {
		t.Errorf("env token: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, b, "tok", nil, show, "virtuals", "-token", "tok"); r.code != 0 {
		t.Errorf("flag token: exit %d, %q", r.code, r.stderr)
	}
}

func TestShowUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "show what?"},
		{[]string{"bogus"}, `cannot show "bogus"`},
		{[]string{"pools", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"connections", "extra"}, `connection id "extra" is not a number`},
		{[]string{"connections", "1", "2"}, `unexpected argument "1"`},
		{[]string{"connections", "-profile", "x"}, "flag provided but not defined: -profile"},
		{[]string{"connections", "-limit", "-3"}, "-limit must not be negative"},
		{[]string{"pools", "-api", "ftp://x"}, "scheme must be http or https"},
	} {
		var out, errOut bytes.Buffer
		c := &apiCLI{stdout: &out, stderr: &errOut, now: time.Now, getenv: func(string) string { return "" }}
		if code := c.show(tc.args); code != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("show %q: exit %d, stderr %q, want 2 and %q", tc.args, code, errOut.String(), tc.want)
		}
		if !strings.Contains(errOut.String(), "usage: fulcrum show") {
			t.Errorf("show %q: no usage printed", tc.args)
		}
	}
}

func TestMemberCommand(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	member := func(c *apiCLI, a []string) int { return c.member(a) }

	r := runCLI(t, b, "", nil, member, "web", "[2001:db8::5]:8082", "disable")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := b.Pools()[0].Members[1].State; got != "disabled" {
		t.Errorf("state %q", got)
	}
	if want := "pool web member [2001:db8::5]:8082: disabled (availability disabled, health down, 0 active connections)\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}

	r = runCLI(t, b, "", nil, member, "web", "127.0.0.1:8081", "forced-offline")
	if r.code != 0 || b.Pools()[0].Members[0].State != "forced-offline" {
		t.Errorf("forced-offline: exit %d %s", r.code, r.stderr)
	}

	r = runCLI(t, b, "", nil, member, "web", "127.0.0.1:9", "enable")
	if r.code != 1 || r.stderr != "fulcrum: member 127.0.0.1:9 in pool \"web\" not found\n" {
		t.Errorf("unknown member: exit %d, %q", r.code, r.stderr)
	}
	r = runCLI(t, b, "", nil, member, "web", "127.0.0.1:8081", "nap")
	if r.code != 2 || !strings.Contains(r.stderr, `"nap": want enable, disable or force-offline`) {
		t.Errorf("bad state: exit %d, %q", r.code, r.stderr)
	}
	r = runCLI(t, b, "", nil, member, "web")
	if r.code != 2 || !strings.Contains(r.stderr, "usage: fulcrum member") {
		t.Errorf("missing args: exit %d, %q", r.code, r.stderr)
	}
}

func TestReloadCommand(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	reload := func(c *apiCLI, a []string) int { return c.reload(a) }

	r := runCLI(t, b, "", nil, reload)
	if r.code != 0 || r.stdout != "configuration reloaded\n" || b.reloads != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q, reloads %d", r.code, r.stdout, r.stderr, b.reloads)
	}

	b.mu.Lock()
	b.reloadErr = fmt.Errorf("%w: f.yaml:2: pools.web.lb_method: unknown method \"rr\"\nf.yaml:7: virtuals.v.pool: no pool \"x\"", api.ErrBadRequest)
	b.mu.Unlock()
	r = runCLI(t, b, "", nil, reload)
	want := "fulcrum: reload failed: 2 problems\n  f.yaml:2: pools.web.lb_method: unknown method \"rr\"\n  f.yaml:7: virtuals.v.pool: no pool \"x\"\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}

	if r := runCLI(t, b, "", nil, reload, "now"); r.code != 2 {
		t.Errorf("extra argument: exit %d", r.code)
	}
}

func TestHumanUnits(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 1 << 40: "1.0 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
	for s, want := range map[float64]string{0: "0s", 0.9: "0s", 59: "59s", 60: "1m00s", 125: "2m05s",
		3600: "1h00m", 7260: "2h01m", 86400: "1d00h", 3*86400 + 4*3600: "3d04h", -1: "-"} {
		if got := humanSeconds(s); got != want {
			t.Errorf("humanSeconds(%v) = %q, want %q", s, got, want)
		}
	}
}

func (b *showBackend) Connection(id uint64) (api.ConnectionDetail, error) {
	if id != 42 {
		return api.ConnectionDetail{}, fmt.Errorf("%w: connection %d", api.ErrNotFound, id)
	}
	return api.ConnectionDetail{
		ConnectionStatus: api.ConnectionStatus{ID: 42, Virtual: "web_vs", Proto: "tcp", Client: "10.1.1.1:36023",
			VirtualAddr: "10.0.0.10:80", ServerLocal: "10.0.0.2:36023", Server: "10.0.0.50:80", Pool: "web"},
		Detail: []byte(`{"clientside":{"profile":"tcp-wan-optimized","applied":{"congestion_control":"bbr","nodelay":false},"tcp_info":{"rtt_ns":41000000,"cwnd":10}},"proxy_buffer_to_client":{"high":131072,"low":131072}}`),
	}, nil
}

func TestShowOneConnectionDetail(t *testing.T) {
	b := newShowBackend()
	srv := httptest.NewServer(api.NewHandler(b, nil, api.Options{}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := runShow([]string{"connections", "42", "-api", srv.URL}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"10.1.1.1:36023", "clientside.profile", "tcp-wan-optimized",
		"clientside.applied.congestion_control", "bbr", "clientside.tcp_info.rtt_ns", "41ms", "proxy_buffer_to_client.high", "131072"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	errb.Reset()
	if code := runShow([]string{"connections", "43", "-api", srv.URL}, &out, &errb); code == 0 {
		t.Errorf("missing connection: exit 0")
	}
}
