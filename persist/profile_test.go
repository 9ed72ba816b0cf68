package persist

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
)

// fakeHTTP is a minimal HTTPRequest.
type fakeHTTP struct {
	headers map[string]string // lower-case names
	cookies map[string]string
	path    string
	query   map[string]string
}

func (f *fakeHTTP) Header(name string) (string, bool) {
	v, ok := f.headers[strings.ToLower(name)]
	return v, ok
}
func (f *fakeHTTP) Cookie(name string) (string, bool) { v, ok := f.cookies[name]; return v, ok }
func (f *fakeHTTP) Path() string                      { return f.path }
func (f *fakeHTTP) Query(name string) (string, bool)  { v, ok := f.query[name]; return v, ok }

var secret = []byte("0123456789abcdef0123456789abcdef")

func mustProfile(t testing.TB, cfg ProfileConfig) *Profile {
	t.Helper()
	p, err := NewProfile(cfg)
	if err != nil {
		t.Fatalf("NewProfile(%+v): %v", cfg, err)
	}
	return p
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestNewProfileValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     ProfileConfig
		wantErr string // substring; "" = valid
	}{
		{"source ok", ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 24, PrefixV6: 64}, ""},
		{"no name", ProfileConfig{Type: "source_addr", Timeout: time.Minute}, "name is required"},
		{"pipe in name", ProfileConfig{Name: "a|b", Type: "source_addr", Timeout: time.Minute}, "must not contain"},
		{"no type", ProfileConfig{Name: "x"}, "type is required"},
		{"bad type", ProfileConfig{Name: "x", Type: "ssl_session", Timeout: time.Minute}, `unknown type "ssl_session"`},
		{"v4 prefix", ProfileConfig{Name: "x", Type: "source_addr", Timeout: time.Minute, PrefixV4: 33}, "prefix_v4"},
		{"v6 prefix", ProfileConfig{Name: "x", Type: "source_addr", Timeout: time.Minute, PrefixV6: -1}, "prefix_v6"},
		{"zero timeout table", ProfileConfig{Name: "x", Type: "source_addr"}, "timeout > 0"},
		{"negative timeout", ProfileConfig{Name: "x", Type: "cookie_insert", Secret: secret, Timeout: -1}, "negative"},
		{"cookie ok session", ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret}, ""},
		{"cookie short secret", ProfileConfig{Name: "c", Type: "cookie_insert", Secret: []byte("short")}, "at least 16"},
		{"cookie bad name", ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret, CookieName: "a b"}, "not a valid cookie name"},
		{"cookie across pools no name", ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret, MatchAcrossPools: true}, "explicit cookie_name"},
		{"cookie bad path", ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret, CookiePath: "/;x"}, "cookie_path"},
		{"cookie bad domain", ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret, CookieDomain: "a\nb"}, "cookie_domain"},
		{"passive ok", ProfileConfig{Name: "p", Type: "cookie_passive", CookieName: "JSESSIONID", Timeout: time.Hour}, ""},
		{"passive no cookie", ProfileConfig{Name: "p", Type: "cookie_passive", Timeout: time.Hour}, "needs cookie_name"},
		{"universal header", ProfileConfig{Name: "u", Type: "universal", Key: "header:X-Session", Timeout: time.Hour}, ""},
		{"universal uri", ProfileConfig{Name: "u", Type: "universal", Key: "uri", Timeout: time.Hour}, ""},
		{"universal query", ProfileConfig{Name: "u", Type: "universal", Key: "query:sid", Timeout: time.Hour}, ""},
		{"universal cookie", ProfileConfig{Name: "u", Type: "universal", Key: "cookie:sid", Timeout: time.Hour}, ""},
		{"universal empty key", ProfileConfig{Name: "u", Type: "universal", Timeout: time.Hour}, "is not valid: use uri"},
		{"universal no name", ProfileConfig{Name: "u", Type: "universal", Key: "header:", Timeout: time.Hour}, "names no header"},
		{"universal bad source", ProfileConfig{Name: "u", Type: "universal", Key: "body:x", Timeout: time.Hour}, "is not valid: use uri"},
		{"universal source_addr", ProfileConfig{Name: "u", Type: "universal", Key: "source_addr", Timeout: time.Hour}, "is not valid: use uri"},
		{"universal bad header", ProfileConfig{Name: "u", Type: "universal", Key: "header:a:b", Timeout: time.Hour}, "not a valid header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewProfile(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if p.Name() != tc.cfg.Name || p.Type() != tc.cfg.Type {
					t.Fatalf("Name/Type = %q/%q", p.Name(), p.Type())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestNeedsHTTP(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]bool{"source_addr": false, "cookie_insert": true, "cookie_passive": true, "universal": true} {
		cfg := ProfileConfig{Name: "x", Type: typ, Timeout: time.Minute, Secret: secret, CookieName: "S", Key: "uri"}
		if got := mustProfile(t, cfg).NeedsHTTP(); got != want {
			t.Errorf("%s: NeedsHTTP = %v, want %v", typ, got, want)
		}
	}
}

