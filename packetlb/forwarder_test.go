package packetlb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/lbsp"
)

var (
	pVIP    = netip.MustParseAddrPort("[fd00:3::100]:80")
	pClient = netip.MustParseAddr("fd00:1::2")
	pServer = []netip.Addr{netip.MustParseAddr("fd00:2::11"), netip.MustParseAddr("fd00:2::12"), netip.MustParseAddr("fd00:2::13")}
)

type pktLab struct {
	client, lb *testnet.NS
	servers    []*testnet.NS
	mu         sync.Mutex
	seen       map[string][]lbsp.Option // server -> options its SYNs carried
	remotes    map[string][]string      // server -> client addresses it saw
}

func ipIn(t testing.TB, ns *testnet.NS, args ...string) {
	t.Helper()
	if out, err := ns.Run(context.Background(), "ip", args...); err != nil {
		t.Fatalf("%s: ip %v: %v %s", ns.Name(), args, err, out)
	}
}

// newPktLab: client — lb (router, the forwarder's TUN) — bridge — three
// servers, each holding the VIP on its loopback and routing back through
// the lb.
func newPktLab(t testing.TB) *pktLab { return newPktLabWith(t, []netip.AddrPort{pVIP}) }

// newPktLabWith builds the lab with the servers listening on every one of
// listen (VIP and port: each VIP goes on their loopback).
func newPktLabWith(t testing.TB, listen []netip.AddrPort) *pktLab {
	l := &pktLab{client: testnet.TempNS(t, "pk-cl"), lb: testnet.TempNS(t, "pk-lb"),
		seen: map[string][]lbsp.Option{}, remotes: map[string][]string{}}
	if err := testnet.AddVeth(l.client, "eth0", l.lb, "c0", testnet.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	ipIn(t, l.lb, "link", "add", "br-s", "type", "bridge")
	for i := range pServer {
		s := testnet.TempNS(t, fmt.Sprintf("pk-s%d", i+1))
		l.servers = append(l.servers, s)
		if err := testnet.AddVeth(l.lb, fmt.Sprintf("s%d", i+1), s, "eth0", testnet.VethOptions{}); err != nil {
			t.Fatal(err)
		}
		ipIn(t, l.lb, "link", "set", fmt.Sprintf("s%d", i+1), "master", "br-s", "up")
		ipIn(t, s, "link", "set", "lo", "up")
		vips := map[netip.Addr]bool{}
		for _, ap := range listen {
			if !vips[ap.Addr()] {
				vips[ap.Addr()] = true
				ipIn(t, s, "addr", "add", ap.Addr().String()+"/128", "dev", "lo", "nodad")
			}
		}
		ipIn(t, s, "addr", "add", pServer[i].String()+"/64", "dev", "eth0", "nodad")
		ipIn(t, s, "link", "set", "eth0", "up")
		ipIn(t, s, "-6", "route", "add", "default", "via", "fd00:2::1")
	}
	ipIn(t, l.lb, "link", "set", "br-s", "up")
	ipIn(t, l.lb, "addr", "add", "fd00:2::1/64", "dev", "br-s", "nodad")
	ipIn(t, l.lb, "addr", "add", "fd00:1::1/64", "dev", "c0", "nodad")
	ipIn(t, l.lb, "link", "set", "c0", "up")
	if err := l.lb.SetSysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	ipIn(t, l.client, "link", "set", "lo", "up")
	ipIn(t, l.client, "addr", "add", pClient.String()+"/64", "dev", "eth0", "nodad")
	ipIn(t, l.client, "link", "set", "eth0", "up")
	ipIn(t, l.client, "-6", "route", "add", "fd00:3::/64", "via", "fd00:1::1")
	for i, s := range l.servers {
		name := pServer[i].String()
		for _, ap := range listen {
			var ln net.Listener
			if err := s.Do(func() error {
				lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error { return lbsp.EnableRecvDestOptsRaw(c) }}
				var err error
				ln, err = lc.Listen(context.Background(), "tcp6", ap.String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go l.serve(ln, name)
		}
	}
	return l
}

// chooser is an LBSP-aware chooser: the option's server when it is one of
// the servers, else round-robin.
func chooser(n *atomic.Int64) func(p Packet) (netip.Addr, func(), error) {
	return func(p Packet) (netip.Addr, func(), error) {
		if p.DestOpts != nil {
			if r, err := (lbsp.Parser{Type: lbsp.DefaultType, KernelChecked: true}).Parse(p.DestOpts); err == nil && r.Found && r.Option.HasServer() {
				for _, s := range pServer {
					if s == r.Option.Server {
						return s, nil, nil
					}
				}
			}
		}
		return pServer[int(n.Add(1)-1)%len(pServer)], nil, nil
	}
}

// serve answers each connection with name, recording the client's
// address and option.
func (l *pktLab) serve(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if hdrs, err := lbsp.TCPDestOpts(c.(*net.TCPConn)); err == nil {
			for _, h := range hdrs {
				if r, err := (lbsp.Parser{Type: lbsp.DefaultType, KernelChecked: true}).Parse(h); err == nil && r.Found {
					l.mu.Lock()
					l.seen[name] = append(l.seen[name], r.Option)
					l.mu.Unlock()
				}
			}
		}
		l.mu.Lock()
		l.remotes[name] = append(l.remotes[name], c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String())
		l.mu.Unlock()
		c.Write([]byte(name))
		c.Close()
	}
}

func (l *pktLab) connect(t testing.TB, o *lbsp.Option) string {
	return l.connectTo(t, pVIP, pClient, o)
}

// connectTo connects from src (an address of the client) to to.
func (l *pktLab) connectTo(t testing.TB, to netip.AddrPort, src netip.Addr, o *lbsp.Option) string {
	t.Helper()
	var c net.Conn
	if err := l.client.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Control: func(_, _ string, rc syscall.RawConn) error {
			if o == nil {
				return nil
			}
			return lbsp.SetDestOptsRaw(rc, lbsp.BuildDestOpts(0, o.Append(nil, lbsp.DefaultType)))
		}}
		var err error
		c, err = d.Dial("tcp6", to.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Single pass: the lb sees each client packet once and no server packet;
// the server sees the client's own address and the client's option; a
// server named in the option serves; without one, the chooser balances.
func TestSinglePassDSR(t *testing.T) {
	l := newPktLab(t)
	f := l.startForwarder(t)
	seen := map[string]int{}
	for range 6 {
		seen[l.connect(t, nil)]++
	}
	if len(seen) != 3 {
		t.Fatalf("without an option: %v, want the three servers", seen)
	}
	c1 := lbsp.Option{Client: lbsp.ClientFromAddr(pClient), Server: pServer[1]}
	for range 5 {
		if who := l.connect(t, &c1); who != pServer[1].String() {
			t.Fatalf("option naming %s: served by %s", pServer[1], who)
		}
	}
	l.mu.Lock()
	for s, rs := range l.remotes {
		for _, r := range rs {
			if r != pClient.String() {
				t.Errorf("%s saw the client as %s: the source was translated", s, r)
			}
		}
	}
	opts := l.seen[pServer[1].String()]
	l.mu.Unlock()
	if len(opts) < 5 || opts[len(opts)-1].Client != c1.Client {
		t.Errorf("server %s saw options %v: the client's option did not reach it", pServer[1], opts)
	}
	st := f.Stats()
	drops := map[string]uint64{}
	for i, n := range st.Drops {
		if n > 0 {
			drops[DropName(i)] = n
		}
	}
	t.Logf("forwarder: %d packets, %d sent, %d flows, drops %v", st.Packets, st.Sent, st.NewFlows, drops)
	if st.NewFlows != 11 || st.Sent == 0 || st.Drops[DropNotVirtual] != 0 || st.Drops[DropParse] != 0 {
		t.Errorf("stats %+v: want 11 flows and no server packet (not_virtual) through the forwarder", st)
	}
	// Each connection is SYN, ACK, FIN, ACK (and sometimes an RST) from
	// the client: far fewer packets than a full proxy's two connections.
	if st.Packets > 11*8 {
		t.Errorf("%d packets for 11 connections: more than the client's own", st.Packets)
	}
}
