//go:build linux

package etherip

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestTunnel carries ping and a few MiB of TCP, byte-exact, between the VMs
// through a pair of endpoints, over an IPv4 and an IPv6 outer, with IPv4
// and IPv6 inside, and checks with tshark that the wire format is version 3
// with zero reserved bits.
func TestTunnel(t *testing.T) {
	for _, outer6 := range []bool{false, true} {
		name := "outer-ipv4"
		if outer6 {
			name = "outer-ipv6"
		}
		t.Run(name, func(t *testing.T) {
			s := newSites(t, DefaultMTU(0, outer6))
			epA, epB := s.etherIP(t, outer6, Config{})
			if got, want := epA.MTU(), DefaultMTU(1500, outer6); got != want {
				t.Fatalf("MTU %d, want %d", got, want)
			}
			cap := startTshark(t, s.dcA, "wan0")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, dst := range []netip.Addr{s.vmB4, s.vmB6} {
				r, err := testnet.Ping(ctx, s.vmA, dst, 3, 20*time.Millisecond, 2*time.Second)
				if err != nil {
					t.Fatalf("ping %s: %v", dst, err)
				}
				if r.Received != r.Sent {
					t.Fatalf("ping %s: %d of %d replies", dst, r.Received, r.Sent)
				}
			}
			s.echoServer(t, 7000)
			s.echo(t, s.vmB4, 7000, 4<<20)
			s.echo(t, s.vmB6, 7000, 2<<20)
			sa, sb := epA.Stats(), epB.Stats()
			t.Logf("A: %+v", sa)
			t.Logf("B: %+v", sb)
			if sa.TxPackets == 0 || sa.RxPackets == 0 || sb.TxPackets == 0 || sb.RxPackets == 0 {
				t.Fatal("endpoints counted no traffic")
			}
			for r, n := range sa.Drops {
				if n != 0 {
					t.Errorf("A dropped %d (%v)", n, DropReason(r))
				}
			}
			if cap != nil {
				cap.check(t)
			}
		})
	}
}

// tsharkCapture decodes EtherIP headers seen on an interface.
type tsharkCapture struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	cancel context.CancelFunc
}

// startTshark starts tshark on dev in ns, printing etherip.ver and
// etherip.reserved of the first protocol-97 packets, and waits until it
// captures. It returns nil (and logs why) when tshark is not installed.
func startTshark(t *testing.T, ns *testnet.NS, dev string) *tsharkCapture {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: skipping the wire-format assertion")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c := &tsharkCapture{cancel: cancel}
	c.cmd = ns.Command(ctx, "tshark", "-i", dev, "-l", "-n", "-c", "8", "-a", "duration:25",
		"-f", "ip proto 97 or ip6 proto 97", "-T", "fields", "-e", "etherip.ver", "-e", "etherip.reserved")
	c.cmd.Stdout = &c.out
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("tshark: %v", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() { // ends when tshark exits
			if !sent && strings.Contains(sc.Text(), "Capturing on") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cancel()
			_ = c.cmd.Wait()
			t.Fatal("tshark exited before capturing")
		}
	case <-time.After(20 * time.Second):
		cancel()
		_ = c.cmd.Wait()
		t.Fatal("tshark did not start capturing within 20 s")
	}
	t.Cleanup(func() { cancel(); _ = c.cmd.Wait() })
	return c
}

func (c *tsharkCapture) check(t *testing.T) {
	t.Helper()
	_ = c.cmd.Wait() // -c 8 packets, long since sent
	c.cancel()
	lines := strings.Fields(strings.TrimSpace(c.out.String()))
	if len(lines) < 2 {
		t.Fatalf("tshark decoded no EtherIP packet; output %q", c.out.String())
	}
	for i := 0; i+1 < len(lines); i += 2 {
		if lines[i] != "3" || (lines[i+1] != "0x0000" && lines[i+1] != "0" && lines[i+1] != "0x000") {
			t.Fatalf("tshark: etherip.ver=%s etherip.reserved=%s, want 3 and 0", lines[i], lines[i+1])
		}
	}
	t.Logf("tshark decoded %d EtherIP headers: version 3, reserved 0", len(lines)/2)
}

const testEtherType = 0x88b5 // IEEE 802 local experimental

