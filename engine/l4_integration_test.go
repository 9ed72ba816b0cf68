package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
)

// echoServer echoes lines prefixed with its name.
func echoServer(t *testing.T, name string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				<-ctx.Done()
				c.Close()
			}()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, name+":"+line)
				}
			}()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return ln.Addr().String(), &conns
}

func udpEcho(t *testing.T, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

func tcpVirtualYAML(port int, extra string, members ...string) string {
	var b strings.Builder
	b.WriteString("pools:\n  echo:\n    members:\n")
	for _, m := range members {
		fmt.Fprintf(&b, "      - address: %s\n", m)
	}
	fmt.Fprintf(&b, "virtuals:\n  vs_tcp:\n    destination: 127.0.0.1:%d\n    type: tcp\n    pool: echo\n%smanagement:\n  address: \"off\"\n", port, extra)
	return b.String()
}

func dialLine(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestTCPVirtualConnectionTable(t *testing.T) {
	m1, _ := echoServer(t, "one")
	m2, _ := echoServer(t, "two")
	port := freePort(t)
	e := startEngine(t, tcpVirtualYAML(port, "", m1, m2))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c1, br1 := dialLine(t, addr)
	c2, br2 := dialLine(t, addr)
	r1, r2 := roundTrip(t, c1, br1, "hello"), roundTrip(t, c2, br2, "hello")
	if !(r1 == "one:hello" && r2 == "two:hello" || r1 == "two:hello" && r2 == "one:hello") {
		t.Fatalf("round robin over tcp: %q %q", r1, r2)
	}
	// A large transfer through splice keeps every byte.
	big := strings.Repeat("x", 1<<20)
	if got := roundTrip(t, c1, br1, big); len(got) != len(big)+4 {
		t.Fatalf("1 MiB line came back with %d bytes", len(got))
	}
	conns := e.Connections(api.ConnQuery{Virtual: "vs_tcp"})
	if len(conns) != 2 {
		t.Fatalf("connection table has %d entries, want 2: %+v", len(conns), conns)
	}
	for _, cs := range conns {
		if cs.Client == "" || cs.VirtualAddr != addr || cs.Server == "" || cs.ServerLocal == "" || cs.Pool != "echo" {
			t.Errorf("incomplete 4-tuples: %+v", cs)
		}
	}
	var in uint64
	for _, cs := range conns {
		in += cs.BytesIn
	}
	if in < 1<<20 {
		t.Errorf("bytes in = %d, want >= 1 MiB", in)
	}
	c1.Close()
	c2.Close()
	waitFor(t, "connection table empty", 3*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
}

func TestTCPIdleTimeoutReaps(t *testing.T) {
	m1, _ := echoServer(t, "one")
	port := freePort(t)
	e := startEngine(t, tcpVirtualYAML(port, "    idle_timeout: 1s\n", m1))
	c, br := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port))
	roundTrip(t, c, br, "hi")
	waitFor(t, "idle connection reaped", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Errorf("reaped connection still delivers data")
	}
}

func TestTCPSNATPool(t *testing.T) {
	m1, _ := echoServer(t, "one")
	port := freePort(t)
	e := startEngine(t, (`
snat_pools:
  sp:
    addresses: [127.0.0.77]
`)+tcpVirtualYAML(port, "    snat: sp\n", m1))
	c, br := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port))
	roundTrip(t, c, br, "hi")
	cs := e.Connections(api.ConnQuery{})
	if len(cs) != 1 || !strings.HasPrefix(cs[0].ServerLocal, "127.0.0.77:") {
		t.Fatalf("server-side source not translated: %+v", cs)
	}
}

func TestUDPVirtual(t *testing.T) {
	u1, u2 := udpEcho(t, "one"), udpEcho(t, "two")
	port := freeUDPPort(t)
	e := startEngine(t, fmt.Sprintf(`
pools:
  dns:
    members:
      - address: %s
      - address: %s
virtuals:
  vs_udp:
    destination: 127.0.0.1:%d
    type: udp
    pool: dns
    idle_timeout: 1s
management:
  address: "off"
`, u1, u2, port))
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		var first string
		for j := 0; j < 3; j++ { // one flow: every datagram to the same member
			fmt.Fprintf(c, "q%d", j)
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			who, _, _ := strings.Cut(string(buf[:n]), ":")
			if first == "" {
				first = who
			} else if who != first {
				t.Fatalf("flow moved from %s to %s", first, who)
			}
			if want := fmt.Sprintf("q%d", j); !strings.HasSuffix(string(buf[:n]), want) {
				t.Fatalf("reply %q", buf[:n])
			}
		}
		seen[first] = true
	}
	if len(seen) != 2 {
		t.Errorf("two client flows went to %v", seen)
	}
	if n := len(e.Connections(api.ConnQuery{Virtual: "vs_udp"})); n != 2 {
		t.Errorf("flow table has %d entries, want 2", n)
	}
	waitFor(t, "udp flows expire", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
}

