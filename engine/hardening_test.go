package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
)

// These are regression tests for issue 7: each one reproduces an attack or a
// fault that the proxy used to mishandle.

// rawServer accepts connections on loopback and hands each to serve.
type rawServer struct {
	ln    net.Listener
	addr  string
	conns atomic.Int64
	wg    sync.WaitGroup
	open  sync.Map
}

// kill closes the listener and every open connection: the member is gone.
func (s *rawServer) kill() {
	s.ln.Close()
	s.open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
}

func startRawServer(t *testing.T, serve func(c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, addr: ln.Addr().String()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.open.Store(c, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.open.Delete(c)
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		s.kill()
		s.wg.Wait()
	})
	return s
}

// echoPathServer answers every request on a keep-alive connection with its
// method and path as the body; it records the paths it saw.
type echoPathServer struct {
	*rawServer
	mu    sync.Mutex
	paths []string
	// after, if set, runs after each response (to misbehave).
	after func(c net.Conn, req *http.Request)
}

func startEchoPathServer(t *testing.T, after func(c net.Conn, req *http.Request)) *echoPathServer {
	s := &echoPathServer{after: after}
	s.rawServer = startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			s.mu.Lock()
			s.paths = append(s.paths, req.URL.Path)
			s.mu.Unlock()
			msg := req.Method + " " + req.URL.Path + " " + fmt.Sprint(len(body))
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
			if s.after != nil {
				s.after(c, req)
			}
		}
	})
	return s
}

func (s *echoPathServer) saw(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.paths {
		if p == path {
			return true
		}
	}
	return false
}

// vsConf is the configuration most of these tests need: pool "web" and
// virtual "vs" on 127.0.0.1:port, the management API off.
type vsConf struct {
	typ     string   // virtual type (default http)
	members []string // member addresses
	top     string   // top-level sections before the pool (profiles, limits)
	pool    string   // lines under the pool, indented four spaces
	vs      string   // lines under the virtual, indented four spaces
}

func (c vsConf) yaml(port int) string {
	var b strings.Builder
	b.WriteString(c.top)
	b.WriteString("pools:\n  web:\n")
	b.WriteString(c.pool)
	b.WriteString("    members:\n")
	for _, m := range c.members {
		fmt.Fprintf(&b, "      - address: %s\n", m)
	}
	typ := c.typ
	if typ == "" {
		typ = "http"
	}
	fmt.Fprintf(&b, "virtuals:\n  vs:\n    destination: 127.0.0.1:%d\n    type: %s\n    pool: web\n%s", port, typ, c.vs)
	b.WriteString("management:\n  address: \"off\"\n")
	return b.String()
}

func oneMemberYAML(port int, member string) string {
	return vsConf{members: []string{member}}.yaml(port)
}

// rawExchange writes raw on a new connection and returns the first response
// (status line and body, read with net/http's parser).
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Item 1: "Connection: Content-Length" must not strip the framing after it
// was decided. The body would become a second request on the shared server
// connection, and its response would go to the next client.
func TestConnectionTokensNeverRemoveFraming(t *testing.T) {
	for _, tok := range []string{"Content-Length", "content-length, keep-alive", "Host"} {
		t.Run(tok, func(t *testing.T) {
			srv := startEchoPathServer(t, nil)
			port := freePort(t)
			startEngine(t, oneMemberYAML(port, srv.addr))
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
			raw := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: v\r\nConnection: %s\r\nContent-Length: %d\r\n\r\n%s", tok, len(smuggled), smuggled)
			resp, body := rawExchange(t, addr, raw)
			if resp.StatusCode != 200 || body != fmt.Sprintf("POST /upload %d", len(smuggled)) {
				t.Fatalf("attacker's own response: %d %q", resp.StatusCode, body)
			}
			// Another client, whose request reuses the server connection.
			time.Sleep(50 * time.Millisecond)
			resp, body = rawExchange(t, addr, "GET /victim HTTP/1.1\r\nHost: v\r\n\r\n")
			if body != "GET /victim 0" {
				t.Fatalf("second client got %q (status %d): someone else's response", body, resp.StatusCode)
			}
			if srv.saw("/smuggled") {
				t.Fatal("the member saw the smuggled request")
			}
			if n := srv.conns.Load(); n != 1 {
				t.Fatalf("the member saw %d connections: the second client did not reuse the server connection, so the cross-client case was not tested", n)
			}
		})
	}
}

