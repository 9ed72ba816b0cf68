package monitor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fast keeps attempts short; a failing check never takes longer than this.
const fast = 2 * time.Second

func wantResult(t *testing.T, err error, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("Check = %q, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("Check succeeded, want error containing %q", wantErr)
	}
	if !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("Check = %q, want error containing %q", err, wantErr)
	}
}

func TestCheckTCP(t *testing.T) {
	t.Parallel()
	silent, _ := tcpServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	pong, _ := tcpServer(t, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line == "PING\n" {
			_, _ = c.Write([]byte("+PONG\r\n"))
		} else {
			_, _ = c.Write([]byte("-ERR\r\n"))
		}
	})
	maint := tcpServer2(t, reply("status: MAINT\n"))
	closesEmpty := tcpServer2(t, nil)
	closed := closedTCPPort(t)

	tests := []struct {
		name    string
		addr    netip.AddrPort
		spec    Spec
		wantErr string
	}{
		{"connect only", silent, Spec{Type: "tcp"}, ""},
		{"connection refused", closed, Spec{Type: "tcp"}, "connect: connection refused"},
		{"send and receive", pong, Spec{Type: "tcp", Send: "PING\n", Receive: regexp.MustCompile(`^\+PONG`)}, ""},
		{"receive not matched", pong, Spec{Type: "tcp", Send: "HELLO\n", Receive: regexp.MustCompile(`^\+PONG`)}, `receive /^\+PONG/ not matched`},
		{"send without receive", silent, Spec{Type: "tcp", Send: "x"}, ""},
		{"no reply before deadline", silent, Spec{Type: "tcp", Interval: 200 * time.Millisecond, Receive: regexp.MustCompile(`.`)}, "read: timeout after 200ms"},
		{"closed without data", closesEmpty, Spec{Type: "tcp", Receive: regexp.MustCompile(`.`)}, "no response"},
		{"reverse matched is down", maint, Spec{Type: "tcp", Receive: regexp.MustCompile(`MAINT`), Reverse: true}, "receive /MAINT/ matched (reverse)"},
		{"reverse not matched is up", pong, Spec{Type: "tcp", Send: "PING\n", Receive: regexp.MustCompile(`MAINT`), Reverse: true}, ""},
		{"reverse without any response is down", closesEmpty, Spec{Type: "tcp", Receive: regexp.MustCompile(`MAINT`), Reverse: true}, "no response"},
		{"alias port", closed, Spec{Type: "tcp", Destination: fmt.Sprintf("*:%d", silent.Port())}, ""},
		{"alias address and port", closed, Spec{Type: "tcp", Destination: silent.String()}, ""},
		{"alias to a closed port", silent, Spec{Type: "tcp", Destination: fmt.Sprintf("*:%d", closed.Port())}, "connection refused"},
		{"invalid spec", silent, Spec{Type: "tcp", Reverse: true}, "invalid monitor: reverse needs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.spec.Interval == 0 {
				tt.spec.Interval = fast
			}
			wantResult(t, Check(context.Background(), tt.spec, tt.addr), tt.wantErr)
		})
	}
}

// tcpServer2 is tcpServer without the stop func.
func tcpServer2(t *testing.T, h func(net.Conn)) netip.AddrPort {
	a, _ := tcpServer(t, h)
	return a
}

func TestCheckRefusedIsECONNREFUSED(t *testing.T) {
	t.Parallel()
	err := Check(context.Background(), Spec{Type: "tcp", Interval: fast}, closedTCPPort(t))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Check = %v, want it to wrap ECONNREFUSED", err)
	}
}

func TestCheckCanceled(t *testing.T) {
	t.Parallel()
	silent := tcpServer2(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start := time.Now()
	err := Check(ctx, Spec{Type: "tcp", Interval: time.Minute, Timeout: time.Minute, Receive: regexp.MustCompile(`x`)}, silent)
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("Check = %v, want a cancellation", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("cancellation took %v: the blocked read was not interrupted", d)
	}
}

func httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "root host=%s", r.Host)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "shop")
		fmt.Fprint(w, "status: all good")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "boom")
	})
	mux.HandleFunc("/maint", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "status: MAINTENANCE")
	})
	mux.HandleFunc("/sni", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			fmt.Fprintf(w, "sni=%q", r.TLS.ServerName)
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		// The marker lies beyond the first 64 KiB and must not be seen.
		fmt.Fprint(w, strings.Repeat("a", 70<<10)+"MARKER")
	})
	return mux
}

