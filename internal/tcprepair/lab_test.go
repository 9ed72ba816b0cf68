package tcprepair

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/flowhold"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and TCP repair (CAP_NET_ADMIN)")
	}
}

// nsName is a namespace name unique to this process and test.
func nsName(t testing.TB, role string) string {
	n := strings.NewReplacer("/", "-", " ", "_", "#", "_").Replace(t.Name())
	return fmt.Sprintf("trep-%d-%s-%s", os.Getpid(), n, role)
}

// lab is three namespaces on one Ethernet segment: the peer P owns a
// bridge (br0) with one veth to host A and one to host B. The service
// address vip starts on A and moves to B, as a floating address does in a
// failover:
//
//	A eth0 .2 (+ vip) ⇄ pa ┐
//	                      br0 .1  (P)
//	B eth0 .3 (+ vip) ⇄ pb ┘
//
// Neighbour entries are static (P's entry for vip is switched to B's MAC
// when the address moves, as a gratuitous ARP would), so no ARP or NDP
// crosses the segment.
type lab struct {
	p, a, b             *testnet.NS
	pAddr, aAddr, bAddr netip.Addr
	vip                 netip.Addr
	bits                int
	pMAC, aMAC, bMAC    net.HardwareAddr
	holdA, holdB        *flowhold.Holder
}

func newLab(t testing.TB, v6 bool) *lab {
	t.Helper()
	needRoot(t)
	l := &lab{
		p: testnet.TempNS(t, nsName(t, "p")),
		a: testnet.TempNS(t, nsName(t, "a")),
		b: testnet.TempNS(t, nsName(t, "b")),
	}
	if v6 {
		l.pAddr, l.aAddr, l.bAddr = netip.MustParseAddr("2001:db8:99::1"), netip.MustParseAddr("2001:db8:99::2"), netip.MustParseAddr("2001:db8:99::3")
		l.vip, l.bits = netip.MustParseAddr("2001:db8:99::10"), 64
	} else {
		l.pAddr, l.aAddr, l.bAddr = netip.MustParseAddr("10.99.1.1"), netip.MustParseAddr("10.99.1.2"), netip.MustParseAddr("10.99.1.3")
		l.vip, l.bits = netip.MustParseAddr("10.99.1.10"), 24
	}
	l.pMAC = net.HardwareAddr{0x02, 0x99, 0, 0, 0, 1}
	l.aMAC = net.HardwareAddr{0x02, 0x99, 0, 0, 0, 2}
	l.bMAC = net.HardwareAddr{0x02, 0x99, 0, 0, 0, 3}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(testnet.AddVeth(l.a, "eth0", l.p, "pa", testnet.VethOptions{MAC: l.aMAC}))
	must(testnet.AddVeth(l.b, "eth0", l.p, "pb", testnet.VethOptions{MAC: l.bMAC}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"link", "add", "br0", "address", l.pMAC.String(), "type", "bridge"},
		{"link", "set", "pa", "master", "br0", "up"},
		{"link", "set", "pb", "master", "br0", "up"},
		{"link", "set", "br0", "up"},
	} {
		_, err := l.p.Run(ctx, "ip", args...)
		must(err)
	}
	must(l.p.AddAddr("br0", netip.PrefixFrom(l.pAddr, l.bits)))
	for _, h := range []struct {
		ns   *testnet.NS
		addr netip.Addr
	}{{l.a, l.aAddr}, {l.b, l.bAddr}} {
		must(h.ns.LinkUp("eth0"))
		must(h.ns.AddAddr("eth0", netip.PrefixFrom(h.addr, l.bits)))
		must(h.ns.AddNeigh("eth0", l.pAddr, l.pMAC))
	}
	must(l.p.AddNeigh("br0", l.aAddr, l.aMAC))
	must(l.p.AddNeigh("br0", l.bAddr, l.bMAC))
	must(l.addVIP(l.a))
	waitUsable(t, l.p, l.pAddr)
	waitUsable(t, l.a, l.aAddr)
	waitUsable(t, l.b, l.bAddr)
	waitUsable(t, l.a, l.vip)
	must(l.p.AddNeigh("br0", l.vip, l.aMAC))
	for _, h := range []struct {
		ns  *testnet.NS
		dev string
	}{{l.a, "eth0"}, {l.b, "eth0"}, {l.p, "br0"}} {
		must(h.ns.WaitUp(h.dev, 5*time.Second))
	}
	for _, h := range []struct {
		ns *testnet.NS
		hp **flowhold.Holder
	}{{l.a, &l.holdA}, {l.b, &l.holdB}} {
		must(h.ns.Do(func() (err error) {
			*h.hp, err = flowhold.New("fulcrum_hold")
			return err
		}))
		hd := *h.hp
		t.Cleanup(func() { _ = hd.Close() })
	}
	return l
}