func TestSourceAddrMasks(t *testing.T) {
	t.Parallel()
	p := mustProfile(t, ProfileConfig{Name: "src", Type: "source_addr", Timeout: time.Minute, PrefixV4: 24, PrefixV6: 64})
	full := mustProfile(t, ProfileConfig{Name: "full", Type: "source_addr", Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128})
	tests := []struct {
		prof   *Profile
		client string
		value  string
	}{
		{p, "192.0.2.77", "192.0.2.0"},
		{p, "::ffff:192.0.2.77", "192.0.2.0"}, // IPv4-mapped treated as IPv4
		{p, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{p, "fe80::1%eth0", "fe80::"},
		{full, "192.0.2.77", "192.0.2.77"},
		{full, "2001:db8::9", "2001:db8::9"},
	}
	for _, tc := range tests {
		tb := NewTable()
		req := &Request{Virtual: "vs", Pool: "web", Client: netip.MustParseAddr(tc.client)}
		tgt := Target{Pool: "web", Member: ap("10.0.0.1:80")}
		if _, ok := tc.prof.Lookup(tb, req, t0); ok {
			t.Fatalf("%s: hit in empty table", tc.client)
		}
		if sc := tc.prof.Record(tb, req, tgt, t0); sc != "" {
			t.Fatalf("source_addr returned a cookie %q", sc)
		}
		var got Record
		tb.Range(func(r Record) bool { got = r; return false })
		if got.Value != tc.value {
			t.Errorf("%s: value %q, want %q", tc.client, got.Value, tc.value)
		}
		wantKey := tc.prof.Name() + "|vs|web|source_addr|" + tc.value
		if got.Key != wantKey || got.Type != TypeSourceAddr || got.Profile != tc.prof.Name() ||
			got.Virtual != "vs" || got.Pool != "web" || got.Member != tgt.Member ||
			!got.Created.Equal(t0) || !got.Expires.Equal(t0.Add(time.Minute)) || got.Timeout != time.Minute {
			t.Errorf("%s: record %+v (want key %q)", tc.client, got, wantKey)
		}
		// Another client in the same prefix sticks to the same member.
		if tc.prof == p {
			other := tc.client[:len(tc.client)-1] + "9"
			req2 := &Request{Virtual: "vs", Pool: "web", Client: netip.MustParseAddr(other)}
			if got, ok := p.Lookup(tb, req2, t0.Add(time.Second)); !ok || got != tgt {
				t.Errorf("%s: neighbour %s did not persist: %+v %v", tc.client, other, got, ok)
			}
		}
	}
	// No client address: no identity, nothing stored.
	tb := NewTable()
	p.Record(tb, &Request{Virtual: "vs", Pool: "web"}, Target{Pool: "web", Member: ap("10.0.0.1:80")}, t0)
	if tb.Len() != 0 || p.HasIdentity(&Request{}) {
		t.Fatal("stored a record without a client address")
	}
}

func TestScopeAcrossVirtualsAndPools(t *testing.T) {
	t.Parallel()
	m := ap("10.0.0.1:80")
	client := netip.MustParseAddr("198.51.100.7")
	httpReq := &Request{Virtual: "vs_http", Pool: "web", Client: client}
	httpsReq := &Request{Virtual: "vs_https", Pool: "web", Client: client}
	otherPool := &Request{Virtual: "vs_api", Pool: "api", Client: client}

	t.Run("per virtual", func(t *testing.T) {
		p := mustProfile(t, ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128})
		tb := NewTable()
		p.Record(tb, httpReq, Target{Member: m}, t0) // empty Pool defaults to the request's
		if got, ok := p.Lookup(tb, httpReq, t0); !ok || got != (Target{Pool: "web", Member: m}) {
			t.Fatalf("same virtual: %+v %v", got, ok)
		}
		if _, ok := p.Lookup(tb, httpsReq, t0); ok {
			t.Fatal("record leaked to another virtual without match_across_virtuals")
		}
	})
	t.Run("across virtuals", func(t *testing.T) {
		p := mustProfile(t, ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128, MatchAcrossVirtuals: true})
		tb := NewTable()
		p.Record(tb, httpReq, Target{Pool: "web", Member: m}, t0)
		if got, ok := p.Lookup(tb, httpsReq, t0); !ok || got.Member != m {
			t.Fatalf("HTTPS virtual did not see the HTTP virtual's record: %+v %v", got, ok)
		}
		if _, ok := p.Lookup(tb, otherPool, t0); ok {
			t.Fatal("record leaked to another pool without match_across_pools")
		}
		var r Record
		tb.Range(func(x Record) bool { r = x; return false })
		if r.Key != "s|*|web|source_addr|198.51.100.7" || r.Virtual != "vs_http" {
			t.Fatalf("record %+v", r)
		}
	})
	t.Run("across pools", func(t *testing.T) {
		p := mustProfile(t, ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128, MatchAcrossVirtuals: true, MatchAcrossPools: true})
		tb := NewTable()
		p.Record(tb, httpReq, Target{Pool: "web", Member: m}, t0)
		got, ok := p.Lookup(tb, otherPool, t0)
		if !ok || got != (Target{Pool: "web", Member: m}) {
			t.Fatalf("across pools: %+v %v (want the web pool's member)", got, ok)
		}
	})
}