// Item 2: bytes a member sends on an idle pooled connection (an unsolicited
// response, a HEAD response's stray body) must never become the next
// client's response.
func TestIdleServerConnectionWithUnreadDataIsNotReused(t *testing.T) {
	cases := map[string]func(c net.Conn, req *http.Request){
		"unsolicited response": func(c net.Conn, req *http.Request) {
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON")
		},
		"stray bytes": func(c net.Conn, req *http.Request) {
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, "POISON")
		},
	}
	for name, after := range cases {
		t.Run(name, func(t *testing.T) {
			srv := startEchoPathServer(t, after)
			port := freePort(t)
			startEngine(t, oneMemberYAML(port, srv.addr))
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			for i := range 3 {
				path := fmt.Sprintf("/c%d", i)
				_, body := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: v\r\n\r\n")
				if body != "GET "+path+" 0" {
					t.Fatalf("client %d got %q", i, body)
				}
				time.Sleep(100 * time.Millisecond) // the member misbehaves while the connection idles
			}
		})
	}
}

// Item 2: a HEAD response whose member also sends a body poisons only that
// connection.
func TestHeadResponseWithStrayBody(t *testing.T) {
	srv := startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method == "HEAD" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n")
				time.Sleep(20 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX")
				continue
			}
			msg := "path " + req.URL.Path
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
		}
	})
	port := freePort(t)
	startEngine(t, oneMemberYAML(port, srv.addr))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: v\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	time.Sleep(100 * time.Millisecond)
	_, body := rawExchange(t, addr, "GET /next HTTP/1.1\r\nHost: v\r\n\r\n")
	if body != "path /next" {
		t.Fatalf("next client got %q", body)
	}
}

// passiveYAML is vsConf with passive detection (2 failures, 30 s).
func passiveYAML(port int, members []string, vs string) string {
	return vsConf{members: members, vs: vs,
		pool: "    passive:\n      enabled: true\n      failures: 2\n      retry_time: 30s\n"}.yaml(port)
}

func memberStatus(t *testing.T, e *Engine, pool string) (available bool, errors uint64, active int64) {
	t.Helper()
	for _, p := range e.Pools() {
		if p.Name != pool {
			continue
		}
		for _, m := range p.Members {
			return m.Availability == "available" || m.Availability == "unknown", m.Errors, m.Active
		}
	}
	t.Fatalf("pool %s not found", pool)
	return
}