func (l *lab) vipPrefix() netip.Prefix {
	return netip.PrefixFrom(l.vip, l.vip.BitLen())
}

// addVIP adds vip to ns's eth0 (see waitUsable: a test that adds it
// mid-way waits for it with moveVIPTo).
func (l *lab) addVIP(ns *testnet.NS) error { return ns.AddAddr("eth0", l.vipPrefix()) }

// moveVIPTo adds vip on ns and waits until it is usable.
func (l *lab) moveVIPTo(t testing.TB, ns *testnet.NS) {
	t.Helper()
	if err := l.addVIP(ns); err != nil {
		t.Fatal(err)
	}
	waitUsable(t, ns, l.vip)
}

func (l *lab) delVIP(t testing.TB, ns *testnet.NS) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := ns.Run(ctx, "ip", "addr", "del", l.vipPrefix().String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
}

// pointVIPAt switches P's neighbour entry for vip (the gratuitous ARP or
// unsolicited neighbour advertisement of a real failover).
func (l *lab) pointVIPAt(t testing.TB, mac net.HardwareAddr) {
	t.Helper()
	if err := l.p.AddNeigh("br0", l.vip, mac); err != nil {
		t.Fatal(err)
	}
}

// connect returns P's and A's ends of a connection from P to vip:port on
// A. With dual, A listens on the dual-stack wildcard, so an IPv4
// connection's accepted socket is AF_INET6 with IPv4-mapped addresses.
func (l *lab) connect(t testing.TB, dual bool) (p, a *net.TCPConn) {
	t.Helper()
	addr := netip.AddrPortFrom(l.vip, 0).String()
	network := "tcp"
	if dual {
		addr, network = "[::]:0", "tcp"
	}
	ln, err := l.a.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pc, err := l.p.Dial(ctx, nil, "tcp", netip.AddrPortFrom(l.vip, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	ac, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ac.Close() })
	return pc.(*net.TCPConn), ac.(*net.TCPConn)
}

