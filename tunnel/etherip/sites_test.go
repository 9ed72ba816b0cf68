//go:build linux

package etherip

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// Two "data centres" A and B, joined by a veth "WAN", each with a bridge
// br0 and a "VM" namespace on it:
//
//	vmA eth0 ─ vm0 [br0 in dcA] (tunnel port)  wan0 ══ wan0  (tunnel port) [br0 in dcB] vm0 ─ eth0 vmB
//
// The VMs share one subnet; whatever joins the two bridges (an EtherIP
// endpoint pair, a kernel tunnel, a plain veth) is what carries their
// traffic. All addresses are in the benchmarking ranges and exist only
// inside the test's namespaces.
type sites struct {
	dcA, dcB, vmA, vmB *testnet.NS

	wanA4, wanB4, wanA6, wanB6 netip.Addr
	vmA4, vmB4, vmA6, vmB6     netip.Addr
}

var (
	// Addresses are fixed; namespaces isolate concurrent tests.
	siteWAN4 = [2]string{"198.18.97.1/24", "198.18.97.2/24"}
	siteWAN6 = [2]string{"2001:db8:97::1/64", "2001:db8:97::2/64"}
	siteVM4  = [2]string{"198.19.77.1/24", "198.19.77.2/24"}
	siteVM6  = [2]string{"2001:db8:77::1/64", "2001:db8:77::2/64"}
)

// newSites builds the topology with the VMs' interfaces at vmMTU (0: 1500).
func newSites(tb testing.TB, vmMTU int) *sites {
	tb.Helper()
	testnet.SkipIfNotRoot(tb)
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	prefix := fmt.Sprintf("eip-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	s := &sites{
		dcA: testnet.TempNS(tb, prefix+"-dcA"),
		dcB: testnet.TempNS(tb, prefix+"-dcB"),
		vmA: testnet.TempNS(tb, prefix+"-vmA"),
		vmB: testnet.TempNS(tb, prefix+"-vmB"),
	}
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	must(testnet.AddVeth(s.dcA, "wan0", s.dcB, "wan0", testnet.VethOptions{}))
	for i, dc := range []*testnet.NS{s.dcA, s.dcB} {
		must(dc.AddAddr("wan0", p(siteWAN4[i])))
		must(dc.AddAddr("wan0", p(siteWAN6[i])))
		must(dc.LinkUp("wan0"))
		must(withNetlink(dc, func(h *netlink.Handle) error {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
			if err := h.LinkAdd(br); err != nil {
				return err
			}
			return h.LinkSetUp(br)
		}))
		// No IPv6 on the bridge itself: its router solicitations and MLD
		// reports would be the only noise crossing the tunnel.
		must(dc.SetSysctl("net.ipv6.conf.br0.disable_ipv6", "1"))
	}
	for i, pair := range [][2]*testnet.NS{{s.vmA, s.dcA}, {s.vmB, s.dcB}} {
		vm, dc := pair[0], pair[1]
		must(testnet.AddVeth(vm, "eth0", dc, "vm0", testnet.VethOptions{MTU: vmMTU}))
		must(vm.AddAddr("eth0", p(siteVM4[i])))
		must(vm.AddAddr("eth0", p(siteVM6[i])))
		must(vm.LinkUp("eth0"))
		must(dc.SetSysctl("net.ipv6.conf.vm0.disable_ipv6", "1"))
		must(enslave(dc, "vm0", "br0"))
	}
	for _, dc := range []*testnet.NS{s.dcA, s.dcB} {
		must(dc.WaitUp("wan0", 5*time.Second))
	}
	s.wanA4, s.wanB4 = p(siteWAN4[0]).Addr(), p(siteWAN4[1]).Addr()
	s.wanA6, s.wanB6 = p(siteWAN6[0]).Addr(), p(siteWAN6[1]).Addr()
	s.vmA4, s.vmB4 = p(siteVM4[0]).Addr(), p(siteVM4[1]).Addr()
	s.vmA6, s.vmB6 = p(siteVM6[0]).Addr(), p(siteVM6[1]).Addr()
	return s
}

// withNetlink runs fn with a netlink handle whose sockets live in ns.
func withNetlink(ns *testnet.NS, fn func(h *netlink.Handle) error) error {
	return ns.Do(func() error {
		h, err := netlink.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		return fn(h)
	})
}

// enslave makes dev a port of bridge br and sets it up.
func enslave(ns *testnet.NS, dev, br string) error {
	return withNetlink(ns, func(h *netlink.Handle) error {
		l, err := h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("%s: %w", dev, err)
		}
		b, err := h.LinkByName(br)
		if err != nil {
			return fmt.Errorf("%s: %w", br, err)
		}
		if err := h.LinkSetMaster(l, b); err != nil {
			return fmt.Errorf("enslave %s to %s: %w", dev, br, err)
		}
		return h.LinkSetUp(l)
	})
}

