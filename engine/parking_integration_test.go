package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
)

func parkingYAML(port int, backend, extra string) string {
	return fmt.Sprintf(`
profiles:
  http:
    h:
      header_timeout: 3s
      keepalive_timeout: 2500ms
pools:
  web:
    members:
      - address: %s
virtuals:
  vs:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    http_profile: h
%smanagement:
  address: "off"
`, backend, port, extra)
}

// TestIdleHTTPConnectionsHoldNoGoroutine: clients that connect and send
// nothing are parked (no goroutine each), then served when they send.
func TestIdleHTTPConnectionsHoldNoGoroutine(t *testing.T) {
	a := startBackend(t, "a")
	port := freePort(t)
	e := startEngine(t, parkingYAML(port, a.addr, ""))
	const n = 300
	before := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	waitFor(t, "all idle connections in the table", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == n })
	time.Sleep(200 * time.Millisecond)
	if grown := runtime.NumGoroutine() - before; grown > n/10 {
		t.Errorf("%d idle connections added %d goroutines; want them parked (under %d)", n, grown, n/10)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	for i, c := range conns {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "a" {
			t.Fatalf("connection %d: %q", i, body)
		}
	}
}

// TestParkedKeepAliveConnection: a keep-alive connection idle past the
// parking delay still serves its next request, and is closed when the
// keep-alive timeout passes; a connection that never sends is closed at the
// header timeout and counted.
func TestParkedKeepAliveConnection(t *testing.T) {
	a := startBackend(t, "a")
	port := freePort(t)
	e := startEngine(t, parkingYAML(port, a.addr, ""))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	get := func() string {
		t.Helper()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if got := get(); got != "a" {
		t.Fatal(got)
	}
	time.Sleep(1500 * time.Millisecond) // past parkAfter: parked
	if got := get(); got != "a" {
		t.Fatalf("after parking: %q", got)
	}
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("keep-alive expiry: read %v, want EOF", err)
	}
	if took := time.Since(start); took < 2*time.Second || took > 5*time.Second {
		t.Errorf("closed %v after the last response, want about the 2.5 s keep-alive timeout", took)
	}

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetDeadline(time.Now().Add(10 * time.Second))
	start = time.Now()
	if b, err := io.ReadAll(silent); err != nil || len(b) != 0 {
		t.Fatalf("silent connection: read %q, %v", b, err)
	}
	if took := time.Since(start); took < 2500*time.Millisecond || took > 6*time.Second {
		t.Errorf("silent connection closed after %v, want about the 3 s header timeout", took)
	}
	waitFor(t, "connection table empty", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
	if r := e.Virtuals()[0].Rejected; r != 1 {
		t.Errorf("rejected = %d, want 1 (header_timeout)", r)
	}
}

// TestParkedConnectionReapedByIdleTimeout: the connection table's idle
// reaper ends a parked connection (with a RST: reset_on_timeout).
func TestParkedConnectionReapedByIdleTimeout(t *testing.T) {
	a := startBackend(t, "a")
	port := freePort(t)
	e := startEngine(t, parkingYAML(port, a.addr, "    idle_timeout: 1s\n"))
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("parked connection after the idle timeout: read error %v, want a reset", err)
	}
	waitFor(t, "connection table empty", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
}