// restoreIn restores s in namespace ns.
func restoreIn(t testing.TB, ns *testnet.NS, s *State, o RestoreOptions) *net.TCPConn {
	t.Helper()
	var c *net.TCPConn
	err := ns.Do(func() (err error) {
		c, err = Restore(s, o)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// pattern is a checked byte stream: byte i is tab[i mod len(tab)], with a
// prime table length so that no power-of-two shift maps the stream onto
// itself.
type pattern struct{ tab []byte }

const patternLen = 65521

func newPattern(seed uint64) pattern {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	tab := make([]byte, patternLen)
	for i := range tab {
		tab[i] = byte(r.Uint32())
	}
	return pattern{tab}
}

// fill sets b to the stream's bytes from offset off.
func (p pattern) fill(b []byte, off int64) {
	for len(b) > 0 {
		i := int(off % patternLen)
		n := copy(b, p.tab[i:])
		b, off = b[n:], off+int64(n)
	}
}

// check compares b with the stream from offset off.
func (p pattern) check(b []byte, off int64) error {
	for len(b) > 0 {
		i := int(off % patternLen)
		n := min(len(b), patternLen-i)
		if !bytes.Equal(b[:n], p.tab[i:i+n]) {
			for j := range n {
				if b[j] != p.tab[i+j] {
					return fmt.Errorf("stream corrupt at byte %d: got %#02x, want %#02x", off+int64(j), b[j], p.tab[i+j])
				}
			}
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

const (
	ioChunk = 64 << 10
	ioTick  = 10 * time.Millisecond // how soon a stoppable loop notices stop
)

// pump is one direction of a checked stream on one connection end: a
// writer or a reader that runs until total bytes, the deadline, or stop.
type pump struct {
	off  atomic.Int64
	done chan error
}

// stoppable returns whether stop is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// startWriter writes p's stream from `from` to total on c, never past
// *limit (nil: no limit), which the test raises to pace the phases. With a
// non-nil stop it writes in ioTick slices and returns when stop is closed,
// leaving off exact (the kernel took exactly off bytes).
func startWriter(c *net.TCPConn, p pattern, from, total int64, limit *atomic.Int64, stop <-chan struct{}, deadline time.Time) *pump {
	pm := &pump{done: make(chan error, 1)}
	pm.off.Store(from)
	go func() {
		buf := make([]byte, ioChunk)
		for off := from; off < total; {
			if stopped(stop) {
				pm.done <- nil
				return
			}
			if time.Now().After(deadline) {
				pm.done <- fmt.Errorf("writer: deadline at %d of %d bytes", off, total)
				return
			}
			end := total
			if limit != nil {
				end = min(end, limit.Load())
			}
			if off >= end {
				time.Sleep(time.Millisecond)
				continue
			}
			d := deadline
			if stop != nil || limit != nil {
				d = earlier(deadline, time.Now().Add(ioTick))
			}
			_ = c.SetWriteDeadline(d)
			n := int(min(int64(len(buf)), end-off))
			p.fill(buf[:n], off)
			w, err := c.Write(buf[:n])
			off += int64(w)
			pm.off.Store(off)
			if err != nil && !isTimeout(err) {
				pm.done <- fmt.Errorf("writer at %d: %w", off, err)
				return
			}
		}
		pm.done <- nil
	}()
	return pm
}

// startReader reads and checks p's stream from `from` to total on c,
// never past *limit (nil: no limit).
func startReader(c *net.TCPConn, p pattern, from, total int64, limit *atomic.Int64, stop <-chan struct{}, deadline time.Time) *pump {
	pm := &pump{done: make(chan error, 1)}
	pm.off.Store(from)
	go func() {
		buf := make([]byte, ioChunk)
		for off := from; off < total; {
			if stopped(stop) {
				pm.done <- nil
				return
			}
			if time.Now().After(deadline) {
				pm.done <- fmt.Errorf("reader: deadline at %d of %d bytes", off, total)
				return
			}
			end := total
			if limit != nil {
				end = min(end, limit.Load())
			}
			if off >= end {
				time.Sleep(time.Millisecond)
				continue
			}
			d := deadline
			if stop != nil || limit != nil {
				d = earlier(deadline, time.Now().Add(ioTick))
			}
			_ = c.SetReadDeadline(d)
			n := int(min(int64(len(buf)), end-off))
			r, err := c.Read(buf[:n])
			if cerr := p.check(buf[:r], off); cerr != nil {
				pm.done <- cerr
				return
			}
			off += int64(r)
			pm.off.Store(off)
			if err != nil && !isTimeout(err) {
				pm.done <- fmt.Errorf("reader at %d: %w", off, err)
				return
			}
		}
		pm.done <- nil
	}()
	return pm
}

func (pm *pump) wait(t testing.TB, what string) int64 {
	t.Helper()
	if err := <-pm.done; err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return pm.off.Load()
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// atomicInt is an atomic.Int64 that can be embedded by value in a test's
// frame and passed as a limit.
type atomicInt struct{ atomic.Int64 }

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