func TestRecordRefreshesAndReplaces(t *testing.T) {
	t.Parallel()
	p := mustProfile(t, ProfileConfig{Name: "s", Type: "source_addr", Timeout: 100 * time.Second, PrefixV4: 32, PrefixV6: 128})
	tb := NewTable()
	sub := tb.Events().Subscribe(32)
	defer sub.Close()
	req := &Request{Virtual: "vs", Pool: "web", Client: netip.MustParseAddr("192.0.2.1")}
	p.Record(tb, req, Target{Pool: "web", Member: ap("10.0.0.1:80")}, t0)
	p.Record(tb, req, Target{Pool: "web", Member: ap("10.0.0.1:80")}, t0.Add(time.Second))
	// The persisted member went down; the proxy picked another one.
	p.Record(tb, req, Target{Pool: "web", Member: ap("10.0.0.2:80")}, t0.Add(2*time.Second))
	got := kinds(drain(sub))
	if !equalKinds(got, []events.Kind{events.Created, events.Updated}) {
		t.Fatalf("events = %v, want created, updated (the re-confirmation is quiet)", got)
	}
	if tgt, ok := p.Lookup(tb, req, t0.Add(3*time.Second)); !ok || tgt.Member != ap("10.0.0.2:80") {
		t.Fatalf("after replace: %+v %v", tgt, ok)
	}
	if _, ok := p.Lookup(tb, req, t0.Add(1000*time.Second)); ok {
		t.Fatal("record did not expire")
	}
}

