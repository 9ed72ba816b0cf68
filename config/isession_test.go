package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func isessionSrc(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "dev", []string{"dev"}, time.Now().Add(time.Hour))
	return fmt.Sprintf(`
isession:
  cert: %s
  key: %s
  ca: %s
pools:
  sites:
    members: [{address: 10.9.0.1:7443}]
  local:
    members: [{address: 10.0.0.1:80}]
virtuals:
  remote:
    destination: 127.0.0.1:8080
    type: tcp
    isession: isession
    isession_endpoints: sites
%s`, cert, key, cert, extra)
}

func TestISessionDefaults(t *testing.T) {
	c := mustParse(t, isessionSrc(t, ""))
	p := c.Profiles.ISession[BuiltinISession]
	if p == nil || p.Compression != "adaptive" || len(p.Codecs) != 3 || p.DedupCache != DefaultDedupCache ||
		p.IdleTimeout.D() != 10*time.Minute || p.MaxAge != Indefinite || p.Connections != 1 ||
		p.TargetVirtual != "match_all" || p.TunnelTCP != "tcp-wan-optimized" || p.MaxWindow != DefaultMaxWindow {
		t.Fatalf("defaults %+v", p)
	}
	if c.ISession.Profile != BuiltinISession || c.ISession.MaxTunnels != 256 {
		t.Fatalf("section defaults %+v", c.ISession)
	}
	// The local pool is optional.
	if c.Virtuals["remote"].Pool != "" {
		t.Fatal("pool filled in")
	}
}

func TestISessionRefusals(t *testing.T) {
	for _, c := range []struct{ extra, want string }{
		{"    pool: local\n    client_ssl: x\n", "client_ssl is not built together with isession"},
		{"    mirror: true\n", "cannot be mirrored"},
		{"profiles:\n  isession:\n    p: {codecs: [bzip2]}\n", "codec bzip2 is not offered"},
		{"profiles:\n  isession:\n    p: {data_encryption: false}\n", "always encrypted"},
		{"profiles:\n  isession:\n    p: {target_virtual: host_match_all}\n", "not built"},
		{"profiles:\n  isession:\n    p: {target_virtual: nowhere}\n", `virtual "nowhere" does not exist`},
		{"profiles:\n  isession:\n    p: {max_window: 8KiB}\n", "max_window must be at least initial_window"},
		{"profiles:\n  isession:\n    p: {dedup_cache: 1KiB}\n", "dedup_cache must be 1MiB to 64GiB"},
		{"profiles:\n  isession:\n    p: {max_age: 0s}\n", "max_age must be longer than 0"},
		{"profiles:\n  isession:\n    p: {compression: lzo}\n", "compression"},
		{"profiles:\n  isession:\n    p: {tunnel_tcp: nope}\n", `TCP profile "nope" does not exist`},
		{"  other:\n    destination: 127.0.0.1:8081\n    type: http\n    pool: local\n    isession: isession\n    isession_endpoints: sites\n", "built for tcp virtuals only"},
		{"  other:\n    destination: 127.0.0.1:8081\n    type: tcp\n    pool: local\n    isession_endpoints: sites\n", "isession_endpoints needs isession"},
		{"  other:\n    destination: 127.0.0.1:8081\n    type: tcp\n    isession: isession\n", "isession_endpoints is required"},
	} {
		errs := parseErrors(t, isessionSrc(t, c.extra))
		if !strings.Contains(errs.Error(), c.want) {
			t.Errorf("%q: want %q in:\n%v", c.extra, c.want, errs)
		}
	}
	// Without its identity.
	src := "pools:\n  sites:\n    members: [{address: 10.9.0.1:7443}]\nvirtuals:\n  r:\n    destination: 127.0.0.1:1\n    type: tcp\n    isession: isession\n    isession_endpoints: sites\n"
	if errs := parseErrors(t, src); !strings.Contains(errs.Error(), "isession.cert and isession.key") || !strings.Contains(errs.Error(), "isession.ca is required") {
		t.Errorf("missing identity: %v", errs)
	}
}
