package virtual

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/pool"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func testPlan(typ, dest string) *Plan {
	return &Plan{
		Name:        "vs_test",
		Type:        typ,
		Destination: netip.MustParseAddrPort(dest),
		Stats:       &Stats{},
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// listenPair listens on first and then on second (both "ADDR:%d" patterns
// filled with one port), retrying with another port while the port turns
// out to be taken by something else on the host. It returns both listeners.
func listenPair(t *testing.T, typ, first, second string) (*Listener, *Listener) {
	t.Helper()
	for try := 0; try < 20; try++ {
		port := freeLoopbackPort(t, typ)
		a, err := Listen(testPlan(typ, fmtAddr(first, port)))
		if err != nil {
			continue // taken meanwhile: another port
		}
		b, err := Listen(testPlan(typ, fmtAddr(second, port)))
		if err == nil {
			return a, b
		}
		closeAndWait(a)
		// Is the port taken by someone else, or did our first listener take
		// the second address too? Listen on the second alone to tell.
		if c, err2 := Listen(testPlan(typ, fmtAddr(second, port))); err2 == nil {
			closeAndWait(c)
			t.Fatalf("%s %s and %s cannot both listen: %v", typ, fmtAddr(first, port), fmtAddr(second, port), err)
		}
	}
	t.Fatal("no port free for both families after 20 tries")
	return nil, nil
}

func fmtAddr(pattern string, port int) string {
	ap := netip.MustParseAddrPort(pattern + ":1")
	return netip.AddrPortFrom(ap.Addr(), uint16(port)).String()
}

func freeLoopbackPort(t *testing.T, typ string) int {
	t.Helper()
	if typ == "udp" {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func closeAndWait(l *Listener) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.Close()
	l.Wait(ctx)
}

// v6only reads IPV6_V6ONLY from l's socket.
func v6only(t *testing.T, l *Listener) int {
	t.Helper()
	var sc syscall.Conn
	if l.pc != nil {
		sc = l.pc
	} else {
		sc = l.ln.(*net.TCPListener)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// 0.0.0.0:P is IPv4 only: [::1]:P can listen beside it (Go's "tcp" made
// 0.0.0.0 a dual-stack [::] socket, and the second listen failed).
func TestListenIPv4WildcardLeavesIPv6Free(t *testing.T) {
	for _, typ := range []string{"tcp", "udp"} {
		t.Run(typ, func(t *testing.T) {
			a, b := listenPair(t, typ, "0.0.0.0", "[::1]")
			defer closeAndWait(a)
			defer closeAndWait(b)
			if got := a.Addr().String(); !strings.HasPrefix(got, "0.0.0.0:") {
				t.Errorf("0.0.0.0 listener bound %s, want an IPv4 socket", got)
			}
		})
	}
}

// [::]:P is IPv6 only (IPV6_V6ONLY): 127.0.0.1:P can listen beside it.
func TestListenIPv6WildcardIsV6Only(t *testing.T) {
	for _, typ := range []string{"tcp", "udp"} {
		t.Run(typ, func(t *testing.T) {
			a, b := listenPair(t, typ, "[::]", "127.0.0.1")
			defer closeAndWait(a)
			defer closeAndWait(b)
			if v := v6only(t, a); v != 1 {
				t.Errorf("IPV6_V6ONLY = %d on the [::] listener, want 1", v)
			}
		})
	}
}

// blockingListener is a listener that is not a *net.TCPListener and whose
// Accept, once closed, returns an error that is not net.ErrClosed: Serve
// must still end its loop on Close.
type blockingListener struct {
	once   sync.Once
	closed chan struct{}
}

func (b *blockingListener) Accept() (net.Conn, error) {
	<-b.closed
	return nil, errors.New("listener shut")
}
func (b *blockingListener) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}
func (b *blockingListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
}

// A listener handed to Serve is served until Close, and Wait then releases
// everything the Listener started (parker goroutines and epoll set).
func TestServeHandedListenerAndWaitReleases(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	bl := &blockingListener{closed: make(chan struct{})}
	l, err := Serve(testPlan("tcp", "127.0.0.1:1"), bl)
	if err != nil {
		t.Fatal(err)
	}
	var _ Server = l
	if l.Transport() != "tcp" || l.Addr().String() != "127.0.0.1:1" {
		t.Errorf("transport %s addr %s", l.Transport(), l.Addr())
	}
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the accept loop of a handed-in listener")
	}
	select {
	case <-l.Done():
		t.Fatal("Done before Wait")
	default:
	}
	closeAndWait(l)
	select {
	case <-l.Done():
	default:
		t.Fatal("Done not closed after Wait")
	}
	if l.parker != nil {
		select {
		case <-l.parker.done:
		default:
			t.Error("parker still running after Wait")
		}
	}
	if l.ctx.Err() == nil {
		t.Error("listener context not cancelled after Wait")
	}
	// A second Wait (the engine's drain and its Close may both wait) returns.
	closeAndWait(l)

	if _, err := Serve(testPlan("udp", "127.0.0.1:1"), bl); err == nil {
		t.Error("Serve accepted a udp plan")
	}
}

func TestListenUDPWaitReleases(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l, err := Listen(testPlan("udp", "127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Transport() != "udp" {
		t.Errorf("transport %s", l.Transport())
	}
	closeAndWait(l)
	<-l.Done()
}

// A tcp virtual never creates the parker (an epoll set and its goroutines):
// it is made with the first http connection.
func TestParkerOnlyForHTTP(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := testPlan("tcp", ln.Addr().String())
	p.Pool = pool.New(pool.Config{Name: "web", Members: []pool.MemberConfig{{Addr: netip.MustParseAddrPort(backend.Addr().String())}}}, nil, nil)
	p.Conns = conntrack.NewTable()
	p.ConnectTimeout = time.Second
	l, err := Serve(p, ln)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAndWait(l)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s, err := backend.Accept(); err == nil { // the connection went through
		s.Close()
	} else {
		t.Fatal(err)
	}
	l.Close() // the accept loop has ended: its writes are visible
	if l.parker != nil {
		t.Fatal("a tcp virtual created the http parker")
	}
}