func TestCookieInsert(t *testing.T) {
	t.Parallel()
	p := mustProfile(t, ProfileConfig{Name: "ck", Type: "cookie_insert", Secret: secret, HTTPOnly: true, Timeout: 90 * time.Minute})
	m := ap("10.0.0.1:8080")
	req := &Request{Virtual: "vs", Pool: "web", Client: netip.MustParseAddr("192.0.2.1"), HTTP: &fakeHTTP{}}
	tb := NewTable()

	if _, ok := p.Lookup(tb, req, t0); ok {
		t.Fatal("hit without a cookie")
	}
	sc := p.Record(tb, req, Target{Pool: "web", Member: m}, t0)
	if tb.Len() != 0 {
		t.Fatal("cookie_insert stored a table record")
	}
	name, rest, _ := strings.Cut(sc, "=")
	value, attrs, _ := strings.Cut(rest, ";")
	if name != "FULCRUM_web" {
		t.Fatalf("cookie name %q, want FULCRUM_web (Set-Cookie %q)", name, sc)
	}
	if want := " Path=/; HttpOnly; Max-Age=5400"; attrs != want {
		t.Fatalf("attributes %q, want %q", attrs, want)
	}
	req.HTTP = &fakeHTTP{cookies: map[string]string{"FULCRUM_web": value}}
	got, ok := p.Lookup(tb, req, t0)
	if !ok || got != (Target{Pool: "web", Member: m}) {
		t.Fatalf("round trip: %+v %v", got, ok)
	}

	// Any single-character change, truncation or extension is rejected.
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(value); i++ {
		for _, c := range []byte{alphabet[(strings.IndexByte(alphabet, value[i])+1)%64], '!'} {
			bad := value[:i] + string(c) + value[i+1:]
			req.HTTP = &fakeHTTP{cookies: map[string]string{"FULCRUM_web": bad}}
			if tgt, ok := p.Lookup(tb, req, t0); ok {
				t.Fatalf("tampered cookie %q (pos %d) accepted: %+v", bad, i, tgt)
			}
		}
	}
	for _, bad := range []string{value[:len(value)-1], value[:len(value)/2], value + "A", "", "garbage", strings.Repeat("A", 4000)} {
		req.HTTP = &fakeHTTP{cookies: map[string]string{"FULCRUM_web": bad}}
		if _, ok := p.Lookup(tb, req, t0); ok {
			t.Fatalf("cookie %q accepted", bad)
		}
	}

	// A cookie made with another secret is rejected.
	other := mustProfile(t, ProfileConfig{Name: "ck", Type: "cookie_insert", Secret: []byte("another secret of 32 bytes......")})
	_, rest, _ = strings.Cut(other.Record(nil, req, Target{Pool: "web", Member: m}, t0), "=")
	forged, _, _ := strings.Cut(rest, ";")
	req.HTTP = &fakeHTTP{cookies: map[string]string{"FULCRUM_web": forged}}
	if _, ok := p.Lookup(tb, req, t0); ok {
		t.Fatal("cookie signed with another secret accepted")
	}
}

func TestCookieInsertPools(t *testing.T) {
	t.Parallel()
	m := ap("[2001:db8::5]:443")
	strict := mustProfile(t, ProfileConfig{Name: "ck", Type: "cookie_insert", Secret: secret, CookieName: "LB"})
	across := mustProfile(t, ProfileConfig{Name: "ck", Type: "cookie_insert", Secret: secret, CookieName: "LB", MatchAcrossPools: true})

	webReq := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{}}
	sc := strict.Record(nil, webReq, Target{Pool: "web", Member: m}, t0)
	if !strings.HasPrefix(sc, "LB=") || strings.Contains(sc, "Max-Age") || strings.Contains(sc, "HttpOnly") {
		t.Fatalf("session cookie without HttpOnly expected, got %q", sc)
	}
	value, _, _ := strings.Cut(strings.TrimPrefix(sc, "LB="), ";")
	apiReq := &Request{Virtual: "vs2", Pool: "api", HTTP: &fakeHTTP{cookies: map[string]string{"LB": value}}}
	if _, ok := strict.Lookup(nil, apiReq, t0); ok {
		t.Fatal("a cookie of pool web was honoured by pool api without match_across_pools")
	}
	got, ok := across.Lookup(nil, apiReq, t0)
	if !ok || got != (Target{Pool: "web", Member: m}) {
		t.Fatalf("match_across_pools: %+v %v, want web's member", got, ok)
	}
	// Same pool, other virtual: stateless cookies work anywhere.
	webReq2 := &Request{Virtual: "vs_https", Pool: "web", HTTP: &fakeHTTP{cookies: map[string]string{"LB": value}}}
	if got, ok := strict.Lookup(nil, webReq2, t0); !ok || got.Member != m {
		t.Fatalf("other virtual, same pool: %+v %v", got, ok)
	}
}

