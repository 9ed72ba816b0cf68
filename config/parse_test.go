package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Path: "pools.web", Msg: "bad"}, "f.yaml:3: pools.web: bad"},
		{Error{File: "f.yaml", Path: "pools.web", Msg: "bad"}, "f.yaml: pools.web: bad"},
		{Error{Line: 3, Path: "pools.web", Msg: "bad"}, "line 3: pools.web: bad"},
		{Error{File: "f.yaml", Line: 3, Msg: "bad"}, "f.yaml:3: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tc := range cases {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	errs := Errors{{Line: 1, Msg: "a"}, {Line: 2, Msg: "b"}}
	if got := errs.Error(); got != "line 1: a\nline 2: b" {
		t.Errorf("Errors.Error() = %q", got)
	}
}

// TestDocumentErrors covers problems with the file as a whole.
func TestDocumentErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"empty", "", 0, "the configuration is empty"},
		{"only comments", "# nothing here\n", 0, "the configuration is empty"},
		{"null document", "~\n", 1, "the configuration is empty"},
		{"two documents", poolWeb + vsWeb + "---\npools: {}\n", 12, "a second YAML document"},
		{"top-level list", "- a\n- b\n", 1, "the top level must be a mapping"},
		{"syntax error", "pools:\n  web: [\n", 2, "YAML syntax"},
		{"tab indentation", "pools:\n\tweb: {}\n", 2, "YAML syntax"},
		{"bad second document", poolWeb + "---\n: : :\n  - [\n", 0, "YAML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 || !strings.Contains(errs[0].Msg, tc.msg) || (tc.line != 0 && errs[0].Line != tc.line) {
				t.Fatalf("want one error at line %d containing %q, got:\n%v", tc.line, tc.msg, errs)
			}
		})
	}
}

