package flowhold

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"golang.org/x/sys/unix"
)

const tableName = "fulcrum_hold_test"

// env is one test's namespace: a client address and a server address, both
// on the namespace's loopback (loopback traffic crosses the prerouting and
// output hooks like any other).
type env struct {
	ns             *testnet.NS
	client, server netip.Addr
	h              *Holder
}

func newEnv(t testing.TB, v6 bool) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and nftables")
	}
	name := fmt.Sprintf("fhold-%d-%s", os.Getpid(), strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()))
	e := &env{ns: testnet.TempNS(t, name)}
	if v6 {
		e.client, e.server = netip.MustParseAddr("2001:db8:99::1"), netip.MustParseAddr("2001:db8:99::2")
		for _, a := range []netip.Addr{e.client, e.server} {
			if err := e.ns.AddAddr("lo", netip.PrefixFrom(a, 128)); err != nil {
				t.Fatal(err)
			}
		}
		waitUsable(t, e.ns, e.client)
		waitUsable(t, e.ns, e.server)
	} else {
		e.client, e.server = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	}
	err := e.ns.Do(func() (err error) {
		e.h, err = New(tableName)
		return err
	})
	if err != nil {
		t.Fatalf("nftables unusable in a test namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := e.h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func (e *env) listen(t testing.TB) *net.TCPListener {
	t.Helper()
	l, err := e.ns.Listen("tcp", netip.AddrPortFrom(e.server, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.(*net.TCPListener)
}

// dial connects from the client address (port 0: any) to l.
func (e *env) dial(t testing.TB, l *net.TCPListener, port uint16, timeout time.Duration) (*net.TCPConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(e.client, port))}
	c, err := e.ns.Dial(ctx, d, "tcp", l.Addr().String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn), nil
}

// pair returns a connected client and server conn.
func (e *env) pair(t testing.TB, l *net.TCPListener) (client, server *net.TCPConn) {
	t.Helper()
	c, err := e.dial(t, l, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err := l.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	echo(t, c, s, "hello")
	return c, s
}

func flowOf(c *net.TCPConn) Flow {
	return Flow{Local: c.LocalAddr().(*net.TCPAddr).AddrPort(), Remote: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
}

// echo sends msg from a to b and checks it arrives within a second.
func echo(t testing.TB, a, b *net.TCPConn, msg string) {
	t.Helper()
	if _, err := a.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	expect(t, b, msg, time.Second)
}

func expect(t testing.TB, c *net.TCPConn, msg string, timeout time.Duration) {
	t.Helper()
	buf := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("reading %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Fatalf("read %q, want %q", buf, msg)
	}
}

// expectNothing checks that nothing (data, FIN or RST) arrives on c for d.
func expectNothing(t testing.TB, c *net.TCPConn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("expected nothing to arrive, got n=%d err=%v", n, err)
	}
}

// unacked is the connection's SIOCOUTQ: bytes written and not acknowledged.
func unacked(t testing.TB, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return n
}

// checkHeld writes msg on c and checks it stays unacknowledged and unread
// by s for a while.
func checkHeld(t testing.TB, c, s *net.TCPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	expectNothing(t, s, 150*time.Millisecond)
	if n := unacked(t, c); n != len(msg) {
		t.Fatalf("held connection: %d bytes unacknowledged, want %d", n, len(msg))
	}
}

func mustRelease(t testing.TB, release func() error) {
	t.Helper()
	if err := release(); err != nil {
		t.Fatal(err)
	}
}

func TestHold(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			e := newEnv(t, v6)
			l := e.listen(t)
			c, s := e.pair(t, l)
			rc, rs := e.pair(t, l) // for the RST check

			up, err := e.ns.ListenPacket("udp", netip.AddrPortFrom(e.server, 0).String())
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			uc, err := e.ns.Dial(context.Background(), &net.Dialer{LocalAddr: &net.UDPAddr{IP: e.client.AsSlice()}}, "udp", up.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer uc.Close()
			release, err := e.h.Hold([]netip.Addr{e.server, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:ffff::1")})
			if err != nil {
				t.Fatal(err)
			}
			// A datagram to the held address is dropped.
			uc.Write([]byte("held datagram"))
			up.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
			if n, _, err := up.ReadFrom(make([]byte, 64)); err == nil {
				t.Errorf("a %d-byte datagram reached the held address", n)
			}
			// Data from the peer is dropped: never acknowledged, never read.
			checkHeld(t, c, s, "held")
			// The server side still sends.
			echo(t, s, c, "outbound")

			// A pure SYN still reaches the listener, whose SYN-ACK
			// completes the client's handshake; the client's ACK is
			// held, so the server accepts only after the release.
			nc, err := e.dial(t, l, 0, 2*time.Second)
			if err != nil {
				t.Fatalf("dial under hold: %v", err)
			}
			if _, err := nc.Write([]byte("new")); err != nil {
				t.Fatal(err)
			}

			// A RST from the held address is dropped: abort the
			// server end of the second pair with SO_LINGER 0.
			if err := rs.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			if err := rs.Close(); err != nil {
				t.Fatal(err)
			}
			expectNothing(t, rc, 150*time.Millisecond)

			n, err := e.h.Dropped()
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("Dropped() = 0 under a hold that dropped packets")
			}
			t.Logf("dropped under hold: %d packets", n)
			mustRelease(t, release)
			if err := release(); err != nil {
				t.Fatalf("second release: %v", err)
			}

			// Datagrams pass again.
			uc.Write([]byte("after"))
			up.SetReadDeadline(time.Now().Add(2 * time.Second))
			if n, _, err := up.ReadFrom(make([]byte, 64)); err != nil || n != len("after") {
				t.Errorf("datagram after the release: %d bytes, %v", n, err)
			}
			// Held bytes arrive when the peer retransmits.
			expect(t, s, "held", 5*time.Second)
			echo(t, c, s, "after")
			// The new connection completes and delivers.
			if err := l.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			ns, err := l.AcceptTCP()
			if err != nil {
				t.Fatalf("accept after release: %v", err)
			}
			defer ns.Close()
			expect(t, ns, "new", 5*time.Second)
			// The aborted connection's peer learns of it at its next
			// segment, which now gets a RST through.
			if _, err := rc.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
			var b [1]byte
			if _, err := rc.Read(b[:]); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("aborted connection after release: read error %v, want ECONNRESET", err)
			}
			if m, _ := e.h.Dropped(); m < n {
				t.Fatalf("Dropped went down from %d to %d after release", n, m)
			}
		})
	}
}