func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  ProfileConfig
		want string
	}{
		{ProfileConfig{}, "; Path=/"},
		{ProfileConfig{HTTPOnly: true, Secure: true, CookieDomain: "example.test", CookiePath: "/app", Timeout: 1500 * time.Millisecond},
			"; Path=/app; HttpOnly; Secure; Domain=example.test; Max-Age=2"},
		{ProfileConfig{Timeout: time.Millisecond}, "; Path=/; Max-Age=1"},
	}
	for _, tc := range tests {
		tc.cfg.Name, tc.cfg.Type, tc.cfg.Secret = "c", TypeCookieInsert, secret
		p := mustProfile(t, tc.cfg)
		sc := p.Record(nil, &Request{Pool: "web"}, Target{Pool: "web", Member: ap("10.0.0.1:80")}, t0)
		if _, attrs, _ := strings.Cut(sc, ";"); ";"+attrs != tc.want {
			t.Errorf("%+v: Set-Cookie %q, want attributes %q", tc.cfg, sc, tc.want)
		}
	}
}

func TestCookiePassive(t *testing.T) {
	t.Parallel()
	p := mustProfile(t, ProfileConfig{Name: "js", Type: "cookie_passive", CookieName: "JSESSIONID", Timeout: 30 * time.Minute})
	tb := NewTable()
	m := ap("10.0.0.3:8080")
	first := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{}}
	if _, ok := p.Lookup(tb, first, t0); ok {
		t.Fatal("hit without cookie")
	}
	// No cookie in the request: Record stores nothing; Learn sees the app set it.
	if sc := p.Record(tb, first, Target{Pool: "web", Member: m}, t0); sc != "" || tb.Len() != 0 {
		t.Fatalf("Record without cookie: %q, Len %d", sc, tb.Len())
	}
	p.Learn(tb, first, []string{
		"theme=dark; Path=/",
		`JSESSIONID="ABC123"; Path=/; HttpOnly`,
	}, Target{Pool: "web", Member: m}, t0)
	if tb.Len() != 1 {
		t.Fatalf("Learn stored %d records, want 1", tb.Len())
	}
	next := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{cookies: map[string]string{"JSESSIONID": "ABC123"}}}
	got, ok := p.Lookup(tb, next, t0.Add(time.Minute))
	if !ok || got != (Target{Pool: "web", Member: m}) {
		t.Fatalf("learned lookup: %+v %v", got, ok)
	}
	var r Record
	tb.Range(func(x Record) bool { r = x; return false })
	if r.Key != "js|vs|web|cookie_passive|ABC123" || r.Value != "ABC123" || r.Type != TypeCookiePassive {
		t.Fatalf("record %+v", r)
	}
	// Other sessions are unknown.
	unknown := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{cookies: map[string]string{"JSESSIONID": "ZZZ"}}}
	if _, ok := p.Lookup(tb, unknown, t0); ok {
		t.Fatal("unknown session found")
	}
	// The request carries the cookie and its member failed over: Record re-points it.
	m2 := ap("10.0.0.4:8080")
	p.Record(tb, next, Target{Pool: "web", Member: m2}, t0.Add(2*time.Minute))
	if got, _ := p.Lookup(tb, next, t0.Add(2*time.Minute)); got.Member != m2 {
		t.Fatalf("Record did not re-point the session: %+v", got)
	}
	// The application logs the user out.
	p.Learn(tb, next, []string{"JSESSIONID=ABC123; Max-Age=0"}, Target{Pool: "web", Member: m2}, t0.Add(3*time.Minute))
	if tb.Len() != 0 {
		t.Fatal("deleting Set-Cookie did not remove the record")
	}
	// Learn ignores empty values, other cookies and other profile types.
	p.Learn(tb, next, []string{"JSESSIONID=; Path=/", "JSESSIONIDX=1", "garbage"}, Target{Member: m}, t0)
	src := mustProfile(t, ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128})
	src.Learn(tb, next, []string{"JSESSIONID=X"}, Target{Member: m}, t0)
	if tb.Len() != 0 {
		t.Fatalf("Learn stored %d bogus records", tb.Len())
	}
}

