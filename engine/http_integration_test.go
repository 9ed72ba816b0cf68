package engine

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
)

func httpPoolYAML(port int, method, hashKey string, members ...*backend) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pools:\n  web:\n    lb_method: %s\n", method)
	if hashKey != "" {
		fmt.Fprintf(&b, "    hash_key: %s\n", hashKey)
	}
	b.WriteString("    members:\n")
	for i, m := range members {
		fmt.Fprintf(&b, "      - address: %s\n        ratio: %d\n", m.addr, i+1)
	}
	fmt.Fprintf(&b, "virtuals:\n  vs_web:\n    destination: 127.0.0.1:%d\n    type: http\n    pool: web\nmanagement:\n  address: \"off\"\n", port)
	return b.String()
}

func TestHTTPVirtualRoundRobinKeepAliveAndXFF(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	port := freePort(t)
	e := startEngine(t, httpPoolYAML(port, "round-robin", "", a, b))
	url := fmt.Sprintf("http://127.0.0.1:%d/x?y=1", port)
	c := httpClient(true)
	got := counts(t, c, url, 40)
	if got["a"] != 20 || got["b"] != 20 {
		t.Fatalf("round robin: %v, want 20/20", got)
	}
	// OneConnect: 40 requests over one client connection reuse server connections.
	if n := a.conns.Load() + b.conns.Load(); n > 4 {
		t.Errorf("server-side connections = %d for 40 keep-alive requests; want reuse (<= 4)", n)
	}
	r := a.lastRequest()
	if xff := r.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", xff)
	}
	if r.URL.RequestURI() != "/x?y=1" {
		t.Errorf("target = %q", r.URL.RequestURI())
	}
	vs := e.Virtuals()[0]
	if vs.Requests != 40 || vs.BytesIn == 0 || vs.BytesOut == 0 {
		t.Errorf("virtual stats: %+v", vs)
	}
	ps := e.Pools()[0]
	var reqs uint64
	for _, m := range ps.Members {
		reqs += m.Requests
	}
	if reqs != 40 {
		t.Errorf("member requests total = %d, want 40", reqs)
	}
	mfs, err := e.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "fulcrum_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				observed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed != 40 {
		t.Errorf("latency histogram has %d samples, want 40", observed)
	}
}

func TestHTTPLBMethodDistribution(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	cases := []struct {
		method, key string
		check       func(t *testing.T, got map[string]int)
	}{
		{"ratio", "", func(t *testing.T, got map[string]int) {
			// a has ratio 1, b ratio 2: exact with smooth weighted round robin.
			if got["a"] != 20 || got["b"] != 40 {
				t.Errorf("ratio 1:2 gave %v", got)
			}
		}},
		{"least-connections", "", func(t *testing.T, got map[string]int) {
			// Sequential requests find both idle; the key (active+1)/ratio
			// is 1/1 for a and 1/2 for b, so weighted least connections
			// always picks b. (The concurrent case is TestHTTPLeastConnections.)
			if got["b"] != 60 {
				t.Errorf("least-connections (ratio 1:2, idle members): %v, want all on b", got)
			}
		}},
		{"power-of-two", "", func(t *testing.T, got map[string]int) {
			// Two distinct draws from two members are always {a, b}; idle,
			// b's (active+1)/ratio of 1/2 beats a's 1/1.
			if got["b"] != 60 {
				t.Errorf("power-of-two (ratio 1:2, idle members): %v, want all on b", got)
			}
		}},
		{"consistent-hash", "uri", func(t *testing.T, got map[string]int) {
			if len(got) != 1 {
				t.Errorf("same URI went to several members: %v", got)
			}
		}},
		{"fastest", "", func(t *testing.T, got map[string]int) {
			if got["a"] == 0 && got["b"] == 0 {
				t.Errorf("no answers: %v", got)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			port := freePort(t)
			startEngine(t, httpPoolYAML(port, tc.method, tc.key, a, b))
			got := counts(t, httpClient(false), fmt.Sprintf("http://127.0.0.1:%d/same", port), 60)
			tc.check(t, got)
		})
	}
}

func TestHTTPFastestPrefersQuickMember(t *testing.T) {
	slow, quick := startBackend(t, "slow"), startBackend(t, "quick")
	slow.delay = 30 * time.Millisecond
	port := freePort(t)
	startEngine(t, httpPoolYAML(port, "fastest", "", slow, quick))
	got := counts(t, httpClient(false), fmt.Sprintf("http://127.0.0.1:%d/", port), 40)
	if got["quick"] <= got["slow"]*3 {
		t.Errorf("fastest: %v; want the quick member to take most requests", got)
	}
}

func TestHTTPConsistentHashSpreadsKeys(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	port := freePort(t)
	startEngine(t, httpPoolYAML(port, "consistent-hash", "query:user", a, b, c))
	cl := httpClient(false)
	first := map[string]string{}
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		u := fmt.Sprintf("user%d", i)
		body, _ := get(t, cl, fmt.Sprintf("http://127.0.0.1:%d/?user=%s", port, u))
		first[u] = body
		seen[body]++
	}
	if len(seen) < 3 {
		t.Errorf("60 keys mapped to %d members: %v", len(seen), seen)
	}
	for u, want := range first {
		if body, _ := get(t, cl, fmt.Sprintf("http://127.0.0.1:%d/?user=%s", port, u)); body != want {
			t.Fatalf("key %s moved from %s to %s", u, want, body)
		}
	}
}

