package isession

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

func dialTCP(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", a.String())
}

// site runs a Terminator on loopback whose every inner connection goes to
// an echo server; it returns the Terminator's address.
func site(t *testing.T, s *Settings) (*Terminator, netip.AddrPort) {
	t.Helper()
	echo, _ := net.Listen("tcp", "127.0.0.1:0")
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	backend := netip.MustParseAddrPort(echo.Addr().String())
	term := NewTerminator(s, TerminatorOptions{}, func(tg Target) (netip.AddrPort, string, bool) {
		if tg.Dst.Port() == 9 {
			return netip.AddrPort{}, "", false // nothing there
		}
		return backend, "echo", true
	}, dialTCP, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go term.Serve(ln)
	t.Cleanup(func() { ln.Close(); term.Close() })
	return term, netip.MustParseAddrPort(ln.Addr().String())
}

var testTarget = Target{Dst: netip.MustParseAddrPort("10.0.0.1:80"), Src: netip.MustParseAddrPort("192.0.2.1:5000"), Virtual: "v"}

func echoOnce(t *testing.T, p *Pool, ep netip.AddrPort, msg []byte) *Tunnel {
	t.Helper()
	st, tu, err := p.Open(context.Background(), ep, testTarget, msg[:1])
	if err != nil {
		t.Fatal(err)
	}
	st.Write(msg[1:])
	st.CloseWrite()
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	st.Close()
	return tu
}

func TestPoolReuse(t *testing.T) {
	ca := newCA(t)
	term, ep := site(t, settings(ca.tlsFor(t, "dc"), "dc"))
	p := NewPool(settings(ca.tlsFor(t, "branch"), "branch"), Reuse{IdleTimeout: 300 * time.Millisecond}, dialTCP, nil)
	defer p.Close()
	a := echoOnce(t, p, ep, textData(100<<10))
	b := echoOnce(t, p, ep, textData(200<<10))
	if a != b || p.Stats().Dials != 1 {
		t.Fatalf("tunnel not reused: %d dials", p.Stats().Dials)
	}
	if s := term.Stats(); s.Accepted != 1 || s.Streams != 2 {
		t.Fatalf("terminator %+v", s)
	}
	// Idle past the timeout: closed, and the next connection sets up another.
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle tunnel not closed")
	}
	if c := echoOnce(t, p, ep, []byte("again")); c == a || p.Stats().Dials != 2 {
		t.Fatal("no new tunnel after the idle one closed")
	}
}

func TestPoolReuseOff(t *testing.T) {
	ca := newCA(t)
	_, ep := site(t, settings(ca.tlsFor(t, "dc"), "dc"))
	p := NewPool(settings(ca.tlsFor(t, "branch"), "branch"), Reuse{Off: true}, dialTCP, nil)
	defer p.Close()
	a := echoOnce(t, p, ep, []byte("one"))
	b := echoOnce(t, p, ep, []byte("two"))
	if a == b || p.Stats().Dials != 2 {
		t.Fatalf("reuse off shared a tunnel (%d dials)", p.Stats().Dials)
	}
	select {
	case <-a.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a used tunnel was kept with reuse off")
	}
}

func TestPoolMaxAgeAndConnections(t *testing.T) {
	ca := newCA(t)
	_, ep := site(t, settings(ca.tlsFor(t, "dc"), "dc"))
	p := NewPool(settings(ca.tlsFor(t, "branch"), "branch"), Reuse{MaxAge: 200 * time.Millisecond, Connections: 2}, dialTCP, nil)
	defer p.Close()
	// Two streams held open at once spread over two connections.
	s1, t1, err := p.Open(context.Background(), ep, testTarget, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	s2, t2, err := p.Open(context.Background(), ep, testTarget, []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	if t1 == t2 {
		t.Fatal("second busy stream did not get the second connection")
	}
	s1.Close()
	s2.Close()
	time.Sleep(300 * time.Millisecond)
	t3 := echoOnce(t, p, ep, []byte("later"))
	if t3 == t1 || t3 == t2 {
		t.Fatal("a tunnel past its maximum age got a new stream")
	}
}

func TestPoolFailures(t *testing.T) {
	ca := newCA(t)
	// A closed loopback port.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	p := NewPool(settings(ca.tlsFor(t, "branch"), "branch"), Reuse{}, dialTCP, nil)
	defer p.Close()
	if _, _, err := p.Open(context.Background(), closed, testTarget, nil); err == nil {
		t.Fatal("open to a closed port succeeded")
	}
	if p.Stats().DialFailures != 1 {
		t.Fatal("dial failure not counted")
	}
	// A stream the data center has no target for is refused, the tunnel lives on.
	term, ep := site(t, settings(ca.tlsFor(t, "dc"), "dc"))
	tg := testTarget
	tg.Dst = netip.MustParseAddrPort("10.0.0.1:9")
	st, tu, err := p.Open(context.Background(), ep, tg, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(st); err == nil {
		t.Fatal("stream without a target not refused")
	}
	if term.Stats().NoTarget != 1 {
		t.Fatal("not counted")
	}
	if echoOnce(t, p, ep, []byte("fine")) != tu {
		t.Fatal("tunnel not reused after a refused stream")
	}
	// An untrusted branch is refused and counted.
	other := newCA(t)
	p2 := NewPool(settings(other.tlsFor(t, "branch"), "branch"), Reuse{}, dialTCP, nil)
	defer p2.Close()
	if _, _, err := p2.Open(context.Background(), ep, testTarget, nil); err == nil {
		t.Fatal("untrusted branch got a tunnel")
	}
	waitUntil(t, func() bool { return term.Stats().Refused == 1 })
}

func waitUntil(t *testing.T, f func() bool) {
	t.Helper()
	for i := 0; i < 500 && !f(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !f() {
		t.Fatal("condition not met")
	}
}

// TestTerminatorDedupMemory: the data-center end's cache memory is bounded
// across tunnels; a tunnel set up when it is spent de-duplicates with a
// smaller cache or not at all, and the budget comes back when tunnels end.
func TestTerminatorDedupMemory(t *testing.T) {
	ca := newCA(t)
	ss := settings(ca.tlsFor(t, "dc"), "dc")
	ss.DedupCache = 8 << 20
	term := NewTerminator(ss, TerminatorOptions{DedupMemory: 12 << 20}, func(Target) (netip.AddrPort, string, bool) {
		return netip.AddrPort{}, "", false
	}, dialTCP, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go term.Serve(ln)
	defer func() { ln.Close(); term.Close() }()
	ep := netip.MustParseAddrPort(ln.Addr().String())
	var caches []int64
	var tunnels []*Tunnel
	for range 3 {
		conn, err := dialTCP(context.Background(), ep)
		if err != nil {
			t.Fatal(err)
		}
		cs := settings(ca.tlsFor(t, "branch"), "branch")
		cs.DedupCache = 8 << 20
		tu, err := Client(context.Background(), conn, cs)
		if err != nil {
			t.Fatal(err)
		}
		tunnels = append(tunnels, tu)
		caches = append(caches, tu.Outcome.DedupCache)
	}
	if caches[0] != 8<<20 || caches[1] != 4<<20 || caches[2] != 0 {
		t.Fatalf("caches granted %v, want [8 MiB 4 MiB 0]", caches)
	}
	if tunnels[2].Outcome.Dedup != "" {
		t.Fatal("dedup on without a cache")
	}
	tunnels[0].Close()
	waitUntil(t, func() bool { term.mu.Lock(); defer term.mu.Unlock(); return term.dedupUsed == 4<<20 })
	for _, tu := range tunnels[1:] {
		tu.Close()
	}
}
