package ssl

import (
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want uint16
		err  string // "" = valid
	}{
		{"1.0", tls.VersionTLS10, ""},
		{"1.1", tls.VersionTLS11, ""},
		{"1.2", tls.VersionTLS12, ""},
		{"1.3", tls.VersionTLS13, ""},
		{"1.4", 0, `min_version "1.4" is not valid: use one of 1.0, 1.1, 1.2, 1.3`},
		{"", 0, "is not valid"},
		{"1", 0, "is not valid"},
		{"TLSv1.2", 0, `(did you mean "1.2"?)`},
		{"tls1.3", 0, `(did you mean "1.3"?)`},
		{" 1.2", 0, `(did you mean "1.2"?)`},
		{"SSLv3", 0, "is not valid"},
	}
	for _, tc := range tests {
		got, err := ParseVersion(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseVersion(%q) = %#x, %v; want %#x", tc.in, got, err, tc.want)
			}
			continue
		}
		var ve *VersionError
		if !errors.As(err, &ve) || ve.Value != tc.in || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseVersion(%q) error = %v; want a *VersionError containing %q", tc.in, err, tc.err)
		}
	}
	if got := Versions(); !slices.Equal(got, []string{"1.0", "1.1", "1.2", "1.3"}) {
		t.Errorf("Versions() = %v", got)
	}
}
