package persist

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		want      Key
		universal bool   // ParseUniversalKey accepts it too
		err       string // ParseKey's error, "" = valid
	}{
		{"source_addr", Key{Kind: KeySourceAddr}, false, ""},
		{"uri", Key{Kind: KeyURI}, true, ""},
		{"header:X-Session", Key{KeyHeader, "X-Session"}, true, ""},
		{"query:sid", Key{KeyQuery, "sid"}, true, ""},
		{"query:a.b[0]", Key{KeyQuery, "a.b[0]"}, true, ""},
		{"cookie:JSESSIONID", Key{KeyCookie, "JSESSIONID"}, true, ""},
		{"", Key{}, false, `key "" is not valid: use source_addr, uri`},
		{"path", Key{}, false, "is not valid"},
		{"URI", Key{}, false, "is not valid"},
		{"body:x", Key{}, false, "is not valid"},
		{"header", Key{}, false, "is not valid"},
		{"header:", Key{}, false, "names no header: write header:NAME"},
		{"cookie:", Key{}, false, "names no cookie"},
		{"header:a:b", Key{}, false, `"a:b" is not a valid header name`},
		{"header:X Y", Key{}, false, "not a valid header name"},
		{"cookie:a=b", Key{}, false, "not a valid cookie name"},
		{"query:a&b", Key{}, false, "cannot contain &"},
		{"query:a b", Key{}, false, "cannot contain"},
		{"query:a?", Key{}, false, "cannot contain"},
		{"source_addr:x", Key{}, false, "is not valid"},
	}
	for _, tc := range tests {
		got, err := ParseKey(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseKey(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("ParseKey(%q).String() = %q", tc.in, got.String())
			}
		} else {
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.in || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseKey(%q) error = %v; want a *KeyError containing %q", tc.in, err, tc.err)
			}
		}
		ug, uerr := ParseUniversalKey(tc.in)
		if tc.universal != (uerr == nil) || (uerr == nil && ug != tc.want) {
			t.Errorf("ParseUniversalKey(%q) = %+v, %v; want ok %v", tc.in, ug, uerr, tc.universal)
		}
	}
	// Universal persistence names the forms it accepts, without source_addr.
	if _, err := ParseUniversalKey("source_addr"); err == nil || strings.Contains(err.Error(), "use source_addr") {
		t.Errorf("ParseUniversalKey(source_addr) = %v", err)
	}
	if k, _ := ParseKey("source_addr"); k.HTTP() {
		t.Error("source_addr reads HTTP")
	}
	if k, _ := ParseKey("cookie:a"); !k.HTTP() {
		t.Error("cookie:a does not read HTTP")
	}
}