func TestParseSetCookie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		value   string
		del, ok bool
	}{
		{"SID=abc", "abc", false, true},
		{" SID = abc ; Path=/", "abc", false, true},
		{`SID="q"; Secure`, "q", false, true},
		{"SID=abc; max-age=-1", "abc", true, true},
		{"SID=abc; Max-Age=60", "abc", false, true},
		{"SID=abc; Max-Age=bogus", "abc", false, true},
		{"SID=", "", false, false},
		{"OTHER=abc", "", false, false},
		{"SIDabc", "", false, false},
		{"", "", false, false},
		// As a browser stores it (RFC 6265bis §5.6), so Learn keeps what comes back:
		{"SID=a\x0bb", "", false, false},                       // a control character: browsers drop the line
		{"SID=\u00a0abc", "\u00a0abc", false, true},            // only SP and HTAB are trimmed
		{"SID=\tabc\t; Path=/", "abc", false, true},            // tabs are
		{"SID=abc; Max-Age=0; Max-Age=60", "abc", false, true}, // the last Max-Age wins
		{"SID=abc; Max-Age=60; Max-Age=0", "abc", true, true},
		{"SID=abc; Max-Age=+0", "abc", false, true}, // not delta-seconds: ignored
		{"SID=abc; Max-Age=-", "abc", false, true},
		{"SID=abc; Max-Age=-99999999999999999999", "abc", true, true},
	}
	for _, tc := range tests {
		v, del, ok := parseSetCookie(tc.in, "SID")
		if v != tc.value || del != tc.del || ok != tc.ok {
			t.Errorf("parseSetCookie(%q) = %q,%v,%v want %q,%v,%v", tc.in, v, del, ok, tc.value, tc.del, tc.ok)
		}
	}
}

func TestUniversal(t *testing.T) {
	t.Parallel()
	m := ap("10.0.0.7:80")
	long := strings.Repeat("x", 500)
	tests := []struct {
		key      string
		http     *fakeHTTP
		value    string // "" = no identity
		keyValue string // value part of the table key when it differs
	}{
		{"header:X-Session", &fakeHTTP{headers: map[string]string{"x-session": "s1"}}, "s1", ""},
		{"header:X-Session", &fakeHTTP{headers: map[string]string{"x-other": "s1"}}, "", ""},
		{"header:X-Session", &fakeHTTP{headers: map[string]string{"x-session": ""}}, "", ""},
		{"query:sid", &fakeHTTP{query: map[string]string{"sid": "q1"}}, "q1", ""},
		{"query:sid", &fakeHTTP{}, "", ""},
		{"cookie:sid", &fakeHTTP{cookies: map[string]string{"sid": "c1"}}, "c1", ""},
		{"cookie:sid", &fakeHTTP{cookies: map[string]string{"SID": "c1"}}, "", ""},
		{"uri", &fakeHTTP{path: "/cart/42"}, "/cart/42", ""},
		{"uri", &fakeHTTP{path: ""}, "", ""},
		{"header:X-Session", &fakeHTTP{headers: map[string]string{"x-session": long}}, long[:maxValueLen] + "...", "sha256:"},
	}
	for _, tc := range tests {
		p := mustProfile(t, ProfileConfig{Name: "u", Type: "universal", Key: tc.key, Timeout: time.Minute})
		tb := NewTable()
		req := &Request{Virtual: "vs", Pool: "web", HTTP: tc.http}
		p.Record(tb, req, Target{Pool: "web", Member: m}, t0)
		got, ok := p.Lookup(tb, req, t0)
		if tc.value == "" {
			if ok || tb.Len() != 0 || p.HasIdentity(req) {
				t.Errorf("%s %+v: no identity expected, got ok=%v len=%d", tc.key, tc.http, ok, tb.Len())
			}
			continue
		}
		if !ok || got.Member != m {
			t.Errorf("%s: lookup %+v %v", tc.key, got, ok)
			continue
		}
		var r Record
		tb.Range(func(x Record) bool { r = x; return false })
		if r.Value != tc.value || r.Type != TypeUniversal {
			t.Errorf("%s: record value %q, want %q", tc.key, r.Value, tc.value)
		}
		wantKV := tc.value
		if tc.keyValue != "" {
			wantKV = tc.keyValue
		}
		if !strings.HasPrefix(r.Key, "u|vs|web|universal|"+wantKV) {
			t.Errorf("%s: key %q", tc.key, r.Key)
		}
		// A different identity does not match.
		if tc.key == "uri" {
			other := &Request{Virtual: "vs", Pool: "web", HTTP: &fakeHTTP{path: "/cart/43"}}
			if _, ok := p.Lookup(tb, other, t0); ok {
				t.Errorf("uri: other path matched")
			}
		}
	}
	// L4 request (no HTTP) has no identity.
	p := mustProfile(t, ProfileConfig{Name: "u", Type: "universal", Key: "uri", Timeout: time.Minute})
	if p.HasIdentity(&Request{Client: netip.MustParseAddr("192.0.2.1")}) {
		t.Fatal("identity without HTTP")
	}
}