func get(path string) string { return "GET " + path + " HTTP/1.0\r\nHost: test\r\n\r\n" }

func TestCheckHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpHandler())
	t.Cleanup(srv.Close)
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	garbage := tcpServer2(t, replyHTTP("SSH-2.0-OpenSSH_9.6\r\n"))
	truncated := tcpServer2(t, replyHTTP("HTTP/1.1 20"))

	tests := []struct {
		name    string
		addr    netip.AddrPort
		spec    Spec
		wantErr string
	}{
		{"default request, any status", addr, Spec{Type: "http"}, ""},
		{"default request sends Host", addr, Spec{Type: "http", Receive: regexp.MustCompile(`root host=127\.0\.0\.1:\d+`)}, ""},
		{"default request Host from ServerName", addr, Spec{Type: "http", ServerName: "shop.example", Receive: regexp.MustCompile(`host=shop\.example$`)}, ""},
		{"status accepted", addr, Spec{Type: "http", Send: get("/ok"), Status: []int{200}}, ""},
		{"status rejected", addr, Spec{Type: "http", Send: get("/fail"), Status: []int{200}}, "status 500 not in [200]"},
		{"status list", addr, Spec{Type: "http", Send: get("/fail"), Status: []int{200, 301}}, "status 500 not in [200 301]"},
		{"5xx with no status list is up", addr, Spec{Type: "http", Send: get("/fail")}, ""},
		{"receive body", addr, Spec{Type: "http", Send: get("/ok"), Receive: regexp.MustCompile(`all good`)}, ""},
		{"receive header", addr, Spec{Type: "http", Send: get("/ok"), Receive: regexp.MustCompile(`(?m)^X-App: shop`)}, ""},
		{"receive status line", addr, Spec{Type: "http", Send: get("/ok"), Receive: regexp.MustCompile(`^HTTP/1\.[01] 200`)}, ""},
		{"receive not matched", addr, Spec{Type: "http", Send: get("/ok"), Receive: regexp.MustCompile(`ready`)}, "receive /ready/ not matched"},
		{"receive only within 64 KiB", addr, Spec{Type: "http", Send: get("/big"), Receive: regexp.MustCompile(`MARKER`)}, "receive /MARKER/ not matched"},
		{"status checked before receive", addr, Spec{Type: "http", Send: get("/fail"), Status: []int{200}, Receive: regexp.MustCompile(`boom`)}, "status 500 not in [200]"},
		{"reverse matched is down", addr, Spec{Type: "http", Send: get("/maint"), Receive: regexp.MustCompile(`MAINT`), Reverse: true}, "receive /MAINT/ matched (reverse)"},
		{"reverse not matched is up", addr, Spec{Type: "http", Send: get("/ok"), Receive: regexp.MustCompile(`MAINT`), Reverse: true}, ""},
		{"not http", garbage, Spec{Type: "http"}, `malformed status line "SSH-2.0-OpenSSH_9.6"`},
		{"truncated status line", truncated, Spec{Type: "http"}, `incomplete status line "HTTP/1.1 20"`},
		{"refused", closedTCPPort(t), Spec{Type: "http"}, "connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.spec.Interval = fast
			wantResult(t, Check(context.Background(), tt.spec, tt.addr), tt.wantErr)
		})
	}
}

// A configured HTTP/1.1 keep-alive request must not hold the probe until its
// deadline: the response ends at Content-Length (or the last chunk).
func TestCheckHTTPKeepAliveEndsAtMessageEnd(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpHandler())
	t.Cleanup(srv.Close)
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	chunked := tcpServer2(t, func(c net.Conn) {
		_, _ = bufio.NewReader(c).ReadString('\n')
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		_, _ = io.Copy(io.Discard, c) // keep the connection open
	})
	req := "GET /ok HTTP/1.1\r\nHost: test\r\n\r\n"
	for _, tt := range []struct {
		name string
		addr netip.AddrPort
	}{{"content-length", addr}, {"chunked", chunked}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := Spec{Type: "http", Send: req, Receive: regexp.MustCompile(`absent`), Interval: time.Minute, Timeout: time.Minute}
			done := make(chan error, 1)
			go func() { done <- Check(context.Background(), spec, tt.addr) }()
			select {
			case err := <-done:
				wantResult(t, err, "receive /absent/ not matched")
				if strings.Contains(err.Error(), "timeout") {
					t.Fatalf("Check = %q: waited for the deadline instead of the end of the message", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Check still reading 30s after a complete keep-alive response")
			}
		})
	}
}