func TestHTTPMonitorUpDown(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	port := freePort(t)
	e := startEngine(t, fmt.Sprintf(`
monitors:
  quick:
    type: http
    interval: 100ms
    timeout: 350ms
    status: [200]
pools:
  web:
    monitors: [quick]
    members:
      - address: %s
      - address: %s
virtuals:
  vs_web:
    destination: 127.0.0.1:%d
    type: http
    pool: web
management:
  address: "off"
`, a.addr, b.addr, port))
	health := func(addr string) string {
		for _, m := range e.Pools()[0].Members {
			if m.Address == addr {
				return m.Health
			}
		}
		return "?"
	}
	waitFor(t, "both members up", 5*time.Second, func() bool { return health(a.addr) == "up" && health(b.addr) == "up" })
	a.down.Store(true) // answers 500 now: the status rule fails
	waitFor(t, "member a down", 5*time.Second, func() bool { return health(a.addr) == "down" })
	if got := counts(t, httpClient(false), fmt.Sprintf("http://127.0.0.1:%d/", port), 10); got["b"] != 10 {
		t.Errorf("with a down: %v, want all on b", got)
	}
	for _, m := range e.Pools()[0].Members {
		if m.Address == a.addr && !strings.Contains(m.Reason, "500") {
			t.Errorf("down reason %q does not name the status", m.Reason)
		}
	}
	a.down.Store(false)
	waitFor(t, "member a back up", 5*time.Second, func() bool { return health(a.addr) == "up" })
	b.stop() // connection refused now
	waitFor(t, "member b down", 5*time.Second, func() bool { return health(b.addr) == "down" })
	if got := counts(t, httpClient(false), fmt.Sprintf("http://127.0.0.1:%d/", port), 6); got["a"] != 6 {
		t.Errorf("with b stopped: %v", got)
	}
	b.restart(t)
	waitFor(t, "member b back up", 5*time.Second, func() bool { return health(b.addr) == "up" })
}

func TestHTTPAllMembersDownGives503(t *testing.T) {
	a := startBackend(t, "a")
	port := freePort(t)
	e := startEngine(t, httpPoolYAML(port, "round-robin", "", a))
	if err := e.SetMemberState("web", a.addr, "forced-offline"); err != nil {
		t.Fatal(err)
	}
	body, resp := get(t, httpClient(false), fmt.Sprintf("http://127.0.0.1:%d/", port))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "no pool member") {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if e.Virtuals()[0].Availability != "offline" {
		t.Errorf("virtual availability %q", e.Virtuals()[0].Availability)
	}
}