func TestProfilesConcurrent(t *testing.T) {
	t.Parallel()
	src := mustProfile(t, ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 24, PrefixV6: 64, MatchAcrossVirtuals: true})
	ck := mustProfile(t, ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret})
	tb := NewTable()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				c := netip.AddrFrom4([4]byte{192, 0, byte(i % 4), byte(w)})
				req := &Request{Virtual: "vs", Pool: "web", Client: c, HTTP: &fakeHTTP{}}
				tgt := Target{Pool: "web", Member: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(w + 1)}), 80)}
				if _, ok := src.Lookup(tb, req, t0); !ok {
					src.Record(tb, req, tgt, t0)
				}
				sc := ck.Record(nil, req, tgt, t0)
				v, _, _ := strings.Cut(strings.TrimPrefix(sc, "FULCRUM_web="), ";")
				req.HTTP = &fakeHTTP{cookies: map[string]string{"FULCRUM_web": v}}
				if got, ok := ck.Lookup(nil, req, t0); !ok || got != tgt {
					t.Errorf("cookie round trip under concurrency: %+v %v", got, ok)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if tb.Len() != 4 {
		t.Fatalf("Len = %d, want 4 (/24 prefixes)", tb.Len())
	}
}

func BenchmarkCookieInsertLookup(b *testing.B) {
	p := mustProfile(b, ProfileConfig{Name: "c", Type: "cookie_insert", Secret: secret})
	sc := p.Record(nil, &Request{Pool: "web"}, Target{Pool: "web", Member: ap("10.0.0.1:80")}, t0)
	v, _, _ := strings.Cut(strings.TrimPrefix(sc, "FULCRUM_web="), ";")
	req := &Request{Pool: "web", HTTP: &fakeHTTP{cookies: map[string]string{"FULCRUM_web": v}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := p.Lookup(nil, req, t0); !ok {
			b.Fatal("miss")
		}
	}
}

func BenchmarkSourceAddrLookup(b *testing.B) {
	p := mustProfile(b, ProfileConfig{Name: "s", Type: "source_addr", Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128})
	tb := NewTable()
	req := &Request{Virtual: "vs", Pool: "web", Client: netip.MustParseAddr("192.0.2.1")}
	p.Record(tb, req, Target{Pool: "web", Member: ap("10.0.0.1:80")}, t0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := p.Lookup(tb, req, t0); !ok {
			b.Fatal("miss")
		}
	}
}