func TestReloadKeepsLongLivedConnections(t *testing.T) {
	m1, _ := echoServer(t, "one")
	m2, _ := echoServer(t, "two")
	port := freePort(t)
	e := startEngine(t, tcpVirtualYAML(port, "", m1))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, br := dialLine(t, addr)
	if got := roundTrip(t, c, br, "before"); got != "one:before" {
		t.Fatal(got)
	}
	lBefore := e.Listener("vs_tcp")

	// A new configuration: pool now only m2, plus a second virtual.
	port2 := freePort(t)
	cfg2, err := config.Parse([]byte(tcpVirtualYAML(port, "", m2)+(`
  `)), "v2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg2.Virtuals["vs_other"] = &config.Virtual{}
	*cfg2.Virtuals["vs_other"] = *cfg2.Virtuals["vs_tcp"]
	cfg2.Virtuals["vs_other"].Destination = fmt.Sprintf("127.0.0.1:%d", port2)
	if err := e.Apply(cfg2); err != nil {
		t.Fatal(err)
	}
	if e.Listener("vs_tcp") != lBefore {
		t.Errorf("unchanged listener was replaced")
	}
	// The established connection carries on with its original member.
	for i := 0; i < 3; i++ {
		if got := roundTrip(t, c, br, "after"); got != "one:after" {
			t.Fatalf("long-lived connection after reload: %q", got)
		}
	}
	// New connections use the new plan.
	c2, br2 := dialLine(t, addr)
	if got := roundTrip(t, c2, br2, "new"); got != "two:new" {
		t.Errorf("new connection after reload: %q", got)
	}
	c3, br3 := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port2))
	if got := roundTrip(t, c3, br3, "x"); got != "two:x" {
		t.Errorf("added virtual: %q", got)
	}

	// A bad configuration is refused and the running one stays.
	if _, err := e.LoadConfig([]byte("pools: {web: {members: [{address: nope}]}}")); err == nil || !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("bad config: err = %v", err)
	}
	// A config whose listener cannot be opened is refused as a whole.
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	if _, err := e.LoadConfig([]byte(tcpVirtualYAML(blocker.Addr().(*net.TCPAddr).Port, "", m2))); err == nil {
		t.Fatal("config with a busy port was applied")
	}
	if got := roundTrip(t, c, br, "still"); got != "one:still" {
		t.Errorf("after refused reloads: %q", got)
	}
	if got := roundTrip(t, c2, br2, "still"); got != "two:still" {
		t.Errorf("after refused reloads: %q", got)
	}
	c4, br4 := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port2))
	if got := roundTrip(t, c4, br4, "y"); got != "two:y" {
		t.Errorf("second virtual after refused reloads: %q", got)
	}
}

func TestTCPSNATNoneKeepsClientAddress(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("snat none needs IP_TRANSPARENT (CAP_NET_ADMIN): run as root")
	}
	// The member reports the source address it sees.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String()+"\n")
			c.Close()
		}
	}()
	port := freePort(t)
	startEngine(t, tcpVirtualYAML(port, "    snat: none\n", ln.Addr().String()))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.55")}}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if line != "127.0.0.55\n" {
		t.Errorf("member saw source %q, want the client's 127.0.0.55", line)
	}
}

// TestProxyBufferBackpressure: a fast server and a slow client through the
// default profile. The proxy must stop reading the server when it holds the
// high mark, never hold more, and resume only below the low mark.
// (TestProxyBufferResumesAtLowMark does the same with marks of its own.)
func TestProxyBufferBackpressure(t *testing.T) {
	const total = 16 << 20
	port := freePort(t)
	e := startEngine(t, tcpVirtualYAML(port, "", blaster(t, total)))
	c := dialSlowClient(t, fmt.Sprintf("127.0.0.1:%d", port))
	buf := make([]byte, 16<<10)
	for got := 0; got < total; {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if got < total/2 {
			time.Sleep(200 * time.Microsecond) // slow client for the first half
		}
	}
	b := toClientBuffer(e)
	t.Logf("proxy buffer toward the client: %+v", b)
	if b.High == 0 {
		t.Fatal("no proxy buffer detail in the connection table")
	}
	if b.MaxHeld > b.High {
		t.Errorf("proxy held %d bytes, above the high mark %d", b.MaxHeld, b.High)
	}
	if b.Pauses == 0 {
		t.Errorf("the server was never paused although the client was slow")
	}
	if b.LastResume >= b.Low {
		t.Errorf("reading resumed at %d bytes held, not below the low mark %d", b.LastResume, b.Low)
	}
}

// TestCloseEndsStuckConnections: shutdown with a connection whose client
// stopped reading (the proxy buffer toward it is full and its reader paused)
// must still end, shortly after the drain time.
func TestCloseEndsStuckConnections(t *testing.T) {
	port := freePort(t)
	cfg, err := config.Parse([]byte(tcpVirtualYAML(port, "", blaster(t, 0))), "stuck.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Log: testLogger(t)})
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	dialSlowClient(t, fmt.Sprintf("127.0.0.1:%d", port)) // never reads
	waitFor(t, "the proxy buffer toward the client to fill", 10*time.Second, func() bool { return toClientBuffer(e).Pauses > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { e.Close(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a stuck connection open")
	}
}