func TestCheckHTTPS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(httpHandler())
	t.Cleanup(srv.Close)
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	plain := tcpServer2(t, reply("HTTP/1.0 200 OK\r\n\r\n"))

	tests := []struct {
		name    string
		addr    netip.AddrPort
		spec    Spec
		wantErr string
	}{
		{"self-signed certificate accepted", addr, Spec{Type: "https", Send: get("/ok"), Status: []int{200}, Receive: regexp.MustCompile(`all good`)}, ""},
		{"status rejected", addr, Spec{Type: "https", Send: get("/fail"), Status: []int{200}}, "status 500 not in [200]"},
		{"SNI sent", addr, Spec{Type: "https", Send: get("/sni"), ServerName: "shop.example", Receive: regexp.MustCompile(`sni="shop\.example"`)}, ""},
		{"no SNI by default", addr, Spec{Type: "https", Send: get("/sni"), Receive: regexp.MustCompile(`sni=""`)}, ""},
		{"plain server", plain, Spec{Type: "https"}, "tls handshake:"},
		{"refused", closedTCPPort(t), Spec{Type: "https"}, "connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.spec.Interval = fast
			wantResult(t, Check(context.Background(), tt.spec, tt.addr), tt.wantErr)
		})
	}
}

func TestCheckUDP(t *testing.T) {
	t.Parallel()
	echo := udpEcho(t, func(b []byte) []byte { return append([]byte("echo:"), b...) })
	mute := udpEcho(t, func([]byte) []byte { return nil })
	closed := closedUDPPort(t)

	tests := []struct {
		name    string
		addr    netip.AddrPort
		spec    Spec
		wantErr string
	}{
		{"reply without receive", echo, Spec{Type: "udp"}, ""},
		{"receive matched", echo, Spec{Type: "udp", Send: "ping", Receive: regexp.MustCompile(`^echo:ping$`)}, ""},
		{"receive not matched", echo, Spec{Type: "udp", Send: "ping", Receive: regexp.MustCompile(`pong`), Interval: 200 * time.Millisecond}, "receive /pong/ not matched"},
		{"port unreachable", closed, Spec{Type: "udp"}, "read: port unreachable (ICMP)"},
		{"port unreachable with receive", closed, Spec{Type: "udp", Receive: regexp.MustCompile(`.`)}, "port unreachable"},
		// F5 semantics: silence is not a refusal, so without Receive it is up.
		{"silence without receive is up", mute, Spec{Type: "udp", Interval: 200 * time.Millisecond}, ""},
		{"silence with receive is down", mute, Spec{Type: "udp", Interval: 200 * time.Millisecond, Receive: regexp.MustCompile(`.`)}, "no reply within 200ms"},
		{"reverse matched is down", echo, Spec{Type: "udp", Send: "MAINT", Receive: regexp.MustCompile(`MAINT`), Reverse: true}, "matched (reverse)"},
		{"reverse not matched is up", echo, Spec{Type: "udp", Send: "ok", Receive: regexp.MustCompile(`MAINT`), Reverse: true, Interval: 200 * time.Millisecond}, ""},
		{"alias port", closed, Spec{Type: "udp", Destination: fmt.Sprintf("*:%d", echo.Port())}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.spec.Interval == 0 {
				tt.spec.Interval = fast
			}
			err := Check(context.Background(), tt.spec, tt.addr)
			wantResult(t, err, tt.wantErr)
			if strings.Contains(tt.wantErr, "unreachable") && !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Check = %v, want it to wrap ECONNREFUSED", err)
			}
		})
	}
}

func TestParseStatusLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		code int
		ok   bool
		bad  bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true, false},
		{"HTTP/1.0 404\r\n", 404, true, false},
		{"HTTP/1.1 503 Service Unavailable\n", 503, true, false},
		{"HTTP/1.1 20", 0, false, false},
		{"HTT", 0, false, false},
		{"", 0, false, false},
		{"SSH-2.0", 0, false, true},
		{"HTTP/1.1 2000 OK\r\n", 0, false, true},
		{"HTTP/1.1 abc OK\r\n", 0, false, true},
		{"HTTP/1.1 099 OK\r\n", 0, false, true},
		{"HTTP/1.1\r\n", 0, false, true},
	}
	for _, tt := range tests {
		code, ok, err := parseStatusLine([]byte(tt.in))
		if code != tt.code || ok != tt.ok || (err != nil) != tt.bad {
			t.Errorf("parseStatusLine(%q) = %d, %v, %v; want %d, %v, error=%v", tt.in, code, ok, err, tt.code, tt.ok, tt.bad)
		}
	}
}
