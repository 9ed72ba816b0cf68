package config

import (
	"strings"
	"testing"
	"time"
)

// l4Virtual is a virtual of type typ on the web pool using profile p.
func l4Virtual(typ, extra string) string {
	return `
virtuals:
  vs:
    type: ` + typ + `
    destination: 127.0.0.1:3389
    pool: web
` + extra
}

func TestPersistenceTypeRules(t *testing.T) {
	t.Parallel()
	prof := func(body string) string { return "profiles:\n  persistence:\n    p:\n" + body }
	cases := []struct {
		name, src, path, msg string
	}{
		{"msrdp on udp", poolWeb + prof("      type: msrdp\n") + l4Virtual("udp", "    persistence: p  #<-\n"),
			"virtuals.vs.persistence", "works on virtuals of type tcp (this one is udp)"},
		{"ssl on http", poolWeb + prof("      type: ssl\n") + l4Virtual("http", "    persistence: p  #<-\n"),
			"virtuals.vs.persistence", "works on virtuals of type tcp (this one is http)"},
		{"ssl on fastl4", poolWeb + prof("      type: ssl\n") + l4Virtual("fastl4", "    persistence: p  #<-\n"),
			"virtuals.vs.persistence", "works on virtuals of type tcp (this one is fastl4)"},
		{"sip on http", poolWeb + prof("      type: sip\n") + l4Virtual("http", "    persistence: p  #<-\n"),
			"virtuals.vs.persistence", "works on virtuals of type tcp or udp"},
		{"hash http key on tcp", poolWeb + prof("      type: hash\n      key: header:X-User\n") + l4Virtual("tcp", "    persistence: p  #<-\n"),
			"virtuals.vs.persistence", "hash with key header:X-User, which reads HTTP"},
		{"hash without key", poolWeb + vsWeb + "profiles:\n  persistence:\n    p:  #<-\n      type: hash\n",
			"profiles.persistence.p.key", "hash persistence needs key"},
		{"hash bad key", poolWeb + vsWeb + prof("      type: hash\n      key: body:x  #<-\n"),
			"profiles.persistence.p.key", `key "body:x" is not valid: use source_addr`},
		{"hash with timeout", poolWeb + vsWeb + prof("      type: hash\n      key: uri\n      timeout: 5m  #<-\n"),
			"profiles.persistence.p.timeout", "keeps no records"},
		{"hash across pools", poolWeb + vsWeb + prof("      type: hash\n      key: uri\n      match_across_pools: true  #<-\n"),
			"profiles.persistence.p.match_across_pools", "hash persistence keeps none"},
		{"dest prefix", poolWeb + vsWeb + prof("      type: dest_addr\n      prefix_v4: 33  #<-\n"),
			"profiles.persistence.p.prefix_v4", "out of range"},
		{"peek bytes range", poolWeb + vsWeb + prof("      type: sip\n      peek_max_bytes: 1MiB  #<-\n"),
			"profiles.persistence.p.peek_max_bytes", "out of range: use 64 to 65536"},
		{"peek timeout zero", poolWeb + vsWeb + prof("      type: ssl\n      peek_timeout: 0s  #<-\n"),
			"profiles.persistence.p.peek_timeout", "must be longer than 0"},
		{"peek timeout long", poolWeb + vsWeb + prof("      type: msrdp\n      peek_timeout: 2m  #<-\n"),
			"profiles.persistence.p.peek_timeout", "longer than 1m"},
		{"peek on source_addr", poolWeb + vsWeb + prof("      type: source_addr\n      peek_timeout: 1s  #<-\n"),
			"profiles.persistence.p.peek_timeout", "applies only to msrdp, sip and ssl"},
		{"key on sip", poolWeb + vsWeb + prof("      type: sip\n      key: uri  #<-\n"),
			"profiles.persistence.p.key", "only to universal and hash"},
		{"msrdp with client_ssl", poolWeb + prof("      type: msrdp\n") + `  client_ssl:
    tls: {cert: x.pem, key: x.key}
` + l4Virtual("tcp", "    client_ssl: tls\n    persistence: p  #<-\n"),
			"virtuals.vs.persistence", "cannot work on a virtual that terminates TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			line := markedLine(t, tc.src)
			errs := parseErrors(t, tc.src)
			var hit bool
			for _, e := range errs {
				if e.Path == tc.path && e.Line == line && strings.Contains(e.Msg, tc.msg) {
					hit = true
				} else if !strings.Contains(e.Path, "client_ssl") { // the dummy certificate files
					t.Errorf("unexpected problem %s:%d: %s: %s", e.File, e.Line, e.Path, e.Msg)
				}
			}
			if !hit {
				t.Errorf("want test.yaml:%d: %s: ...%s...; got %v", line, tc.path, tc.msg, errs)
			}
		})
	}
}

func TestPersistenceTypesAccepted(t *testing.T) {
	t.Parallel()
	src := poolWeb + `
profiles:
  persistence:
    rdp: {type: msrdp, timeout: 8h}
    sipp: {type: sip, peek_max_bytes: 8KiB, peek_timeout: 2s}
    tls: {type: ssl}
    dst: {type: dest_addr, prefix_v4: 24}
    h_src: {type: hash, key: source_addr}
    h_hdr: {type: hash, key: "header:X-User"}
virtuals:
  rdp: {type: tcp, destination: 127.0.0.1:3389, pool: web, persistence: rdp, fallback_persistence: source_addr}
  sip_udp: {type: udp, destination: 127.0.0.1:5060, pool: web, persistence: sipp}
  sip_tcp: {type: tcp, destination: 127.0.0.1:5060, pool: web, persistence: sipp}
  tls: {type: tcp, destination: 127.0.0.1:443, pool: web, persistence: tls}
  cache: {type: fastl4, destination: 127.0.0.1:8080, pool: web, persistence: dst}
  hsrc: {type: udp, destination: 127.0.0.1:53, pool: web, persistence: h_src}
  hhdr: {type: http, destination: 127.0.0.1:80, pool: web, persistence: h_hdr}
`
	c, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pp := c.Profiles.Persistence
	if pp["rdp"].PeekTimeout.D() != 5*time.Second || pp["rdp"].PeekMaxBytes != 4096 || pp["rdp"].Timeout.D() != 8*time.Hour {
		t.Errorf("msrdp defaults: %+v", pp["rdp"])
	}
	if pp["sipp"].PeekTimeout.D() != 2*time.Second || pp["sipp"].PeekMaxBytes != 8192 || pp["sipp"].Timeout != DefaultPersistenceTimeout {
		t.Errorf("sip: %+v", pp["sipp"])
	}
	if pp["h_src"].Timeout != 0 || pp["h_src"].PeekTimeout != 0 {
		t.Errorf("hash got a timeout: %+v", pp["h_src"])
	}
	if pp["dst"].PeekMaxBytes != 0 || *pp["dst"].PrefixV4 != 24 || *pp["dst"].PrefixV6 != 128 {
		t.Errorf("dest_addr: %+v", pp["dst"])
	}
}