// Item 3: clients that break their own request bodies are answered and
// counted as client errors; the member keeps its health and a clean error
// count.
func TestClientFaultsAreNotChargedToMembers(t *testing.T) {
	srv := startEchoPathServer(t, nil)
	port := freePort(t)
	e := startEngine(t, passiveYAML(port, []string{srv.addr}, "    idle_timeout: 1s\n"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	st := e.Listener("vs").Plan().Stats

	// Content-Length: 100000, a few bytes, then hang up.
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /up HTTP/1.1\r\nHost: v\r\nContent-Length: 100000\r\n\r\nonly a few bytes")
		time.Sleep(30 * time.Millisecond)
		c.Close()
	}
	// Malformed chunked body.
	resp, _ := rawExchange(t, addr, "POST /up HTTP/1.1\r\nHost: v\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nbad\r\n0\r\n\r\n")
	if resp.StatusCode != 400 {
		t.Fatalf("malformed chunked body: status %d, want 400", resp.StatusCode)
	}
	// A slow POST that stalls longer than the idle timeout.
	resp, _ = rawExchange(t, addr, "POST /up HTTP/1.1\r\nHost: v\r\nContent-Length: 10\r\n\r\nabc")
	if resp.StatusCode != 408 {
		t.Fatalf("stalled body: status %d, want 408", resp.StatusCode)
	}
	waitFor(t, "member slots released", 2*time.Second, func() bool {
		_, _, active := memberStatus(t, e, "web")
		return active == 0
	})
	avail, errs, _ := memberStatus(t, e, "web")
	if !avail || errs != 0 {
		t.Fatalf("member charged for client faults: available=%v errors=%d", avail, errs)
	}
	if n := st.ClientErrors.Load(); n < 7 {
		t.Fatalf("client errors counted %d, want >= 7", n)
	}
	if vs := e.Virtuals(); len(vs) != 1 || vs[0].ClientErrors != st.ClientErrors.Load() {
		t.Fatalf("the API does not show the client errors: %+v", vs)
	}
	if n := st.Errors.Load(); n != 0 {
		t.Fatalf("virtual errors %d, want 0 (all faults were the clients')", n)
	}
	_, body := rawExchange(t, addr, "GET /ok HTTP/1.1\r\nHost: v\r\n\r\n")
	if body != "GET /ok 0" {
		t.Fatalf("healthy member no longer serves: %q", body)
	}
}

// Item 3: Fulcrum's own resource exhaustion (here EMFILE, injected at the
// dialer) is answered 503 and never marks the member down.
func TestLocalResourceErrorsAreNotChargedToMembers(t *testing.T) {
	srv := startEchoPathServer(t, nil)
	port := freePort(t)
	e := startEngine(t, passiveYAML(port, []string{srv.addr}, ""))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var fail atomic.Bool
	fail.Store(true)
	// Publish a copy of the plan with a failing dialer (plans are
	// read-only once published).
	l := e.Listener("vs")
	p := *l.Plan()
	p.DialContext = func(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
		if fail.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.EMFILE}
		}
		return d.DialContext(ctx, network, address)
	}
	l.Swap(&p)
	for range 5 {
		resp, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: v\r\n\r\n")
		if resp.StatusCode != 503 {
			t.Fatalf("status %d, want 503", resp.StatusCode)
		}
	}
	avail, errs, active := memberStatus(t, e, "web")
	if !avail || errs != 0 || active != 0 {
		t.Fatalf("member charged for EMFILE: available=%v errors=%d active=%d", avail, errs, active)
	}
	fail.Store(false)
	if _, body := rawExchange(t, addr, "GET /ok HTTP/1.1\r\nHost: v\r\n\r\n"); body != "GET /ok 0" {
		t.Fatalf("after the resource came back: %q", body)
	}
}