func TestHoldFlows(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			e := newEnv(t, v6)
			l := e.listen(t)
			c1, s1 := e.pair(t, l)
			c2, s2 := e.pair(t, l)
			rc, rs := e.pair(t, l)

			// Hold flow 1 and the RST flow, seen from the server,
			// plus flows of the other IP version and a port a new
			// connection will use.
			other := Flow{netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("192.0.2.2:4000")}
			if !v6 {
				other = Flow{netip.MustParseAddrPort("[2001:db8::1]:80"), netip.MustParseAddrPort("[2001:db8::2]:4000")}
			}
			const synPort = 47123
			synFlow := Flow{Local: l.Addr().(*net.TCPAddr).AddrPort(), Remote: netip.AddrPortFrom(e.client, synPort)}
			release, err := e.h.HoldFlows([]Flow{flowOf(s1), flowOf(rs), other, synFlow})
			if err != nil {
				t.Fatal(err)
			}
			checkHeld(t, c1, s1, "held")
			echo(t, c2, s2, "flows") // the other flow is untouched
			echo(t, s2, c2, "back")
			echo(t, s1, c1, "out") // held flows still send

			// Every inbound packet of a held flow is dropped, SYNs too.
			if _, err := e.dial(t, l, synPort, 300*time.Millisecond); err == nil {
				t.Fatal("SYN of a held flow got through")
			}
			if err := rs.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			if err := rs.Close(); err != nil {
				t.Fatal(err)
			}
			expectNothing(t, rc, 150*time.Millisecond)

			mustRelease(t, release)
			expect(t, s1, "held", 5*time.Second)
			echo(t, c1, s1, "after")
			if _, err := e.dial(t, l, synPort, 5*time.Second); err != nil {
				t.Fatalf("SYN after release: %v", err)
			}
		})
	}
}

// TestOverlappingHolds: the same address held twice stays held until both
// holds are released.
func TestOverlappingHolds(t *testing.T) {
	e := newEnv(t, false)
	l := e.listen(t)
	c, s := e.pair(t, l)
	r1, err := e.h.Hold([]netip.Addr{e.server})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.h.HoldFlows([]Flow{flowOf(s)})
	if err != nil {
		t.Fatal(err)
	}
	r3, err := e.h.Hold([]netip.Addr{netip.AddrFrom16(e.server.As16())}) // IPv4-mapped form
	if err != nil {
		t.Fatal(err)
	}
	checkHeld(t, c, s, "x")
	mustRelease(t, r1)
	mustRelease(t, r3)
	expectNothing(t, s, 300*time.Millisecond)
	if n := unacked(t, c); n != 1 {
		t.Fatalf("%d bytes unacknowledged with one hold left, want 1", n)
	}
	mustRelease(t, r2)
	expect(t, s, "x", 5*time.Second)
}

