package config

import (
	"strings"
	"testing"
)

func TestLBSPPersistence(t *testing.T) {
	base := `
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s%s}
pools:
  web:
    members: [{address: "[2001:db8::1]:80"}]
virtuals:
  v: {destination: "%s", type: %s, pool: web, persistence: lb}
`
	src := func(extra, dest, typ string) string {
		return strings.Replace(strings.Replace(strings.Replace(base, "%s", extra, 1), "%s", dest, 1), "%s", typ, 1)
	}
	c := mustParse(t, src("", "[2001:db8::80]:80", "tcp"))
	if ot := c.Profiles.Persistence["lb"].OptionType; ot == nil || *ot != 0x1E {
		t.Fatalf("option_type default %v", ot)
	}
	for _, tc := range []struct{ name, src, want string }{
		{"udp", src("", "[2001:db8::80]:80", "udp"), "it works on virtuals of type tcp (full proxy) and dsr (single pass); not on udp"},
		{"fastl4", src("", "[2001:db8::80]:80", "fastl4"), "not on fastl4"},
		{"ipv4", src("", "10.0.0.80:80", "tcp"), "the virtual's destination must be an IPv6 address"},
		{"padding type", src(", option_type: 1", "[2001:db8::80]:80", "tcp"), "option_type"},
		{"type range", src(", option_type: 300", "[2001:db8::80]:80", "tcp"), "option_type must be 0 to 255"},
		{"on another type", strings.Replace(src(", option_type: 30", "[2001:db8::80]:80", "tcp"), "type: lbsp", "type: source_addr", 1), "option_type applies only to lbsp persistence"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, tc.src)
			if !strings.Contains(errs.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", errs, tc.want)
			}
		})
	}
}

func TestDSRVirtual(t *testing.T) {
	ok := `
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s}
pools:
  web:
    members: [{address: "[2001:db8:2::11]:80"}, {address: "[2001:db8:2::12]:80"}]
virtuals:
  d: {destination: "[2001:db8::80]:80", type: dsr, pool: web, persistence: lb, interface: br-s}
`
	c := mustParse(t, ok)
	if d := c.Virtuals["d"]; d.ConnectionLimit != DefaultDSRFlows || len(DSRTUN("2001:db8::80")) > 15 {
		t.Fatalf("defaults: %+v, TUN %q", d, DSRTUN("2001:db8::80"))
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"no interface", ", interface: br-s", "", "a dsr virtual needs interface"},
		{"ipv4", `"[2001:db8::80]:80"`, `"10.0.0.80:80"`, "must be one IPv6 address"},
		{"member port", `"[2001:db8:2::12]:80"`, `"[2001:db8:2::12]:8080"`, "translates neither address nor port"},
		{"snat", "interface: br-s}", "interface: br-s, snat: automap}", "translates no address"},
		{"tls", "interface: br-s}", "interface: br-s, client_ssl: x}", "client_ssl does not apply to a dsr virtual"},
		{"tcp profile", "interface: br-s}", "interface: br-s, clientside_tcp: tcp}", "a dsr virtual has no TCP profile"},
		{"persistence type", "type: lbsp", "type: source_addr", "a dsr virtual takes only lbsp persistence"},
		{"interface elsewhere", "type: dsr", "type: tcp", "interface applies only to virtuals of type dsr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, strings.Replace(ok, tc.from, tc.to, 1))
			if !strings.Contains(errs.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", errs, tc.want)
			}
		})
	}
}
