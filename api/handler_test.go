package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// do runs one request against h and returns the recorder.
func do(t *testing.T, h http.Handler, method, target string, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body.String(), err)
	}
	return v
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, code int) {
	t.Helper()
	if rec.Code != code {
		t.Fatalf("status %d, want %d; body %s", rec.Code, code, rec.Body.String())
	}
}

// wantError checks a JSON error answer and returns it.
func wantError(t *testing.T, rec *httptest.ResponseRecorder, code int, contains string) ErrorResponse {
	t.Helper()
	wantStatus(t, rec, code)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	e := decode[ErrorResponse](t, rec)
	if !strings.Contains(e.Error, contains) {
		t.Errorf("error %q does not contain %q", e.Error, contains)
	}
	return e
}

func TestReadEndpoints(t *testing.T) {
	t.Parallel()
	h := NewHandler(newFake(), nil, Options{})

	t.Run("virtuals sorted by name", func(t *testing.T) {
		rec := do(t, h, "GET", "/api/v1/virtuals", "")
		wantStatus(t, rec, 200)
		vs := decode[[]VirtualStatus](t, rec)
		if len(vs) != 2 || vs[0].Name != "app_vs" || vs[1].Name != "web_vs" {
			t.Fatalf("virtuals %+v", vs)
		}
		if vs[1].BytesOut != 3<<20 || vs[1].Rejected != 1 || !vs[0].TLS {
			t.Errorf("fields lost: %+v", vs)
		}
	})
	t.Run("virtual json names", func(t *testing.T) {
		rec := do(t, h, "GET", "/api/v1/virtuals/web_vs", "")
		wantStatus(t, rec, 200)
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		for _, k := range []string{"name", "destination", "type", "pool", "persistence", "enabled", "tls",
			"availability", "active_connections", "total_connections", "requests", "bytes_in", "bytes_out",
			"errors", "rejected"} {
			if _, ok := m[k]; !ok {
				t.Errorf("virtual JSON lacks %q: %s", k, rec.Body.String())
			}
		}
	})
	t.Run("pools with members in backend order", func(t *testing.T) {
		rec := do(t, h, "GET", "/api/v1/pools", "")
		wantStatus(t, rec, 200)
		ps := decode[[]PoolStatus](t, rec)
		if len(ps) != 2 || ps[0].Name != "app" || ps[1].Name != "web" {
			t.Fatalf("pools %+v", ps)
		}
		if got := ps[1].Members[2].Address; got != "[::1]:8083" {
			t.Errorf("member order changed: third is %q", got)
		}
		// An empty pool's members and a member without monitors are [] in
		// JSON, never null, so dashboards and jq can iterate blindly.
		if !strings.Contains(rec.Body.String(), `"members":[]`) || !strings.Contains(rec.Body.String(), `"monitors":[]`) {
			t.Errorf("empty lists not rendered as []: %s", rec.Body.String())
		}
		// A zero Since is omitted rather than printed as year 1.
		if strings.Contains(rec.Body.String(), "0001-01-01") {
			t.Errorf("zero time leaked: %s", rec.Body.String())
		}
	})
	t.Run("pool", func(t *testing.T) {
		rec := do(t, h, "GET", "/api/v1/pools/web", "")
		wantStatus(t, rec, 200)
		p := decode[PoolStatus](t, rec)
		if p.Name != "web" || len(p.Members) != 3 || p.Members[0].Monitors[0].Monitor != "http" {
			t.Fatalf("pool %+v", p)
		}
		if !p.Members[0].Since.Equal(t0) {
			t.Errorf("since %v, want %v", p.Members[0].Since, t0)
		}
	})
	t.Run("member by escaped address", func(t *testing.T) {
		for _, target := range []string{
			"/api/v1/pools/web/members/127.0.0.1:8082",
			"/api/v1/pools/web/members/127.0.0.1%3A8082",
		} {
			rec := do(t, h, "GET", target, "")
			wantStatus(t, rec, 200)
			if m := decode[MemberStatus](t, rec); m.Address != "127.0.0.1:8082" || m.PassiveFailures != 4 {
				t.Errorf("%s: member %+v", target, m)
			}
		}
	})
	t.Run("ipv6 member, escaped and in non-canonical form", func(t *testing.T) {
		for _, target := range []string{
			"/api/v1/pools/web/members/%5B::1%5D:8083",
			"/api/v1/pools/web/members/%5B0:0:0:0:0:0:0:1%5D:8083",
		} {
			rec := do(t, h, "GET", target, "")
			wantStatus(t, rec, 200)
			if m := decode[MemberStatus](t, rec); m.Address != "[::1]:8083" {
				t.Errorf("%s: member %+v", target, m)
			}
		}
	})
	t.Run("HEAD works like GET", func(t *testing.T) {
		wantStatus(t, do(t, h, "HEAD", "/api/v1/pools", ""), 200)
	})
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	h := NewHandler(newFake(), nil, Options{})
	for _, tc := range []struct{ target, contains string }{
		{"/api/v1/virtuals/nope", `virtual server "nope" not found`},
		{"/api/v1/pools/nope", `pool "nope" not found`},
		{"/api/v1/pools/nope/members/127.0.0.1:8081", `pool "nope" not found`},
		{"/api/v1/pools/web/members/127.0.0.1:9", `member "127.0.0.1:9" not found in pool "web"`},
		{"/api/v2/pools", "no such endpoint"},
		{"/nothing", "no such endpoint"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			wantError(t, do(t, h, "GET", tc.target, ""), 404, tc.contains)
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	h := NewHandler(newFake(), nil, Options{})
	for _, tc := range []struct{ method, target, allow string }{
		{"DELETE", "/api/v1/pools", "GET, HEAD"},
		{"POST", "/api/v1/virtuals/web_vs", "GET, HEAD"},
		{"DELETE", "/api/v1/pools/web/members/127.0.0.1:8081", "GET, HEAD, PATCH, PUT"},
		{"PUT", "/api/v1/config", "GET, HEAD, POST"},
		{"GET", "/api/v1/persistence/k", "DELETE"},
		{"GET", "/api/v1/reload", "POST"},
		{"POST", "/", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			rec := do(t, h, tc.method, tc.target, "")
			wantError(t, rec, 405, "not allowed")
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	fb := newFake()
	h := NewHandler(fb, nil, Options{Token: token})
	for _, tc := range []struct {
		name, method, target, auth string
		want                       int
	}{
		{"healthz open", "GET", "/healthz", "", 200},
		{"dashboard page open", "GET", "/", "", 200},
		{"api without token", "GET", "/api/v1/pools", "", 401},
		{"api wrong token", "GET", "/api/v1/pools", "Bearer nope", 401},
		{"api token prefix only", "GET", "/api/v1/pools", "Bearer s3cret", 401},
		{"api basic scheme", "GET", "/api/v1/pools", "Basic " + token, 401},
		{"api right token", "GET", "/api/v1/pools", "Bearer " + token, 200},
		{"scheme is case-insensitive", "GET", "/api/v1/pools", "bearer " + token, 200},
		{"metrics without token", "GET", "/metrics", "", 401},
		{"metrics with token", "GET", "/metrics", "Bearer " + token, 200},
		{"reload without token", "POST", "/api/v1/reload", "", 401},
		{"unknown path without token", "GET", "/api/v1/secret", "", 401},
		{"POST / is not open", "POST", "/", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.auth != "" {
				hdr = []string{"Authorization", tc.auth}
			}
			rec := do(t, h, tc.method, tc.target, "", hdr...)
			wantStatus(t, rec, tc.want)
			if tc.want == 401 {
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				wantError(t, rec, 401, "bearer token")
			}
		})
	}
	if fb.reloads != 0 {
		t.Errorf("unauthenticated reload reached the backend (%d reloads)", fb.reloads)
	}
}

func TestSetMemberState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method, target, body string
		want                       int
		wantState                  string // state of the member afterwards ("" = unchanged check skipped)
		member                     string
		errContains                string
	}{
		{name: "PATCH disabled", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:8081",
			body: `{"state":"disabled"}`, want: 200, member: "127.0.0.1:8081", wantState: "disabled"},
		{name: "PUT force-offline alias", method: "PUT", target: "/api/v1/pools/web/members/127.0.0.1%3A8081",
			body: `{"state":"force-offline"}`, want: 200, member: "127.0.0.1:8081", wantState: "forced-offline"},
		{name: "PATCH enable ipv6", method: "PATCH", target: "/api/v1/pools/web/members/%5B::1%5D:8083",
			body: `{"state":"enable"}`, want: 200, member: "[::1]:8083", wantState: "enabled"},
		{name: "bad state word", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:8081",
			body: `{"state":"sleepy"}`, want: 400, member: "127.0.0.1:8081", wantState: "enabled",
			errContains: `state "sleepy": want enabled, disabled or forced-offline`},
		{name: "missing state", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:8081",
			body: `{}`, want: 400, errContains: `state ""`},
		{name: "unknown field", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:8081",
			body: `{"session":"user-disabled"}`, want: 400, member: "127.0.0.1:8081", wantState: "enabled",
			errContains: "unknown field"},
		{name: "not json", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:8081",
			body: `state=disabled`, want: 400, errContains: "JSON object"},
		{name: "two objects", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:8081",
			body: `{"state":"disabled"}{"state":"enabled"}`, want: 400, member: "127.0.0.1:8081", wantState: "enabled",
			errContains: "exactly one"},
		{name: "unknown pool", method: "PATCH", target: "/api/v1/pools/nope/members/127.0.0.1:8081",
			body: `{"state":"disabled"}`, want: 404, errContains: `pool "nope" not found`},
		{name: "unknown member", method: "PATCH", target: "/api/v1/pools/web/members/127.0.0.1:1",
			body: `{"state":"disabled"}`, want: 404, errContains: `member 127.0.0.1:1 in pool "web" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := newFake()
			rec := do(t, NewHandler(fb, nil, Options{}), tc.method, tc.target, tc.body, "Content-Type", "application/json")
			if tc.errContains != "" {
				e := wantError(t, rec, tc.want, tc.errContains)
				if strings.Contains(e.Error, "not found: ") || strings.HasSuffix(e.Error, ": not found") {
					t.Errorf("sentinel text not cleaned: %q", e.Error)
				}
			} else {
				wantStatus(t, rec, tc.want)
				if m := decode[MemberStatus](t, rec); m.Address != tc.member || m.State != tc.wantState {
					t.Errorf("answer %+v, want member %s state %s", m, tc.member, tc.wantState)
				}
			}
			if tc.member != "" {
				if got := fb.member("web", tc.member).State; got != tc.wantState {
					t.Errorf("backend state %q, want %q", got, tc.wantState)
				}
			}
		})
	}

	t.Run("backend bad request maps to 400", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		fb.setErr = fmt.Errorf("%w: member is a FQDN template", ErrBadRequest)
		rec := do(t, NewHandler(fb, nil, Options{}), "PATCH", "/api/v1/pools/web/members/127.0.0.1:8081", `{"state":"disabled"}`)
		e := wantError(t, rec, 400, "member is a FQDN template")
		if strings.Contains(e.Error, "bad request") {
			t.Errorf("sentinel text not cleaned: %q", e.Error)
		}
	})
	t.Run("backend failure maps to 500", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		fb.setErr = errors.New("disk on fire")
		rec := do(t, NewHandler(fb, nil, Options{}), "PATCH", "/api/v1/pools/web/members/127.0.0.1:8081", `{"state":"disabled"}`)
		wantError(t, rec, 500, "disk on fire")
	})
}

func TestConnectionsAndPersistenceQueries(t *testing.T) {
	t.Parallel()
	fb := newFake()
	h := NewHandler(fb, nil, Options{})

	rec := do(t, h, "GET", "/api/v1/connections?virtual=web_vs&pool=web&member=127.0.0.1:8081&client=192.0.2.7", "")
	wantStatus(t, rec, 200)
	cs := decode[[]ConnectionStatus](t, rec)
	if len(cs) != 1 || cs[0].ID != 1 || cs[0].IdleTimeoutSeconds != 300 {
		t.Fatalf("connections %+v", cs)
	}
	want := ConnQuery{Virtual: "web_vs", Pool: "web", Member: "127.0.0.1:8081", Client: "192.0.2.7", Limit: DefaultLimit}
	if fb.lastConnQuery != want {
		t.Errorf("backend got %+v, want %+v", fb.lastConnQuery, want)
	}
	for _, k := range []string{`"age_s":65`, `"idle_s":2.5`, `"server_local":"127.0.0.1:40000"`, `"virtual_addr"`} {
		if !strings.Contains(rec.Body.String(), k) {
			t.Errorf("connection JSON lacks %s: %s", k, rec.Body.String())
		}
	}

	// The API enforces the limit even when the backend returns more.
	rec = do(t, h, "GET", "/api/v1/connections?limit=1", "")
	if cs := decode[[]ConnectionStatus](t, rec); len(cs) != 1 || fb.lastConnQuery.Limit != 1 {
		t.Errorf("limit=1: %d rows, backend limit %d", len(cs), fb.lastConnQuery.Limit)
	}
	rec = do(t, h, "GET", "/api/v1/connections?limit=0", "")
	if cs := decode[[]ConnectionStatus](t, rec); len(cs) != 2 || fb.lastConnQuery.Limit != DefaultLimit {
		t.Errorf("limit=0: %d rows, backend limit %d", len(cs), fb.lastConnQuery.Limit)
	}

	// No match is [], not null.
	rec = do(t, h, "GET", "/api/v1/connections?virtual=none", "")
	wantStatus(t, rec, 200)
	if strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("empty answer %q, want []", rec.Body.String())
	}

	for _, tc := range []struct{ target, contains string }{
		{"/api/v1/connections?limit=abc", `limit "abc"`},
		{"/api/v1/connections?limit=-1", `limit "-1"`},
		{"/api/v1/connections?limit=100001", `limit "100001"`},
		{"/api/v1/connections?vritual=web_vs", `unknown query parameter "vritual"`},
		{"/api/v1/connections?pool=a&pool=b", `"pool" given 2 times`},
		{"/api/v1/persistence?memb=x", `unknown query parameter "memb"`},
		{"/api/v1/persistence?limit=x", `limit "x"`},
	} {
		wantError(t, do(t, h, "GET", tc.target, ""), 400, tc.contains)
	}

	rec = do(t, h, "GET", "/api/v1/persistence?virtual=web_vs&pool=web&profile=src&limit=5", "")
	wantStatus(t, rec, 200)
	ps := decode[[]PersistenceRecord](t, rec)
	if len(ps) != 1 || ps[0].Member != "127.0.0.1:8081" || !ps[0].Expires.Equal(t0.Add(180e9)) {
		t.Fatalf("persistence %+v", ps)
	}
	if want := (PersistQuery{Virtual: "web_vs", Pool: "web", Profile: "src", Limit: 5}); fb.lastPersistQuery != want {
		t.Errorf("backend got %+v, want %+v", fb.lastPersistQuery, want)
	}
	if !strings.Contains(rec.Body.String(), `"timeout_s":180`) {
		t.Errorf("persistence JSON lacks timeout_s: %s", rec.Body.String())
	}
}

func TestLoadConfigAndReload(t *testing.T) {
	t.Parallel()
	const yaml = "pools:\n  web:\n    members: [127.0.0.1:8081]\n"

	t.Run("applied", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		rec := do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", yaml, "Content-Type", "text/plain")
		wantStatus(t, rec, 200)
		if r := decode[ConfigResponse](t, rec); r.Status != "ok" || r.Persisted {
			t.Errorf("answer %+v", r)
		}
		if len(fb.loaded) != 1 || string(fb.loaded[0]) != yaml {
			t.Errorf("backend got %q", fb.loaded)
		}
	})
	t.Run("several problems", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		fb.loadErr = fmt.Errorf("%w: config.yaml:3: pools.web.members[0]: bad port\nconfig.yaml:9: virtuals.v.pool: no pool \"x\"\n", ErrBadRequest)
		rec := do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", yaml)
		e := wantError(t, rec, 400, "configuration rejected: 2 problems")
		want := []string{"config.yaml:3: pools.web.members[0]: bad port", `config.yaml:9: virtuals.v.pool: no pool "x"`}
		if fmt.Sprint(e.Problems) != fmt.Sprint(want) {
			t.Errorf("problems %q, want %q", e.Problems, want)
		}
	})
	t.Run("errors.Join shape", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		fb.loadErr = fmt.Errorf("invalid configuration: %w", errors.Join(ErrBadRequest, errors.New("line 1: not YAML")))
		rec := do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", yaml)
		e := wantError(t, rec, 400, "configuration rejected")
		if len(e.Problems) != 2 || e.Problems[1] != "line 1: not YAML" {
			// errors.Join puts the sentinel on its own line after the
			// prefix; the prefix line stays, the bare sentinel goes.
			t.Errorf("problems %q", e.Problems)
		}
	})
	t.Run("empty body", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		wantError(t, do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", " \n"), 400, "empty configuration")
		if len(fb.loaded) != 0 {
			t.Error("empty configuration reached the backend")
		}
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		big := strings.Repeat("#", MaxConfigBytes+1)
		wantError(t, do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", big), 413, "larger than")
		if len(fb.loaded) != 0 {
			t.Error("oversized configuration reached the backend")
		}
	})
	t.Run("backend failure is 500", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		fb.loadErr = errors.New("cannot bind 10.0.0.10:80: address in use")
		wantError(t, do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", yaml), 500, "address in use")
	})
	t.Run("reload", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		h := NewHandler(fb, nil, Options{})
		wantStatus(t, do(t, h, "POST", "/api/v1/reload", ""), 200)
		if fb.reloads != 1 {
			t.Errorf("reloads %d", fb.reloads)
		}
		fb.loadErr = fmt.Errorf("%w: /etc/fulcrum.yaml:4: unknown key \"pols\"", ErrBadRequest)
		e := wantError(t, do(t, h, "POST", "/api/v1/reload", ""), 400, `reload failed: /etc/fulcrum.yaml:4: unknown key "pols"`)
		if len(e.Problems) != 1 {
			t.Errorf("problems %q", e.Problems)
		}
	})
}

func TestCrossOriginWriteRefused(t *testing.T) {
	t.Parallel()
	fb := newFake()
	h := NewHandler(fb, nil, Options{})
	// A form on another site posting to a loopback API with no token.
	rec := do(t, h, "POST", "/api/v1/config", "pools: {}", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	wantError(t, rec, 403, "cross-origin")
	if len(fb.loaded) != 0 {
		t.Error("cross-origin configuration reached the backend")
	}
	// Same-origin (the dashboard) and non-browser clients pass.
	wantStatus(t, do(t, h, "PATCH", "/api/v1/pools/web/members/127.0.0.1:8081", `{"state":"disabled"}`, "Sec-Fetch-Site", "same-origin"), 200)
	// Cross-origin reads are harmless and allowed (the browser's CORS rules keep the answer from the page).
	wantStatus(t, do(t, h, "GET", "/api/v1/pools", "", "Sec-Fetch-Site", "cross-site"), 200)
}

func TestPanicBecomes500(t *testing.T) {
	t.Parallel()
	fb := newFake()
	fb.panicOnVirtuals = true
	wantError(t, do(t, NewHandler(fb, nil, Options{}), "GET", "/api/v1/virtuals", ""), 500, "internal error: boom")
}

func TestHealthzAndDashboard(t *testing.T) {
	t.Parallel()
	h := NewHandler(newFake(), nil, Options{Token: "x"})
	rec := do(t, h, "GET", "/healthz", "")
	wantStatus(t, rec, 200)
	if rec.Body.String() != "ok\n" {
		t.Errorf("healthz body %q", rec.Body.String())
	}

	rec = do(t, h, "GET", "/", "")
	wantStatus(t, rec, 200)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	page := rec.Body.String()
	for _, s := range []string{"/api/v1/pools", "/api/v1/virtuals", "Authorization", "Bearer ", "PATCH",
		"forced-offline", "POLL_MS = 2000"} {
		if !strings.Contains(page, s) {
			t.Errorf("dashboard lacks %q", s)
		}
	}
	// Self-contained: nothing loaded from elsewhere.
	for _, s := range []string{"src=", "http://", "https://", "@import"} {
		if strings.Contains(page, s) {
			t.Errorf("dashboard references external content (%q)", s)
		}
	}
	// The CSP must allow exactly this page's script, by hash.
	_, rest, _ := strings.Cut(page, "<script>")
	script, _, _ := strings.Cut(rest, "</script>")
	sum := sha256.Sum256([]byte(script))
	wantHash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src "+wantHash) || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q does not pin the script %s", csp, wantHash)
	}
	if strings.Count(page, "<script") != 1 {
		t.Error("dashboard must keep exactly one inline script (the CSP hashes it)")
	}
}

func TestErrorBodyIsValidJSONWithProblems(t *testing.T) {
	t.Parallel()
	fb := newFake()
	fb.loadErr = fmt.Errorf("%w: a\nb\nc", ErrBadRequest)
	rec := do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", "x: 1")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(rec.Body.Bytes()), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["error"]; !ok {
		t.Error("no error key")
	}
	if string(raw["problems"]) != `["a","b","c"]` {
		t.Errorf("problems %s", raw["problems"])
	}
}

func TestNotFoundMessage(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`not found: pool "web"`:                     `pool "web" not found`,
		`pool "web": not found`:                     `pool "web" not found`,
		`not found: member 10.0.0.1:80 in pool "p"`: `member 10.0.0.1:80 in pool "p" not found`,
		`pool "web" not found`:                      `pool "web" not found`,
		`not found`:                                 `not found`,
	} {
		if got := notFoundMessage(in); got != want {
			t.Errorf("notFoundMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectionDetailEndpoint(t *testing.T) {
	f := newFake()
	f.conns = []ConnectionStatus{{ID: 7, Virtual: "vs", Proto: "tcp", Client: "127.0.0.1:5000"}}
	srv := httptest.NewServer(NewHandler(f, nil, Options{}))
	defer srv.Close()
	c := &Client{Base: srv.URL}
	cd, err := c.Connection(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if cd.ID != 7 || cd.Virtual != "vs" || !strings.Contains(string(cd.Detail), `"profile":"tcp"`) {
		t.Errorf("connection detail: %+v %s", cd.ConnectionStatus, cd.Detail)
	}
	if _, err := c.Connection(context.Background(), 8); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing connection: err = %v, want not found", err)
	}
	resp, err := http.Get(srv.URL + "/api/v1/connections/abc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("non-numeric id: status %d", resp.StatusCode)
	}
}