func TestHTTPDeadBackendPassiveDetection(t *testing.T) {
	a := startBackend(t, "a")
	b := &backend{name: "b", addr: refusingAddr(t)} // connection refused
	port := freePort(t)
	e := startEngine(t, httpPoolYAML(port, "round-robin", "", a, b))
	c := httpClient(false)
	// Every request still succeeds: a failed connect is retried on another member.
	got := counts(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port), 10)
	if got["a"] != 10 {
		t.Fatalf("got %v", got)
	}
	var bm *struct{ avail, reason string }
	for _, m := range e.Pools()[0].Members {
		if m.Address == b.addr {
			bm = &struct{ avail, reason string }{m.Availability, m.Reason}
			if m.PassiveFailures == 0 {
				t.Errorf("no passive failures counted on the dead member")
			}
		}
	}
	if bm == nil || bm.avail != "offline" {
		t.Errorf("dead member after passive detection: %+v", bm)
	}
	// Only dead members: 502.
	e2port := freePort(t)
	startEngine(t, httpPoolYAML(e2port, "round-robin", "", &backend{name: "dead", addr: refusingAddr(t)}))
	_, resp := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", e2port))
	if resp.StatusCode != 502 && resp.StatusCode != 503 {
		t.Errorf("dead pool: status %d, want 502/503", resp.StatusCode)
	}
}

func TestMemberStatesAndPersistence(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	port := freePort(t)
	e := startEngine(t, fmt.Sprintf(`
pools:
  web:
    members:
      - address: %s
      - address: %s
virtuals:
  vs_web:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    persistence: cookie_insert
management:
  address: "off"
`, a.addr, b.addr, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	c := httpClient(false)
	first, resp := get(t, c, url)
	var cookie string
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "FULCRUM_web=") {
			cookie = strings.SplitN(strings.SplitN(sc, ";", 2)[0], "=", 2)[1]
		}
	}
	if cookie == "" {
		t.Fatalf("no persistence cookie in %v", resp.Header)
	}
	for i := 0; i < 10; i++ {
		if body, _ := get(t, c, url, "Cookie", "FULCRUM_web="+cookie); body != first {
			t.Fatalf("request %d with cookie went to %s, want %s", i, body, first)
		}
	}
	// A tampered cookie is ignored (balanced normally, never an error).
	if _, resp := get(t, c, url, "Cookie", "FULCRUM_web=x"+cookie[1:]); resp.StatusCode != 200 {
		t.Fatalf("tampered cookie: status %d", resp.StatusCode)
	}
	firstAddr, otherAddr := a.addr, b.addr
	if first == "b" {
		firstAddr, otherAddr = b.addr, a.addr
	}
	_ = otherAddr
	// Disabled: no new clients, but persisted ones still go there.
	if err := e.SetMemberState("web", firstAddr, "disabled"); err != nil {
		t.Fatal(err)
	}
	if got := counts(t, c, url, 6); got[first] != 0 {
		t.Errorf("disabled member got new clients: %v", got)
	}
	if body, _ := get(t, c, url, "Cookie", "FULCRUM_web="+cookie); body != first {
		t.Errorf("persisted client left a disabled member: went to %s", body)
	}
	// Forced offline: not even persisted clients; the cookie is re-issued.
	if err := e.SetMemberState("web", firstAddr, "forced-offline"); err != nil {
		t.Fatal(err)
	}
	body, resp := get(t, c, url, "Cookie", "FULCRUM_web="+cookie)
	if body == first {
		t.Errorf("persisted client still sent to a forced-offline member")
	}
	if len(resp.Header.Values("Set-Cookie")) == 0 {
		t.Errorf("no new cookie after moving the client")
	}
	if err := e.SetMemberState("web", firstAddr, "enabled"); err != nil {
		t.Fatal(err)
	}
	if err := e.SetMemberState("web", "127.0.0.1:1", "enabled"); err == nil {
		t.Errorf("unknown member accepted")
	}
	if err := e.SetMemberState("web", firstAddr, "sideways"); err == nil {
		t.Errorf("bad state accepted")
	}
}

func TestPersistenceSourceUniversalPassive(t *testing.T) {
	a, b, c3 := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	port, port2, port3 := freePort(t), freePort(t), freePort(t)
	startEngine(t, fmt.Sprintf(`
profiles:
  persistence:
    by_header:
      type: universal
      key: header:X-Session
    app_cookie:
      type: cookie_passive
      cookie_name: APPSESSION
pools:
  web:
    members:
      - address: %s
      - address: %s
      - address: %s
virtuals:
  vs_src:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    persistence: source_addr
  vs_uni:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    persistence: by_header
  vs_passive:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    persistence: app_cookie
management:
  address: "off"
`, a.addr, b.addr, c3.addr, port, port2, port3))
	c := httpClient(false)
	if got := counts(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port), 9); len(got) != 1 {
		t.Errorf("source_addr: one client spread over %v", got)
	}
	uni := fmt.Sprintf("http://127.0.0.1:%d/", port2)
	for _, s := range []string{"s1", "s2", "s3"} {
		want, _ := get(t, c, uni, "X-Session", s)
		for i := 0; i < 4; i++ {
			if body, _ := get(t, c, uni, "X-Session", s); body != want {
				t.Fatalf("universal key %s moved %s -> %s", s, want, body)
			}
		}
	}
	pas := fmt.Sprintf("http://127.0.0.1:%d/", port3)
	owner, _ := get(t, c, pas+"?setcookie=abc")
	for i := 0; i < 6; i++ {
		if body, _ := get(t, c, pas, "Cookie", "APPSESSION=abc"); body != owner {
			t.Fatalf("cookie_passive: learned session moved %s -> %s", owner, body)
		}
	}
}