// outer returns the WAN addresses of A and B in the given family.
func (s *sites) outer(v6 bool) (a, b netip.Addr) {
	if v6 {
		return s.wanA6, s.wanB6
	}
	return s.wanA4, s.wanB4
}

// etherIP joins the bridges with a pair of endpoints; cfg supplies the
// options, Local/Remote/Name are filled in. Closed in cleanup.
func (s *sites) etherIP(tb testing.TB, v6 bool, cfg Config) (a, b *Endpoint) {
	tb.Helper()
	la, lb := s.outer(v6)
	for i, side := range []struct {
		ns            *testnet.NS
		local, remote netip.Addr
		ep            **Endpoint
	}{{s.dcA, la, lb, &a}, {s.dcB, lb, la, &b}} {
		c := cfg
		c.Name, c.Local, c.Remote = "eip0", side.local, side.remote
		if err := side.ns.Do(func() (err error) {
			*side.ep, err = New(c)
			return err
		}); err != nil {
			tb.Fatalf("side %d: New: %v", i, err)
		}
		ep := *side.ep
		tb.Cleanup(func() { ep.Close() })
		if err := enslave(side.ns, ep.Name(), "br0"); err != nil {
			tb.Fatal(err)
		}
	}
	return a, b
}

// echoServer starts a TCP echo server in vmB on port; it stops in cleanup.
func (s *sites) echoServer(tb testing.TB, port int) {
	tb.Helper()
	ln, err := s.vmB.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		tb.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	// Cleanup closes the listener and every connection, so no handler
	// outlives the test even if a FIN was lost with the namespaces.
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 1000 { // bounded: tests make a handful of connections
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// echo sends size random bytes from vmA to the echo server at dst and
// checks that the same bytes (SHA-256) come back.
func (s *sites) echo(tb testing.TB, dst netip.Addr, port, size int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.vmA.Dial(ctx, nil, "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
	if err != nil {
		tb.Fatalf("dial %s: %v", dst, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, size)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		tb.Fatalf("echo via %s: read after %d bytes: %v", dst, n, err)
	}
	if err := <-werr; err != nil {
		tb.Fatalf("echo via %s: write: %v", dst, err)
	}
	if n != int64(size) || [32]byte(h.Sum(nil)) != want {
		tb.Fatalf("echo via %s: got %d bytes, sha256 %x; want %d bytes, %x", dst, n, h.Sum(nil), size, want)
	}
}

// packetConn is an AF_PACKET socket bound to one interface in a namespace,
// for watching or injecting frames.
type packetConn struct{ fd int }

func openPacket(tb testing.TB, ns *testnet.NS, dev string, proto uint16) *packetConn {
	tb.Helper()
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		p := proto<<8 | proto>>8
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(p))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: p, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		tb.Fatalf("packet socket on %s/%s: %v", ns.Name(), dev, err)
	}
	pc := &packetConn{fd: fd}
	tb.Cleanup(func() { unix.Close(fd) })
	return pc
}

// await reads frames until match returns true or timeout passes; it
// returns the matching frame (nil on timeout).
func (p *packetConn) await(timeout time.Duration, match func([]byte) bool) []byte {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) { // each read waits ≤ 50 ms
		n, _, err := unix.Recvfrom(p.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return nil
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	return nil
}

// rawSender is a raw protocol-97 socket in a namespace, bound to src and
// connected to dst, for crafting EtherIP packets.
type rawSender struct{ fd int }

func openRawSender(tb testing.TB, ns *testnet.NS, src, dst netip.Addr) *rawSender {
	tb.Helper()
	var fd int
	err := ns.Do(func() (err error) {
		fam := unix.AF_INET
		if src.Is6() {
			fam = unix.AF_INET6
		}
		fd, err = unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, Protocol)
		if err != nil {
			return err
		}
		drop := unix.SockFilter{Code: 0x06}
		if err = unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop}); err == nil {
			if err = unix.Bind(fd, sockaddr(src)); err == nil {
				err = unix.Connect(fd, sockaddr(dst))
			}
		}
		if err != nil {
			unix.Close(fd)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("raw sender %s→%s: %v", src, dst, err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return &rawSender{fd: fd}
}

func (r *rawSender) send(tb testing.TB, pkt []byte) {
	tb.Helper()
	for range 100 { // ENOBUFS when the veth backlog is full: retry briefly
		_, err := unix.Write(r.fd, pkt)
		if err == nil {
			return
		}
		if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
			tb.Fatalf("raw send: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatal("raw send: no buffer space for 100 ms")
}

// waitFor polls cond every millisecond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