// TestDecodeErrors covers unknown keys, duplicate keys, wrong shapes and
// malformed values: each reported with line and path, and decoding goes on
// so that the rest of the file is still checked.
func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, src, path, msg string
	}{
		{"unknown top-level key", poolWeb + vsWeb + `
virtual_servers: {}  #<-
`, "virtual_servers", `unknown key "virtual_servers" in configuration (valid keys: management, log, monitors, pools, profiles, snat_pools, virtuals, limits, isession, vlans, vlan_groups, tunnels, self_ips, local, devices, failover, traffic_groups, config_sync)`},
		{"unknown pool key with suggestion", vsWeb + `
pools:
  web:
    lb_methd: ratio  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.lb_methd", `unknown key "lb_methd" in pool (valid keys: lb_method, hash_key, monitors, monitor_min_up, min_active_members, slow_ramp_time, passive, members); did you mean "lb_method"?`},
		{"unknown member key", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        weight: 3  #<-
`, "pools.web.members[0].weight", `unknown key "weight" in pool member`},
		{"unknown profile kind", poolWeb + vsWeb + `
profiles:
  client-ssl: {}  #<-
`, "profiles.client-ssl", `did you mean "client_ssl"?`},
		{"duplicate key", poolWeb + vsWeb + `    type: tcp  #<-
`, "virtuals.vs.type", `duplicate key "type": it is already written at line 9`},
		{"duplicate object name", poolWeb + vsWeb + `  vs:  #<-
    type: tcp
`, "virtuals.vs", `duplicate key "vs"`},
		{"bad duration", poolWeb + vsWeb + `    idle_timeout: 5 minutes  #<-
`, "virtuals.vs.idle_timeout", `"5 minutes" is not a duration`},
		{"negative duration", poolWeb + vsWeb + `    idle_timeout: -5s  #<-
`, "virtuals.vs.idle_timeout", "is negative"},
		{"bad size", poolWeb + vsWeb + `    http_profile: h
profiles:
  http:
    h: {max_header_size: 32k}  #<-
`, "profiles.http.h.max_header_size", `"32k" is not a size`},
		{"bad integer", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        ratio: high  #<-
`, "pools.web.members[0].ratio", `expected a whole number, got "high"`},
		{"bad integer in a flow mapping", vsWeb + `
pools:
  web:
    members:
      - {address: 10.0.0.1:80, ratio: y}  #<-
`, "pools.web.members[0].ratio", `expected a whole number, got "y"`},
		{"integer overflow", vsWeb + `
pools:
  web:
    members:
      - address: 10.0.0.1:80
        connection_limit: 99999999999999999999  #<-
`, "pools.web.members[0].connection_limit", "expected a whole number"},
		{"bad boolean", poolWeb + vsWeb + `    enabled: maybe  #<-
`, "virtuals.vs.enabled", `expected true or false, got "maybe"`},
		{"scalar where list expected", vsWeb + `
pools:
  web:
    monitors: http  #<-
    members: [{address: 10.0.0.1:80}]
`, "pools.web.monitors", "expected a list"},
		{"list where mapping expected", vsWeb + `
pools:
  web:
    - address: 10.0.0.1:80  #<-
`, "pools.web", "a pool is a mapping of keys"},
		{"mapping where value expected", poolWeb + vsWeb + `    persistence: {name: cookie}  #<-
`, "virtuals.vs.persistence", "expected a single value, got a mapping"},
		{"mapping where duration expected", poolWeb + vsWeb + `    idle_timeout: {seconds: 5}  #<-
`, "virtuals.vs.idle_timeout", "expected a duration"},
		{"alias of a mapping as a duration", `
monitors:
  m: &anchor {type: tcp}
` + poolWeb + vsWeb + `    idle_timeout: *anchor  #<-
`, "virtuals.vs.idle_timeout", "got an alias of a mapping"},
		{"complex key", poolWeb + vsWeb + `
? [a, b]  #<-
: 1
`, "", "keys must be plain names"},
		{"unknown key through a merge", `
pools:
  web: &p
    members: [{address: 10.0.0.1:80}]  #<-
virtuals:
  vs:
    <<: *p
    type: http
    destination: 127.0.0.1:80
    pool: web
`, "pools.web.members", `unknown key "members" in virtual`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			line := markedLine(t, tc.src)
			errs := parseErrors(t, tc.src)
			if len(errs) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.Path != tc.path || e.Line != line || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %d: %s: %s\nwant %d: %s: ...%s...", e.Line, e.Path, e.Msg, line, tc.path, tc.msg)
			}
		})
	}
}

// TestEmptyListItemKeepsIndexes: yaml.v3 drops null items from lists of
// non-pointers; the paths of later items must still match the source.
func TestEmptyListItemKeepsIndexes(t *testing.T) {
	t.Parallel()
	errs := parseErrors(t, vsWeb+`
pools:
  web:
    members: [{address: 10.0.0.1:80}]
    monitors:
      -
      - tcp
      - htp
`)
	if len(errs) != 2 ||
		errs[0].Path != "pools.web.monitors[0]" || errs[0].Line != 12 || !strings.Contains(errs[0].Msg, "list item is empty") ||
		errs[1].Path != "pools.web.monitors[2]" || errs[1].Line != 14 || !strings.Contains(errs[1].Msg, `"htp" does not exist`) {
		t.Fatalf("got:\n%v", errs)
	}
}

// TestManyErrorsAtOnce checks that problems of every kind in one file are
// all reported, in line order.
func TestManyErrorsAtOnce(t *testing.T) {
	t.Parallel()
	src := `
management:
  address: nowhere
monitors:
  m: {type: http, interval: 10s, timeout: 5s, bogus: 1}
pools:
  web:
    lb_method: fastest
    members:
      - address: 10.0.0.1:80
        ratio: x
      - address: 10.0.0.1:80
virtuals:
  vs:
    type: http
    destination: 127.0.0.1:80
    pool: api
    idle_timeout: soon
  vs2:
    type: udp
    destination: 127.0.0.1:80
    pool: web
    persistence: cookie
`
	errs := parseErrors(t, src)
	want := []struct {
		line int
		path string
	}{
		{3, "management.address"},
		{5, "monitors.m.bogus"},
		{5, "monitors.m.timeout"},
		{11, "pools.web.members[0].ratio"},
		{12, "pools.web.members[1].address"},
		{17, "virtuals.vs.pool"},
		{18, "virtuals.vs.idle_timeout"},
		{23, "virtuals.vs2.persistence"},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if errs[i].Line != w.line || errs[i].Path != w.path {
			t.Errorf("problem %d = %d %s, want %d %s", i, errs[i].Line, errs[i].Path, w.line, w.path)
		}
	}
	if !strings.Contains(errs.Error(), "test.yaml:17: virtuals.vs.pool: pool \"api\" does not exist") {
		t.Errorf("formatted errors:\n%v", errs)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `
monitors:
  slow: {type: tcp, interval: 10s}
  h: {type: https}
pools:
  web:
    members: [{address: 10.0.0.1:80}]
profiles:
  client_ssl: {}
  persistence:
    ck: {type: cookie_insert, secret: 0123456789abcdef}
    src: {type: source_addr}
virtuals:
  vh: {type: http, destination: "127.0.0.1:80", pool: web}
  vt: {type: tcp, destination: "127.0.0.1:81", pool: web, clientside_tcp: tcp}
  vu: {type: udp, destination: "127.0.0.1:53", pool: web}
`)
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("management.address", c.Management.Address, "127.0.0.1:9090")
	check("log.level", c.Log.Level, "info")
	check("log.format", c.Log.Format, "text")
	check("log.access_log", c.Log.AccessLog, "off")
	check("log.access_log_format", c.Log.AccessLogFormat, "json")
	check("log.syslog_socket", c.Log.SyslogSocket, "/dev/log")
	check("management.max_connections", c.Management.MaxConnections, 64)

	m := c.Monitors["slow"]
	check("monitor interval", m.Interval, Duration(10*time.Second))
	check("monitor timeout (3n+1)", m.Timeout, Duration(31*time.Second))
	check("monitor up_interval", m.UpInterval, Duration(0))
	check("monitor destination", m.Destination, "*:*")
	h := c.Monitors["h"]
	check("default monitor timeout", h.Timeout, Duration(16*time.Second))
	check("https monitor send", h.Send, "GET / HTTP/1.0\r\n\r\n")

	p := c.Pools["web"]
	check("lb_method", p.LBMethod, "round-robin")
	check("slow_ramp_time", p.SlowRampTime, Duration(10*time.Second))
	check("passive.enabled", *p.Passive.Enabled, true)
	check("passive.failures", p.Passive.Failures, 3)
	check("passive.failure_interval", p.Passive.FailureInterval, Duration(10*time.Second))
	check("passive.retry_time", p.Passive.RetryTime, Duration(30*time.Second))
	check("member ratio", p.Members[0].Ratio, 1)
	check("member state", p.Members[0].State, "enabled")

	hp := c.Profiles.HTTP["http"]
	check("insert_xforwarded_for", *hp.InsertXForwardedFor, true)
	check("max_header_size", hp.MaxHeaderSize, Size(32768))
	check("max_header_count", hp.MaxHeaderCount, 64)
	check("header_timeout", hp.HeaderTimeout, Duration(10*time.Second))
	check("keepalive_timeout", hp.KeepAliveTimeout, Duration(60*time.Second))
	check("oneconnect", *hp.OneConnect, true)
	check("max_idle_per_member", hp.MaxIdlePerMember, 64)
	check("server_idle_timeout", hp.ServerIdleTimeout, Duration(30*time.Second))
	check("response_timeout", hp.ResponseTimeout, Duration(60*time.Second))

	ck := c.Profiles.Persistence["ck"]
	check("cookie_insert timeout (session cookie)", ck.Timeout, Duration(0))
	check("cookie_path", ck.CookiePath, "/")
	check("httponly", *ck.HTTPOnly, true)
	src := c.Profiles.Persistence["src"]
	check("source_addr timeout", src.Timeout, Duration(180*time.Second))
	check("prefix_v4", *src.PrefixV4, 32)
	check("prefix_v6", *src.PrefixV6, 128)

	vh, vt, vu := c.Virtuals["vh"], c.Virtuals["vt"], c.Virtuals["vu"]
	check("http virtual http_profile", vh.HTTP, "http")
	check("tcp virtual http_profile", vt.HTTP, "")
	check("snat", vh.SNAT, "automap")
	check("clientside_tcp", vh.ClientsideTCP, "tcp-progressive")
	check("serverside_tcp follows clientside", vt.ServersideTCP, "tcp")
	check("http idle_timeout", vh.IdleTimeout, Duration(300*time.Second))
	check("tcp idle_timeout", vt.IdleTimeout, Duration(300*time.Second))
	check("udp idle_timeout", vu.IdleTimeout, Duration(60*time.Second))
	check("connect_timeout", vh.ConnectTimeout, Duration(5*time.Second))
	check("enabled", *vh.Enabled, true)
}

// TestExplicitValuesKept checks that written values, including the zero
// values that mean "off", are not replaced by defaults.
func TestExplicitValuesKept(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `
pools:
  web:
    slow_ramp_time: 0
    passive: {enabled: false, failures: 0}
    members: [{address: 10.0.0.1:80, ratio: 5, state: disabled}]
profiles:
  http:
    h: {insert_xforwarded_for: false, oneconnect: false, max_idle_per_member: 0}
  persistence:
    ck: {type: cookie_insert, timeout: 1h, httponly: false, secret: 0123456789abcdef}
    src: {type: source_addr, prefix_v4: 0}
virtuals:
  vs: {type: http, destination: "127.0.0.1:80", pool: web, http_profile: h, enabled: false, snat: none, idle_timeout: 2s}
`)
	p := c.Pools["web"]
	if p.SlowRampTime != 0 || *p.Passive.Enabled || p.Passive.Failures != 0 || p.Members[0].Ratio != 5 || p.Members[0].State != "disabled" {
		t.Errorf("pool = %+v, passive = %+v", p, p.Passive)
	}
	h := c.Profiles.HTTP["h"]
	if *h.InsertXForwardedFor || *h.OneConnect || h.MaxIdlePerMember != 0 || h.MaxHeaderCount != 64 {
		t.Errorf("http profile = %+v", h)
	}
	if ck := c.Profiles.Persistence["ck"]; ck.Timeout != Duration(time.Hour) || *ck.HTTPOnly {
		t.Errorf("cookie profile = %+v", ck)
	}
	if src := c.Profiles.Persistence["src"]; *src.PrefixV4 != 0 {
		t.Errorf("prefix_v4 = %d, want 0 as written", *src.PrefixV4)
	}
	vs := c.Virtuals["vs"]
	if *vs.Enabled || vs.SNAT != "none" || vs.IdleTimeout != Duration(2*time.Second) {
		t.Errorf("virtual = %+v", vs)
	}
}

func TestBuiltins(t *testing.T) {
	t.Parallel()
	c := mustParse(t, poolWeb+vsWeb)
	for _, name := range []string{"tcp", "http", "https", "udp"} {
		if m, ok := c.Monitors[name]; !ok || m.Type != name {
			t.Errorf("built-in monitor %s = %+v", name, m)
		}
	}
	if got := c.Monitors["http"].Send; got != "GET / HTTP/1.0\r\n\r\n" || len(c.Monitors["http"].Status) != 0 {
		t.Errorf("built-in http monitor send %q status %v", got, c.Monitors["http"].Status)
	}
	for name, typ := range map[string]string{"source_addr": "source_addr", "cookie_insert": "cookie_insert", "cookie": "cookie_insert"} {
		if p, ok := c.Profiles.Persistence[name]; !ok || p.Type != typ {
			t.Errorf("built-in persistence %s = %+v", name, p)
		}
	}
	if _, ok := c.Profiles.HTTP["http"]; !ok {
		t.Error("built-in http profile missing")
	}
	if _, ok := c.Profiles.TCP["tcp"]; !ok {
		t.Error("built-in tcp profile missing")
	}
	if c.Line("monitors.http") != 0 {
		t.Error("a built-in object has a source line")
	}

	// A declared object of the same name replaces the built-in one.
	c = mustParse(t, poolWeb+vsWeb+`
monitors:
  http: {type: http, send: "GET /health HTTP/1.0\r\n\r\n", status: [200]}
profiles:
  persistence:
    cookie: {type: source_addr, prefix_v4: 24}
  http:
    http: {max_header_count: 10}
`)
	if m := c.Monitors["http"]; len(m.Status) != 1 || !strings.Contains(m.Send, "/health") {
		t.Errorf("overridden http monitor = %+v", m)
	}
	if p := c.Profiles.Persistence["cookie"]; p.Type != "source_addr" || *p.PrefixV4 != 24 {
		t.Errorf("overridden cookie profile = %+v", p)
	}
	if h := c.Profiles.HTTP["http"]; h.MaxHeaderCount != 10 || h.MaxHeaderSize != DefaultMaxHeaderSize {
		t.Errorf("overridden http profile = %+v", h)
	}
	if c.Profiles.Persistence["source_addr"] == nil {
		t.Error("overriding one built-in removed another")
	}
}

func TestRelativePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc", "fulcrum")
	if err := os.MkdirAll(filepath.Join(sub, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeCert(t, filepath.Join(sub, "tls"), "site", []string{"site.example.test"}, time.Now().Add(time.Hour))
	if err := os.WriteFile(filepath.Join(sub, "token"), []byte("  s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(sub, "fulcrum.yaml")
	src := poolWeb + vsWeb + `    client_ssl: tls
    server_ssl: back
management:
  token_file: token
log:
  access_log: access.log
profiles:
  client_ssl:
    tls: {cert: tls/site.crt, key: tls/site.key}
  server_ssl:
    back: {ca: tls/site.crt}
`
	if err := os.WriteFile(cfgFile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Management.Token != "s3cret-token" {
		t.Errorf("token = %q, want the trimmed file content", c.Management.Token)
	}
	for what, got := range map[string]string{
		"token_file": c.Management.TokenFile,
		"access_log": c.Log.AccessLog,
		"cert":       c.Profiles.ClientSSL["tls"].Cert,
		"key":        c.Profiles.ClientSSL["tls"].Key,
		"ca":         c.Profiles.ServerSSL["back"].CA,
	} {
		if !filepath.IsAbs(got) || !strings.HasPrefix(got, sub) {
			t.Errorf("%s = %q, want an absolute path under %s", what, got, sub)
		}
	}
	if c.File != cfgFile {
		t.Errorf("File = %q", c.File)
	}

	// The same file loaded from elsewhere under a relative name.
	rel, err := filepath.Rel(dir, cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte(src), filepath.Join(dir, rel))
	if err != nil {
		t.Errorf("parse with an explicit file name: %v", err)
	}
	// Without the file's directory, the relative certificate path cannot be found.
	_, err = Parse([]byte(src), filepath.Join(dir, "elsewhere.yaml"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tls", "site.crt")) {
		t.Errorf("want an error naming the resolved certificate path, got %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs[0].Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v", err)
	}
	_, err = Load(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(dir) = %v", err)
	}
}

func TestNotices(t *testing.T) {
	t.Parallel()
	c := mustParse(t, poolWeb+vsWeb+`    persistence: cookie
  vs2:
    type: http
    destination: 127.0.0.1:8081
    pool: web
    persistence: cookie
management:
  address: 0.0.0.0:9090
`)
	if len(c.Notices) != 2 {
		t.Fatalf("notices = %q, want 2", c.Notices)
	}
	joined := strings.Join(c.Notices, "\n")
	for _, want := range []string{"management.address: the management API listens on 0.0.0.0:9090 without a token", `persistence profile "cookie" has no secret`} {
		if !strings.Contains(joined, want) {
			t.Errorf("notices lack %q:\n%s", want, joined)
		}
	}
	c = mustParse(t, poolWeb+vsWeb+`
management:
  address: "[::1]:9090"
`)
	if len(c.Notices) != 0 {
		t.Errorf("loopback management without token: notices %q", c.Notices)
	}
	c = mustParse(t, poolWeb+vsWeb+`
management:
  address: ":9090"
  token: t0ken
`)
	if len(c.Notices) != 0 {
		t.Errorf("token set: notices %q", c.Notices)
	}
}

func TestLineAndNames(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `pools:
  web:
    members:
      - address: 10.0.0.1:80
      - address: 10.0.0.2:80
  api:
    members: [{address: 10.0.0.3:80}]
virtuals:
  vs_web:
    type: http
    destination: 127.0.0.1:80
    pool: web
  vs_api: {type: tcp, destination: "127.0.0.1:81", pool: api}
`)
	for path, want := range map[string]int{
		"pools":                        1,
		"pools.web":                    2,
		"pools.web.members[1]":         5,
		"pools.web.members[1].address": 5,
		"pools.api.members[0].address": 7,
		"virtuals.vs_web.pool":         12,
		"virtuals.vs_api":              13,
		"virtuals.vs_api.destination":  13,
		"virtuals.vs_web.idle_timeout": 0,
		"pools.nope":                   0,
	} {
		if got := c.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
	if got := c.VirtualNames(); !slices.Equal(got, []string{"vs_api", "vs_web"}) {
		t.Errorf("VirtualNames = %v", got)
	}
	if got := c.PoolNames(); !slices.Equal(got, []string{"api", "web"}) {
		t.Errorf("PoolNames = %v", got)
	}
	if got := c.MonitorNames(); !slices.Equal(got, []string{"http", "https", "tcp", "udp", "virtual_location"}) {
		t.Errorf("MonitorNames = %v", got)
	}
}

// TestDocsCoverEverySchemaKey keeps docs/configuration.md in step with the
// schema: every key must be documented.
func TestDocsCoverEverySchemaKey(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, typ := range schemaTypes() {
		for _, key := range yamlKeys(typ) {
			if !strings.Contains(string(doc), "`"+key+"`") {
				t.Errorf("docs/configuration.md does not document key %q of %s", key, name)
			}
		}
	}
}