// Item 4: the idle timeout is idle time, not a total: an upload and a
// download that keep moving for three idle timeouts complete.
func TestLongActiveTransfersOutliveIdleTimeout(t *testing.T) {
	srv := startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, req.Body)
			if req.URL.Path == "/download" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 30000\r\n\r\n")
				for range 30 {
					time.Sleep(100 * time.Millisecond)
					c.Write(make([]byte, 1000))
				}
				continue
			}
			msg := fmt.Sprint(n)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
		}
	})
	port := freePort(t)
	startEngine(t, passiveYAML(port, []string{srv.addr}, "    idle_timeout: 1s\n"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: v\r\nContent-Length: 30000\r\n\r\n")
	for range 30 {
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write(make([]byte, 1000)); err != nil {
			t.Fatalf("upload cut after a while: %v", err)
		}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "30000" {
		t.Fatalf("3 s upload under a 1 s idle timeout: %d %q", resp.StatusCode, b)
	}

	resp, body := rawExchange(t, addr, "GET /download HTTP/1.1\r\nHost: v\r\n\r\n")
	if resp.StatusCode != 200 || len(body) != 30000 {
		t.Fatalf("3 s download under a 1 s idle timeout: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// Item 5: a member that answers before reading a large body (401, 413)
// has its answer forwarded, and is not charged.
func TestEarlyResponseToUploadIsForwarded(t *testing.T) {
	for _, closeAfter := range []bool{true, false} {
		t.Run(fmt.Sprintf("member closes=%v", closeAfter), func(t *testing.T) {
			srv := startRawServer(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n")
				if !closeAfter {
					time.Sleep(5 * time.Second) // keeps the connection, reads nothing
				}
			})
			port := freePort(t)
			e := startEngine(t, passiveYAML(port, []string{srv.addr}, ""))
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(4 * time.Second))
			const size = 8 << 20
			go func() {
				io.WriteString(c, fmt.Sprintf("PUT /big HTTP/1.1\r\nHost: v\r\nContent-Length: %d\r\n\r\n", size))
				c.Write(make([]byte, size))
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || string(b) != "too big\n" {
				t.Fatalf("got %d %q, want the member's 413", resp.StatusCode, b)
			}
			avail, errs, _ := memberStatus(t, e, "web")
			if !avail || errs != 0 {
				t.Fatalf("member charged for answering early: available=%v errors=%d", avail, errs)
			}
		})
	}
}

// Item 8: after the active priority group's members die, a request reselects
// into the standby group, and the dead members' slot counts return to 0.
func TestReselectMovesToNextPriorityGroupAndReleasesSlots(t *testing.T) {
	standby := startEchoPathServer(t, nil)
	dead1, dead2 := closedPort(t), closedPort(t)
	port := freePort(t)
	e := startEngine(t, fmtYAML(`
pools:
  web:
    lb_method: least-connections
    min_active_members: 1
    members:
      - address: %s
        priority: 10
      - address: %s
        priority: 10
      - address: %s
        priority: 1
virtuals:
  vs:
    destination: 127.0.0.1:%d
    type: http
    pool: web
management:
  address: "off"
`, dead1, dead2, standby.addr, port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := range 4 {
		resp, body := rawExchange(t, addr, fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: v\r\n\r\n", i))
		if resp.StatusCode != 200 || body != fmt.Sprintf("GET /r%d 0", i) {
			t.Fatalf("request %d: %d %q (standby group healthy)", i, resp.StatusCode, body)
		}
	}
	waitFor(t, "every member's active count back to 0", 2*time.Second, func() bool {
		for _, p := range e.Pools() {
			for _, m := range p.Members {
				if m.Active != 0 {
					return false
				}
			}
		}
		return true
	})
}

// Item 8: a persisted member that refuses the connection: the client is
// re-balanced and re-persisted (redispatch), with no error.
func TestPersistedMemberRefusingIsRedispatched(t *testing.T) {
	for _, typ := range []string{"http", "tcp"} {
		t.Run(typ, func(t *testing.T) {
			a := startEchoPathServer(t, nil)
			b := startEchoPathServer(t, nil)
			port := freePort(t)
			e := startEngine(t, vsConf{typ: typ, members: []string{a.addr, b.addr}, vs: "    persistence: source_addr\n"}.yaml(port))
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			rawExchange(t, addr, "GET /first HTTP/1.1\r\nHost: v\r\n\r\n")
			first, other := a, b
			if b.saw("/first") {
				first, other = b, a
			}
			first.kill() // the persisted member now refuses connections
			resp, body := rawExchange(t, addr, "GET /second HTTP/1.1\r\nHost: v\r\n\r\n")
			if resp.StatusCode != 200 || body != "GET /second 0" || !other.saw("/second") {
				t.Fatalf("persisted member refused: got %d %q", resp.StatusCode, body)
			}
			recs := e.Persistence(api.PersistQuery{})
			if len(recs) != 1 || recs[0].Member != other.addr {
				t.Fatalf("not re-persisted to %s: %+v", other.addr, recs)
			}
		})
	}
}

// closedPort is a loopback address that refuses connections.
func closedPort(t *testing.T) string { return refusingAddr(t) }

// Item 10: absolute-form targets set Host; no 1xx to HTTP/1.0 clients; an
// unrequested 101 is a 502; error bodies name no internal package.
func TestHTTPProtocolPoints(t *testing.T) {
	var lastHost atomic.Value
	srv := startRawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			lastHost.Store(req.Host)
			switch req.URL.Path {
			case "/interim":
				io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
			case "/switch":
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	port := freePort(t)
	startEngine(t, oneMemberYAML(port, srv.addr))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	resp, _ := rawExchange(t, addr, "GET http://real.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n")
	if resp.StatusCode != 200 || lastHost.Load() != "real.example" {
		t.Fatalf("absolute-form: status %d, member saw Host %v, want real.example", resp.StatusCode, lastHost.Load())
	}
	reply := rawRequest(t, addr, "GET /interim HTTP/1.0\r\nHost: v\r\n\r\n", 3*time.Second)
	if strings.Contains(reply, "103") || !strings.HasPrefix(reply, "HTTP/1.1 200") {
		t.Fatalf("HTTP/1.0 client got an interim response: %q", reply)
	}
	reply = rawRequest(t, addr, "GET /interim HTTP/1.1\r\nHost: v\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.HasPrefix(reply, "HTTP/1.1 103") {
		t.Fatalf("HTTP/1.1 client did not get the 103: %q", reply)
	}
	resp, _ = rawExchange(t, addr, "GET /switch HTTP/1.1\r\nHost: v\r\n\r\n")
	if resp.StatusCode != 502 {
		t.Fatalf("unrequested 101: status %d, want 502", resp.StatusCode)
	}
	_, body := rawExchange(t, addr, "GET / HTTP/1.1\r\n\r\n")
	if strings.Contains(body, "h1") || !strings.Contains(body, "Host") {
		t.Fatalf("error body names internals or says nothing: %q", body)
	}
}

// Item 2: idle server connections are keyed on everything that makes them
// interchangeable: after a reload that changes the server-ssl profile, a
// request never rides a connection made under the old one.
func TestReloadChangingServerSSLDoesNotReuseOldConnections(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.ServerName)
	}))
	ts.StartTLS()
	t.Cleanup(ts.Close)
	port := freePort(t)
	yaml := func(sni string) string {
		return vsConf{members: []string{strings.TrimPrefix(ts.URL, "https://")}, vs: "    server_ssl: back\n",
			top: "profiles:\n  server_ssl:\n    back:\n      server_name: " + sni + "\n"}.yaml(port)
	}
	e := startEngine(t, yaml("a.test"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if _, body := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: v\r\n\r\n"); body != "a.test" {
		t.Fatalf("before the reload the member saw SNI %q", body)
	}
	cfg, err := config.Parse([]byte(yaml("b.test")), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if _, body := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: v\r\n\r\n"); body != "b.test" {
		t.Fatalf("after a reload to SNI b.test the request went out with SNI %q (an old connection reused)", body)
	}
}

// A request refused while the client is still sending (an oversized head
// here) is answered, then the connection is half-closed and drained: the
// client reads the whole answer and a clean end, not a reset that can
// destroy the answer before it is read.
func TestRefusedRequestIsClosedWithoutReset(t *testing.T) {
	srv := startEchoPathServer(t, nil)
	port := freePort(t)
	startEngine(t, oneMemberYAML(port, srv.addr))
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	head := "GET / HTTP/1.1\r\nHost: v\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n"
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the answer and the close happen while the rest is unread
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("after %q: %v (want a clean end of stream)", reply, err)
	}
	if !strings.HasPrefix(string(reply), "HTTP/1.1 431") {
		t.Fatalf("reply %q, want 431", reply)
	}
}

// Clients grow the persistence table (one source_addr record per address):
// it stops at limits.persistence_records, the clients beyond are still
// served (balanced without a record), and the refusals are counted.
func TestPersistenceTableIsBounded(t *testing.T) {
	srv := startEchoPathServer(t, nil)
	port := freePort(t)
	e := startEngine(t, vsConf{members: []string{srv.addr}, vs: "    persistence: source_addr\n",
		top: "limits:\n  persistence_records: 3\n"}.yaml(port))
	for i := 1; i <= 6; i++ {
		// Each client from its own loopback address (127.0.0.0/8 is all local).
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i))}}
		c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /p HTTP/1.1\r\nHost: v\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("client %d: %v %v", i, resp, err)
		}
	}
	if n := e.PersistTable().Len(); n != 3 {
		t.Fatalf("persistence table holds %d records, want the limit 3", n)
	}
	if n := e.PersistTable().Refused(); n != 3 {
		t.Fatalf("refused %d new records, want 3", n)
	}
	mfs, err := e.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetGauge() != nil {
				got[mf.GetName()] = m.GetGauge().GetValue()
			}
			if m.GetCounter() != nil {
				got[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["fulcrum_persistence_records"] != 3 || got["fulcrum_persistence_refused_total"] != 3 {
		t.Fatalf("metrics: records %v, refused %v; want 3 and 3", got["fulcrum_persistence_records"], got["fulcrum_persistence_refused_total"])
	}
}
