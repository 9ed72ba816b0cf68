package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T, fb *fakeBackend, token string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(fb, nil, Options{Token: token}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientRoundTrips(t *testing.T) {
	t.Parallel()
	fb := newFake()
	srv := newServer(t, fb, "tok")
	c := &Client{Base: srv.URL, Token: "tok", HTTP: srv.Client()}
	ctx := context.Background()

	vs, err := c.Virtuals(ctx)
	if err != nil || len(vs) != 2 || vs[1].Name != "web_vs" || vs[1].BytesOut != 3<<20 {
		t.Fatalf("Virtuals: %+v, %v", vs, err)
	}
	v, err := c.Virtual(ctx, "app_vs")
	if err != nil || !v.TLS || v.Availability != "offline" {
		t.Fatalf("Virtual: %+v, %v", v, err)
	}
	ps, err := c.Pools(ctx)
	if err != nil || len(ps) != 2 || len(ps[1].Members) != 3 || !ps[1].Members[0].Since.Equal(t0) {
		t.Fatalf("Pools: %+v, %v", ps, err)
	}
	if ps[1].Members[0].Monitors[0].LatencyNS != 1e6 {
		t.Errorf("monitor latency lost: %+v", ps[1].Members[0].Monitors)
	}
	p, err := c.Pool(ctx, "web")
	if err != nil || p.Method != "round-robin" {
		t.Fatalf("Pool: %+v, %v", p, err)
	}
	m, err := c.Member(ctx, "web", "[::1]:8083")
	if err != nil || m.Health != "down" {
		t.Fatalf("Member ipv6: %+v, %v", m, err)
	}

	cs, err := c.Connections(ctx, ConnQuery{Virtual: "web_vs", Client: "192.0.2.7", Limit: 7})
	if err != nil || len(cs) != 1 || cs[0].BytesOut != 5<<20 || !cs[0].Created.Equal(t0) {
		t.Fatalf("Connections: %+v, %v", cs, err)
	}
	if want := (ConnQuery{Virtual: "web_vs", Client: "192.0.2.7", Limit: 7}); fb.lastConnQuery != want {
		t.Errorf("backend query %+v, want %+v", fb.lastConnQuery, want)
	}
	pr, err := c.Persistence(ctx, PersistQuery{Profile: "src"})
	if err != nil || len(pr) != 1 || pr[0].TimeoutSeconds != 180 {
		t.Fatalf("Persistence: %+v, %v", pr, err)
	}

	if err := c.SetMemberState(ctx, "web", "[::1]:8083", "force-offline"); err != nil {
		t.Fatal(err)
	}
	if got := fb.member("web", "[::1]:8083").State; got != "forced-offline" {
		t.Errorf("state %q", got)
	}
	if _, err := c.LoadConfig(ctx, []byte("pools: {}\n")); err != nil || len(fb.loaded) != 1 {
		t.Fatalf("LoadConfig: %v (%d loads)", err, len(fb.loaded))
	}
	if err := c.Reload(ctx); err != nil || fb.reloads != 1 {
		t.Fatalf("Reload: %v (%d reloads)", err, fb.reloads)
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	fb := newFake()
	srv := newServer(t, fb, "tok")
	ctx := context.Background()
	c := &Client{Base: srv.URL, Token: "tok"}

	_, err := c.Pool(ctx, "nope")
	if !errors.Is(err, ErrNotFound) || err.Error() != `pool "nope" not found` {
		t.Errorf("unknown pool: %v", err)
	}
	if err := c.SetMemberState(ctx, "web", "127.0.0.1:8081", "asleep"); !errors.Is(err, ErrBadRequest) {
		t.Errorf("bad state: %v", err)
	}

	fb.mu.Lock()
	fb.loadErr = fmt.Errorf("%w: f.yaml:1: one\nf.yaml:2: two", ErrBadRequest)
	fb.mu.Unlock()
	_, err = c.LoadConfig(ctx, []byte("x: 1"))
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok || !errors.Is(err, ErrBadRequest) || apiErr.StatusCode != 400 {
		t.Fatalf("config error: %#v", err)
	}
	if want := []string{"f.yaml:1: one", "f.yaml:2: two"}; fmt.Sprint(apiErr.Problems) != fmt.Sprint(want) {
		t.Errorf("problems %q", apiErr.Problems)
	}
	if want := "configuration rejected: 2 problems\n  f.yaml:1: one\n  f.yaml:2: two"; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	err = c.Reload(ctx)
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("reload error: %v", err)
	}

	noToken := &Client{Base: srv.URL}
	if _, err := noToken.Pools(ctx); !errors.Is(err, ErrUnauthorized) || IsUnreachable(err) {
		t.Errorf("without token: %v", err)
	}
}

func TestClientNonJSONError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream proxy says no", http.StatusBadGateway)
	}))
	defer srv.Close()
	_, err := (&Client{Base: srv.URL}).Pools(context.Background())
	if err == nil || !strings.Contains(err.Error(), "502 Bad Gateway: upstream proxy says no") {
		t.Errorf("error %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = (&Client{Base: addr}).Virtuals(ctx)
	if err == nil || !IsUnreachable(err) {
		t.Fatalf("error %v, want unreachable", err)
	}
	if IsUnreachable(nil) {
		t.Error("nil is not unreachable")
	}
}

func TestNormalizeBase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, err string }{
		{"", DefaultBase, ""},
		{"127.0.0.1:9090", "http://127.0.0.1:9090", ""},
		{"localhost:9090", "http://localhost:9090", ""},
		{":9191", "http://127.0.0.1:9191", ""},
		{"[::1]:9090", "http://[::1]:9090", ""},
		{"https://lb1.example:8443/", "https://lb1.example:8443", ""},
		{"http://lb1:9090/fulcrum/", "http://lb1:9090/fulcrum", ""},
		{" http://x:1 ", "http://x:1", ""},
		{"ftp://x:1", "", "scheme must be http or https"},
		{"http://", "", "no host"},
		{"http://x:1/?a=b", "", "query"},
	} {
		got, err := NormalizeBase(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeBase(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeBase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeState(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"enable": "enabled", "enabled": "enabled", "disable": "disabled", "disabled": "disabled",
		"force-offline": "forced-offline", "forced-offline": "forced-offline", "forced_offline": "forced-offline",
		"offline": "forced-offline", "": "", "Enabled": "", "user-disabled": "",
	} {
		got, ok := NormalizeState(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeState(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
