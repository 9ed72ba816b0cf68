package persist

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/h1"
)

// browserCookie is what a user agent stores from one Set-Cookie value
// (RFC 6265bis §5.6): ok=false when it ignores the line; del when the
// last valid Max-Age is <= 0. It is the test's independent model of the
// client side.
func browserCookie(sc string) (name, value string, del, ok bool) {
	for i := 0; i < len(sc); i++ {
		if c := sc[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", "", false, false // a CTL: the cookie is ignored
		}
	}
	wsp := func(s string) string { return strings.Trim(s, " \t") }
	pair, attrs, _ := strings.Cut(sc, ";")
	n, v, found := strings.Cut(pair, "=")
	if !found {
		return "", "", false, false
	}
	name, value = wsp(n), wsp(v)
	if name == "" {
		return "", "", false, false
	}
	for _, a := range strings.Split(attrs, ";") {
		k, val, _ := strings.Cut(a, "=")
		if !strings.EqualFold(wsp(k), "max-age") {
			continue
		}
		val = wsp(val)
		digits := strings.TrimPrefix(val, "-")
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			continue // not delta-seconds: the attribute is ignored
		}
		del = val[0] == '-' || strings.Trim(digits, "0") == ""
	}
	return name, value, del, true
}

// sentBack is the value the proxy reads (h1.Request.Cookie) when the
// browser returns the cookie: ok=false when that request would not parse.
func sentBack(name, value string) (string, bool) {
	raw := "GET / HTTP/1.1\r\nHost: x\r\nCookie: " + name + "=" + value + "\r\n\r\n"
	req, err := h1.ReadRequest(bufio.NewReader(strings.NewReader(raw)), h1.Limits{MaxHeaderBytes: 1 << 16, MaxHeaders: 16})
	if err != nil {
		return "", false
	}
	return req.Cookie(name)
}

// FuzzSetCookie feeds arbitrary Set-Cookie values to cookie_passive
// learning. Besides never panicking, what Learn stores must be exactly the
// value the proxy will read when the browser sends the cookie back (else
// the record is dead weight and the session is not kept), and every cookie
// a browser keeps and returns must be learned.
func FuzzSetCookie(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzSetCookie.
	const name = "JSESSIONID"
	p := mustProfile(f, ProfileConfig{Name: "js", Type: TypeCookiePassive, CookieName: name, Timeout: time.Minute})
	f.Fuzz(func(t *testing.T, sc string) {
		value, del, ok := parseSetCookie(sc, name)
		bn, bv, bdel, bok := browserCookie(sc)
		bok = bok && bn == name
		back, backOK := "", false
		if bok {
			back, backOK = sentBack(bn, bv)
		}
		switch {
		case ok && !bok:
			t.Fatalf("learned %q (del %v) from a cookie a browser ignores", value, del)
		case ok && del != bdel:
			t.Fatalf("deletion %v, a browser's %v", del, bdel)
		case ok && !del && (!backOK || back != value):
			t.Fatalf("learned %q but the browser sends back %q (request parses: %v)", value, back, backOK)
		case !ok && bok && !bdel && backOK && back != "":
			t.Fatalf("missed the session %q a browser keeps and sends back", back)
		}

		// Learn then Lookup with the returned cookie finds the member.
		tb := NewTable()
		m := ap("10.0.0.3:8080")
		req := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{}}
		p.Learn(tb, req, []string{sc}, Target{Member: m}, t0)
		if ok && !del {
			next := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{cookies: map[string]string{name: back}}}
			if got, hit := p.Lookup(tb, next, t0); !hit || got.Member != m {
				t.Fatalf("learned %q but the returned cookie %q finds %v %v", value, back, got, hit)
			}
		} else if tb.Len() != 0 {
			t.Fatalf("stored %d records from %q", tb.Len(), sc)
		}
	})
}
