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
		{"udp", src("", "[2001:db8::80]:80", "udp"), "single-pass packet mode (fastl4, udp) is not built yet"},
		{"fastl4", src("", "[2001:db8::80]:80", "fastl4"), "single-pass packet mode (fastl4, udp) is not built yet"},
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