// TestStaleTable: a table left by a crashed process is replaced by New.
func TestStaleTable(t *testing.T) {
	e := newEnv(t, false)
	l := e.listen(t)
	c, s := e.pair(t, l)
	var stale *Holder
	err := e.ns.Do(func() (err error) {
		stale, err = New(tableName + "_2")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stale.Hold([]netip.Addr{e.server}); err != nil {
		t.Fatal(err)
	}
	_ = stale.conn.CloseLasting() // the process "crashes": nothing is deleted
	checkHeld(t, c, s, "x")
	var fresh *Holder
	err = e.ns.Do(func() (err error) {
		fresh, err = New(tableName + "_2")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, "x", 5*time.Second)
	if err := fresh.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestInvalid(t *testing.T) {
	e := newEnv(t, false)
	if _, err := e.h.Hold(nil); err == nil {
		t.Error("Hold(nil) succeeded")
	}
	if _, err := e.h.Hold([]netip.Addr{{}}); err == nil {
		t.Error("Hold of an invalid address succeeded")
	}
	if _, err := e.h.HoldFlows([]Flow{{netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("[2001:db8::1]:2")}}); err == nil {
		t.Error("HoldFlows of a mixed-family flow succeeded")
	}
	if err := e.h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.h.Hold([]netip.Addr{e.server}); err == nil {
		t.Error("Hold after Close succeeded")
	}
}

func manyFlows(n int, v6 bool) []Flow {
	flows := make([]Flow, n)
	for i := range flows {
		local := netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)})
		remote := netip.AddrFrom4([4]byte{10, 98, byte(i >> 8), byte(i)})
		if v6 {
			local = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
			remote = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 14: byte(i >> 8), 15: byte(i)})
		}
		flows[i] = Flow{netip.AddrPortFrom(local, 443), netip.AddrPortFrom(remote, uint16(10000+i))}
	}
	return flows
}

// TestManyFlows holds thousands of flows (several netlink batches) and
// checks that a real flow among them is held.
func TestManyFlows(t *testing.T) {
	e := newEnv(t, true)
	l := e.listen(t)
	c, s := e.pair(t, l)
	flows := append(manyFlows(5000, true), manyFlows(1000, false)...)
	flows = append(flows, flowOf(s))
	start := time.Now()
	release, err := e.h.HoldFlows(flows)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HoldFlows of %d flows: %v", len(flows), time.Since(start))
	checkHeld(t, c, s, "x")
	start = time.Now()
	mustRelease(t, release)
	t.Logf("release: %v", time.Since(start))
	expect(t, s, "x", 5*time.Second)
}

func BenchmarkHoldFlows(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e := newEnv(b, false)
			flows := manyFlows(n, false)
			for b.Loop() {
				release, err := e.h.HoldFlows(flows)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				mustRelease(b, release)
				b.StartTimer()
			}
		})
	}
}

func BenchmarkRelease1000(b *testing.B) {
	e := newEnv(b, false)
	flows := manyFlows(1000, false)
	for b.Loop() {
		b.StopTimer()
		release, err := e.h.HoldFlows(flows)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		mustRelease(b, release)
	}
}

// waitUsable waits until addr, just added in ns, is usable: bound as a
// source and delivered locally. An IPv6 address added with IFA_F_NODAD
// still finishes its (skipped) duplicate address detection in a kernel
// work item: until then it is tentative, and only at the end does its
// local route (table local) appear, after the flag is cleared; meanwhile
// the prefix route in table main routes packets for it past the host
// (answered with ICMPv6 no-route: connect fails with ENETUNREACH). Under
// load that lasts milliseconds.
func waitUsable(t testing.TB, ns *testnet.NS, addr netip.Addr) {
	t.Helper()
	if !addr.Is6() {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := ns.Do(func() error {
			c, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
			if err == nil {
				_ = c.Close()
			}
			return err
		})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var out []byte
			out, err = ns.Run(ctx, "ip", "-6", "route", "show", "table", "local", addr.String()+"/128")
			cancel()
			if err == nil && !strings.HasPrefix(strings.TrimSpace(string(out)), "local ") {
				err = fmt.Errorf("no local route yet")
			}
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("address %v not usable after 5 s: %v", addr, err)
		}
		time.Sleep(time.Millisecond)
	}
}