// testFrame is a broadcast frame that the bridge floods to the VM.
func testFrame(tag string) []byte {
	f := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x97, testEtherType >> 8, testEtherType & 0xff}
	f = append(f, tag...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// TestReversedHeader: a packet with the reversed header 0x03 0x00 from the
// peer is dropped and counted by default, and delivered with
// AcceptReversed.
func TestReversedHeader(t *testing.T) {
	s := newSites(t, 0)
	for _, accept := range []bool{false, true} {
		t.Run(fmt.Sprintf("accept=%v", accept), func(t *testing.T) {
			var ep *Endpoint
			if err := s.dcA.Do(func() (err error) {
				ep, err = New(Config{Name: "eip0", Local: s.wanA4, Remote: s.wanB4, AcceptReversed: accept})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			if err := enslave(s.dcA, ep.Name(), "br0"); err != nil {
				t.Fatal(err)
			}
			watch := openPacket(t, s.vmA, "eth0", testEtherType)
			snd := openRawSender(t, s.dcB, s.wanB4, s.wanA4)
			tag := fmt.Sprintf("reversed-%v", accept)
			snd.send(t, append([]byte{0x03, 0x00}, testFrame(tag)...))
			got := watch.await(time.Second, func(f []byte) bool { return bytes.Contains(f, []byte(tag)) })
			if accept {
				// The frame reaches the VM inside the TAP write, before
				// the counter is incremented.
				waitFor(time.Second, func() bool { return ep.Stats().RxPackets == 1 })
				if st := ep.Stats(); got == nil || st.RxPackets != 1 {
					t.Fatalf("reversed header not delivered (rx %d, drops %v)", st.RxPackets, st.Drops)
				}
				return
			}
			if got != nil {
				t.Fatal("reversed header delivered though not accepted")
			}
			st := ep.Stats()
			if st.Drops[DropReversed] != 1 || st.RxPackets != 0 {
				t.Fatalf("drops %v, rx %d; want one %v", st.Drops, st.RxPackets, DropReversed)
			}
			// The correct header, for contrast, is delivered.
			snd.send(t, Encap(nil, testFrame(tag+"-good")))
			if watch.await(time.Second, func(f []byte) bool { return bytes.Contains(f, []byte(tag+"-good")) }) == nil {
				t.Fatal("a correct packet was not delivered")
			}
		})
	}
}

// TestMalformedFlood sends a bounded flood of malformed protocol-97
// packets, from the peer and from a foreign address: every one is counted
// under its reason and dropped, nothing is allocated per packet, and the
// tunnel still carries traffic afterwards.
func TestMalformedFlood(t *testing.T) {
	const perKind, foreign = 20000, 10000
	s := newSites(t, DefaultMTU(0, false))
	foreignAddr := netip.MustParseAddr("198.18.97.3")
	if err := s.dcB.AddAddr("wan0", netip.PrefixFrom(foreignAddr, 24)); err != nil {
		t.Fatal(err)
	}
	epA, _ := s.etherIP(t, false, Config{})
	frame := testFrame("flood")
	kinds := []struct {
		reason DropReason
		pkt    []byte
	}{
		{DropShort, []byte{0x30}},
		{DropBadVersion, append([]byte{0x40, 0x00}, frame...)},
		{DropReservedBits, append([]byte{0x30, 0x01}, frame...)},
		{DropReversed, append([]byte{0x03, 0x00}, frame...)},
		{DropRuntFrame, append([]byte{0x30, 0x00}, frame[:10]...)},
	}
	snd := openRawSender(t, s.dcB, s.wanB4, s.wanA4)
	fsnd := openRawSender(t, s.dcB, foreignAddr, s.wanA4)
	watch := openPacket(t, s.vmA, "eth0", testEtherType)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	sent := 0
	// Paced in bursts so that the receive buffer never overflows and
	// every packet is accounted for.
	counted := func() int {
		st, rs := epA.Stats(), epA.ReceiverStats()
		n := int(rs.Drops[DropForeignSource])
		for _, k := range kinds {
			n += int(st.Drops[k.reason])
		}
		return n
	}
	for i := range perKind*len(kinds) + foreign {
		if i < perKind*len(kinds) {
			snd.send(t, kinds[i%len(kinds)].pkt)
		} else {
			fsnd.send(t, kinds[1].pkt)
		}
		sent++
		if sent%2000 == 0 && !waitFor(5*time.Second, func() bool { return counted() >= sent-500 }) {
			t.Fatalf("after %d packets only %d counted", sent, counted())
		}
	}
	if !waitFor(5*time.Second, func() bool { return counted() == sent }) {
		t.Fatalf("%d sent, %d counted", sent, counted())
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&ms1)
	st, rs := epA.Stats(), epA.ReceiverStats()
	for _, k := range kinds {
		if st.Drops[k.reason] != perKind {
			t.Errorf("%v: %d drops, want %d", k.reason, st.Drops[k.reason], perKind)
		}
	}
	if rs.Drops[DropForeignSource] != foreign {
		t.Errorf("foreign_source: %d, want %d", rs.Drops[DropForeignSource], foreign)
	}
	if st.TAPWriteErrors != 0 || watch.await(100*time.Millisecond, func([]byte) bool { return true }) != nil {
		t.Errorf("a malformed packet reached VM-A: %+v", st)
	}
	// The whole test process, the sender included, allocates far less
	// than one object per packet.
	if m := ms1.Mallocs - ms0.Mallocs; m > uint64(sent)/20 {
		t.Errorf("%d allocations for %d malformed packets", m, sent)
	}
	t.Logf("%d malformed packets counted and dropped in %v (%d allocations in the process meanwhile)", sent, elapsed.Round(time.Millisecond), ms1.Mallocs-ms0.Mallocs)
	s.echoServer(t, 7001)
	s.echo(t, s.vmB4, 7001, 1<<20)
}

// TestClampMSSOnWire: VMs with MTU 1500 behind tunnels of MTU 1464 talk
// TCP because the endpoints clamp the MSS of SYNs; the SYN seen by VM-B
// carries the clamped MSS and a valid checksum (the kernel accepts it).
func TestClampMSSOnWire(t *testing.T) {
	s := newSites(t, 1500)
	s.etherIP(t, false, Config{ClampMSS: true})
	s.echoServer(t, 7002)
	for _, tc := range []struct {
		dst  netip.Addr
		want uint16
	}{{s.vmB4, 1464 - 40}, {s.vmB6, 1464 - 60}} {
		watch := openPacket(t, s.vmB, "eth0", 0x0003) // ETH_P_ALL
		s.echo(t, tc.dst, 7002, 1<<20)
		syn := watch.await(2*time.Second, func(f []byte) bool {
			seg := tcpOf(f)
			return seg != nil && seg[13]&0x12 == 0x02 && binary.BigEndian.Uint16(seg[2:]) == 7002
		})
		if syn == nil {
			t.Fatalf("%s: no SYN seen", tc.dst)
		}
		if got := mssOf(tcpOf(syn)); got != tc.want {
			t.Fatalf("%s: SYN MSS %d, want %d", tc.dst, got, tc.want)
		}
		t.Logf("%s: SYN arrived with MSS %d", tc.dst, tc.want)
	}
}

// tcpOf returns the TCP segment of an untagged Ethernet frame, or nil.
func tcpOf(f []byte) []byte {
	if len(f) < 14 {
		return nil
	}
	p := f[14:]
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherTypeIPv4:
		if len(p) >= 20 && p[9] == 6 && len(p) >= int(p[0]&15)*4+20 {
			return p[int(p[0]&15)*4:]
		}
	case etherTypeIPv6:
		if len(p) >= 60 && p[6] == 6 {
			return p[40:]
		}
	}
	return nil
}

func mssOf(seg []byte) uint16 {
	doff := int(seg[12]>>4) * 4
	for i := 20; i+1 < doff && i < len(seg); {
		switch seg[i] {
		case 0:
			return 0
		case 1:
			i++
			continue
		case 2:
			return binary.BigEndian.Uint16(seg[i+2:])
		}
		i += int(seg[i+1])
	}
	return 0
}

// TestMux: tunnels with one local address share one receiver, which
// dispatches by source; a duplicate tunnel is refused; Close of the last
// endpoint closes the receiver.
func TestMux(t *testing.T) {
	s := newSites(t, 0)
	peers := []netip.Addr{s.wanB4, netip.MustParseAddr("198.18.97.4"), netip.MustParseAddr("198.18.97.5")}
	for _, p := range peers[1:] {
		if err := s.dcB.AddAddr("wan0", netip.PrefixFrom(p, 24)); err != nil {
			t.Fatal(err)
		}
	}
	var m Mux
	eps := make([]*Endpoint, len(peers))
	err := s.dcA.Do(func() error {
		for i, p := range peers {
			var err error
			if eps[i], err = m.New(Config{Name: fmt.Sprintf("eip%d", i), Local: s.wanA4, Remote: p}); err != nil {
				return err
			}
		}
		_, err := m.New(Config{Name: "dup", Local: s.wanA4, Remote: peers[1]})
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("duplicate tunnel: err = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, e := range eps {
			if e != nil {
				e.Close()
			}
		}
	}()
	rs := m.Stats()
	if len(rs) != 1 || rs[0].Tunnels != len(peers) || rs[0].Local != s.wanA4 {
		t.Fatalf("receivers %+v, want one with %d tunnels", rs, len(peers))
	}
	// Peer i sends i+1 packets with a bad version: each lands on its own
	// endpoint only.
	for i, p := range peers {
		snd := openRawSender(t, s.dcB, p, s.wanA4)
		for range i + 1 {
			snd.send(t, []byte{0x20, 0, 1, 2})
		}
	}
	ok := waitFor(2*time.Second, func() bool {
		for i, e := range eps {
			if e.Stats().Drops[DropBadVersion] != uint64(i+1) {
				return false
			}
		}
		return true
	})
	if !ok {
		for i, e := range eps {
			t.Errorf("endpoint %d: drops %v", i, e.Stats().Drops)
		}
	}
	if rs := m.Stats(); rs[0].Packets != 6 || rs[0].Drops[DropForeignSource] != 0 {
		t.Errorf("receiver %+v", rs[0])
	}
	for i := range eps {
		eps[i].Close()
		eps[i] = nil
	}
	if rs := m.Stats(); len(rs) != 0 {
		t.Fatalf("receivers left after closing every endpoint: %+v", rs)
	}
}

// TestCloseRemovesTAP: the TAP exists while the endpoint does, Close
// deletes it, stops every goroutine and is idempotent.
func TestClose(t *testing.T) {
	testnet.SkipIfNotRoot(t)
	ns := testnet.TempNS(t, fmt.Sprintf("eip-close-%d", time.Now().UnixNano()%1e9))
	// A veth (this kernel has no dummy driver) gives the endpoints local
	// addresses and routes to their absent peers.
	if err := testnet.AddVeth(ns, "dum0", ns, "dum1", testnet.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"dum0", "dum1"} {
		if err := ns.LinkUp(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"198.18.98.1/24", "2001:db8:98::1/64"} {
		if err := ns.AddAddr("dum0", netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	if err := ns.Do(func() error {
		_, err := New(Config{Name: "a-name-far-too-long-for-linux", Local: netip.MustParseAddr("198.18.98.1"), Remote: netip.MustParseAddr("198.18.98.2")})
		if err == nil || !strings.Contains(err.Error(), "too long") {
			return fmt.Errorf("long TAP name: err = %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{Name: "eipclose4", Local: netip.MustParseAddr("198.18.98.1"), Remote: netip.MustParseAddr("198.18.98.2")},
		{Name: "eipclose6", Local: netip.MustParseAddr("2001:db8:98::1"), Remote: netip.MustParseAddr("2001:db8:98::2"), DontFragment: true, ClampMSS: true},
	} {
		var ep *Endpoint
		if err := ns.Do(func() (err error) { ep, err = New(c); return err }); err != nil {
			t.Fatal(err)
		}
		exists := func() bool {
			var found bool
			_ = withNetlink(ns, func(h *netlink.Handle) error {
				l, err := h.LinkByName(c.Name)
				found = err == nil && l.Attrs().MTU == ep.MTU()
				return nil
			})
			return found
		}
		if !exists() {
			t.Fatalf("TAP %s missing or with the wrong MTU", c.Name)
		}
		if err := ep.Close(); err != nil {
			t.Fatal(err)
		}
		if exists() {
			t.Fatalf("TAP %s still exists after Close", c.Name)
		}
		if err := ep.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

// TestNewErrors: bad configurations are refused before anything is
// created (the too-long TAP name is checked in TestClose, inside a
// namespace).
func TestNewErrors(t *testing.T) {
	t.Parallel()
	a4, b4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	a6 := netip.MustParseAddr("2001:db8::1")
	for _, c := range []Config{
		{},
		{Local: a4},
		{Local: a4, Remote: a6},
		{Local: a4, Remote: a4},
		{Local: a4, Remote: netip.MustParseAddr("224.0.0.1")},
		{Local: netip.IPv4Unspecified(), Remote: b4},
		{Local: a4, Remote: b4, MTU: 40},
		{Local: a4, Remote: b4, MTU: 70000},
		{Local: a4, Remote: b4, OuterMTU: -1},
	} {
		// normalize is what New checks first; calling New itself here
		// would create a TAP in the host namespace if a case slipped
		// through.
		if _, err := c.normalize(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}