func TestPersistenceAcrossHTTPAndHTTPS(t *testing.T) {
	a, b, c3 := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "localhost")
	port, sport := freePort(t), freePort(t)
	e := startEngine(t, fmt.Sprintf(`
profiles:
  client_ssl:
    tls:
      cert: %s
      key: %s
  persistence:
    shared_src:
      type: source_addr
      match_across_virtuals: true
pools:
  web:
    members:
      - address: %s
      - address: %s
      - address: %s
virtuals:
  vs_http:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    persistence: shared_src
  vs_https:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    client_ssl: tls
    persistence: shared_src
management:
  address: "off"
`, cert, key, a.addr, b.addr, c3.addr, port, sport))
	c := httpClient(false)
	first, _ := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port))
	for i := 0; i < 6; i++ {
		body, resp := get(t, c, fmt.Sprintf("https://127.0.0.1:%d/", sport))
		if resp.TLS == nil {
			t.Fatal("HTTPS virtual did not speak TLS")
		}
		if body != first {
			t.Fatalf("HTTPS request %d went to %s; HTTP went to %s", i, body, first)
		}
	}
	if n := len(e.Persistence(api.PersistQuery{})); n != 1 {
		t.Errorf("persistence records = %d, want 1 shared record", n)
	}
}

func TestHTTPBadInput(t *testing.T) {
	a := startBackend(t, "a")
	port := freePort(t)
	e := startEngine(t, fmt.Sprintf(`
profiles:
  http:
    strict:
      max_header_size: 2KiB
      max_header_count: 10
      header_timeout: 300ms
pools:
  web:
    members:
      - address: %s
virtuals:
  vs_web:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    http_profile: strict
management:
  address: "off"
`, a.addr, port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cases := []struct {
		name, raw, want string
	}{
		{"garbage", "HELLO\r\n\r\n", "HTTP/1.1 400"},
		{"smuggling CL+TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 4096) + "\r\n\r\n", "HTTP/1.1 431"},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 20) + "\r\n", "HTTP/1.1 431"},
		{"bad version", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"slowloris", "GET / HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 408"},
	}
	for _, tc := range cases {
		got := rawRequest(t, addr, tc.raw, 3*time.Second)
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: reply %q, want %s", tc.name, firstLine(got), tc.want)
		}
		if !strings.Contains(got, "Connection: close") {
			t.Errorf("%s: reply does not close the connection", tc.name)
		}
	}
	if a.hits.Load() != 0 {
		t.Errorf("bad requests reached the backend %d times", a.hits.Load())
	}
	if r := e.Virtuals()[0].Rejected; r != uint64(len(cases)) {
		t.Errorf("rejected = %d, want %d", r, len(cases))
	}
	// The proxy still works afterwards.
	if body, _ := get(t, httpClient(false), "http://"+addr+"/"); body != "a" {
		t.Errorf("after bad input: %q", body)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func TestHTTPLeastConnectionsUnderConcurrency(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	a.delay, b.delay = 10*time.Millisecond, 100*time.Millisecond // b holds its connections longer
	port := freePort(t)
	startEngine(t, httpPoolYAML(port, "least-connections", "", a, b))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	c := httpClient(false)
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	// b (ratio 2) is slow, so it keeps connections open and the fast a must
	// take more requests than its ratio share of one third.
	if ha, hb := a.hits.Load(), b.hits.Load(); ha+hb != 60 || ha <= hb {
		t.Errorf("least-connections under load: a=%d b=%d; want the quick member a to take more", ha, hb)
	}
}
