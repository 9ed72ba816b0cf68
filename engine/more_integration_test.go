package engine

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTCPVirtualTLSOffload(t *testing.T) {
	m1, _ := echoServer(t, "one")
	cert, key := writeCert(t, t.TempDir(), "localhost")
	port := freePort(t)
	startEngine(t, fmt.Sprintf(`
profiles:
  client_ssl:
    offload:
      cert: %s
      key: %s
      min_version: "1.3"
`, cert, key)+tcpVirtualYAML(port, "    client_ssl: offload\n", m1))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("TLS version %x", v)
	}
	br := bufio.NewReader(c)
	if got := roundTrip(t, c, br, "secret"); got != "one:secret" {
		t.Fatalf("through TLS offload: %q", got)
	}
	// A client below the minimum version is refused.
	if _, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Errorf("TLS 1.2 client accepted by a min_version 1.3 profile")
	}
}

func TestHTTPServerSSLAndSNI(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls-backend sni="+r.TLS.ServerName)
	}))
	defer ts.Close()
	dir := t.TempDir()
	defCert, defKey := writeCert(t, dir, "default.test")
	sniCert, sniKey := writeCert(t, dir, "www.example.test")
	port := freePort(t)
	startEngine(t, fmt.Sprintf(`
profiles:
  client_ssl:
    front:
      cert: %s
      key: %s
      sni:
        - cert: %s
          key: %s
  server_ssl:
    back:
      server_name: backend.test
pools:
  tlspool:
    members:
      - address: %s
virtuals:
  vs:
    destination: 127.0.0.1:%d
    type: http
    pool: tlspool
    client_ssl: front
    server_ssl: back
management:
  address: "off"
`, defCert, defKey, sniCert, sniKey, strings.TrimPrefix(ts.URL, "https://"), port))
	for _, tc := range []struct{ sni, wantCN string }{{"www.example.test", "www.example.test"}, {"other.test", "default.test"}} {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni})
		if err != nil {
			t.Fatal(err)
		}
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != tc.wantCN {
			t.Errorf("SNI %s got certificate %s, want %s", tc.sni, cn, tc.wantCN)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.Contains(string(b), "tls-backend sni=backend.test") {
			t.Errorf("re-encrypted response: %q", b)
		}
	}
}

func TestHTTPBodiesExpectAndUpgrade(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes: %s", len(b), b)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", 400)
			return
		}
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo:" + line)
		brw.Flush()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	port := freePort(t)
	startEngine(t, fmt.Sprintf(`
pools:
  web:
    members:
      - address: %s
virtuals:
  vs:
    destination: 127.0.0.1:%d
    type: http
    pool: web
management:
  address: "off"
`, ln.Addr(), port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// Chunked request body with Expect: 100-continue on a keep-alive connection, then a second request.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("no 100 Continue: %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "got 11 bytes: hello world" {
		t.Fatalf("chunked body: %q", b)
	}
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "got 3 bytes: abc" {
		t.Fatalf("second request on the same connection: %q", b)
	}

	// Upgrade becomes a tunnel.
	u, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	ubr := bufio.NewReader(u)
	io.WriteString(u, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err = http.ReadResponse(ubr, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(u, "ping\n")
	if line, _ := ubr.ReadString('\n'); line != "echo:ping\n" {
		t.Fatalf("tunnel: %q", line)
	}
}

func TestPriorityGroupActivation(t *testing.T) {
	hi, lo := startBackend(t, "hi"), startBackend(t, "lo")
	port := freePort(t)
	e := startEngine(t, fmt.Sprintf(`
pools:
  web:
    min_active_members: 1
    members:
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
`, hi.addr, lo.addr, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if got := counts(t, httpClient(false), url, 10); got["hi"] != 10 {
		t.Fatalf("priority groups: %v, want all on the high group", got)
	}
	e.SetMemberState("web", hi.addr, "disabled")
	if got := counts(t, httpClient(false), url, 10); got["lo"] != 10 {
		t.Fatalf("after the high group went below min_active_members: %v", got)
	}
}

// TestHTTPLargeBodies moves large request and response bodies through plain
// HTTP (the splice path) and HTTPS (the buffered path) virtuals and checks
// every byte and the counters.
func TestHTTPLargeBodies(t *testing.T) {
	big := make([]byte, 3<<20+7)
	for i := range big {
		big[i] = byte(i * 7)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v", len(b), bytes.Equal(b, big))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	cert, key := writeCert(t, t.TempDir(), "localhost")
	port, sport := freePort(t), freePort(t)
	e := startEngine(t, fmt.Sprintf(`
profiles:
  client_ssl:
    tls:
      cert: %s
      key: %s
pools:
  web:
    members:
      - address: %s
virtuals:
  vs:
    destination: 127.0.0.1:%d
    type: http
    pool: web
  vss:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    client_ssl: tls
management:
  address: "off"
`, cert, key, ln.Addr(), port, sport))
	c := httpClient(true)
	for _, base := range []string{fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("https://127.0.0.1:%d", sport)} {
		for i := 0; i < 2; i++ { // the second time over a reused connection
			resp, err := c.Get(base + "/big")
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("%s/big: %d bytes (want %d identical), err %v", base, len(got), len(big), err)
			}
			resp, err = c.Post(base+"/upload", "application/octet-stream", bytes.NewReader(big))
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d true", len(big)); string(got) != want {
				t.Fatalf("%s/upload: server saw %q, want %q", base, got, want)
			}
		}
	}
	for _, v := range e.Virtuals() {
		if v.BytesOut < 2*uint64(len(big)) || v.BytesIn < 2*uint64(len(big)) {
			t.Errorf("virtual %s counted in %d / out %d bytes, want at least %d each way", v.Name, v.BytesIn, v.BytesOut, 2*len(big))
		}
	}
}
