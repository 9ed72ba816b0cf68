package etherip

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckConfigs(t *testing.T) {
	t.Parallel()
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	mapped := netip.MustParseAddr("::ffff:192.0.2.2")
	tests := []struct {
		name string
		cfgs []Config
		want []string // substrings of the error; none: no error
	}{
		{"empty", nil, nil},
		{"star", []Config{{Local: a, Remote: b}, {Local: a, Remote: c}, {Local: a6, Remote: b6}}, nil},
		{"self", []Config{{Name: "eip0", Local: a, Remote: a}}, []string{"tunnel 0 (eip0)", "its own local address"}},
		{"duplicate", []Config{{Local: a, Remote: b}, {Local: a, Remote: c}, {Local: a, Remote: b}}, []string{"tunnel 0 and tunnel 2", "parallel"}},
		{"duplicate mapped", []Config{{Local: a, Remote: b}, {Local: a, Remote: mapped}}, []string{"parallel"}},
		{"mirror", []Config{{Local: a, Remote: b}, {Local: b, Remote: a}}, []string{"mirrors"}},
		{"all", []Config{{Local: a, Remote: a}, {Local: a, Remote: b}, {Local: a, Remote: b}, {Local: b, Remote: a}}, []string{"own local", "parallel", "mirrors"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckConfigs(tt.cfgs)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
