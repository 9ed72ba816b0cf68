package locate

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/pool"
)

type fakeMember struct {
	addr netip.AddrPort
	mu   sync.Mutex
	loc  pool.Location
	why  string
}

func (f *fakeMember) Addr() netip.AddrPort { return f.addr }
func (f *fakeMember) SetLocation(l pool.Location, reason string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := f.loc != l
	f.loc, f.why = l, reason
	return changed
}
func (f *fakeMember) get() (pool.Location, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loc, f.why
}

func run(t *testing.T, ns *testnet.NS, args ...string) {
	t.Helper()
	if out, err := ns.Run(context.Background(), "ip", args...); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// A "VM" on a bridge port is local; the same MAC and IP showing up behind
// the port the Locator is told is a tunnel (after the VM announces itself
// there, as a migrated VM does) is remote; and back.
func TestLocalRemoteAndBack(t *testing.T) {
	dc := testnet.TempNS(t, "loc-dc")
	vma := testnet.TempNS(t, "loc-vma")
	vmb := testnet.TempNS(t, "loc-vmb")
	mac, _ := net.ParseMAC("02:00:00:00:0a:0a")
	if err := testnet.AddVeth(dc, "plocal", vma, "eth0", testnet.VethOptions{PeerMAC: mac}); err != nil {
		t.Fatal(err)
	}
	if err := testnet.AddVeth(dc, "ptun", vmb, "eth0", testnet.VethOptions{PeerMAC: mac}); err != nil {
		t.Fatal(err)
	}
	run(t, dc, "link", "add", "br0", "type", "bridge")
	for _, p := range []string{"plocal", "ptun"} {
		run(t, dc, "link", "set", p, "master", "br0")
		run(t, dc, "link", "set", p, "up")
	}
	run(t, dc, "link", "set", "br0", "up")
	run(t, dc, "addr", "add", "10.9.0.1/24", "dev", "br0")
	run(t, vma, "addr", "add", "10.9.0.10/24", "dev", "eth0")
	run(t, vma, "link", "set", "eth0", "up")
	run(t, vmb, "link", "set", "eth0", "up")

	m := &fakeMember{addr: netip.MustParseAddrPort("10.9.0.10:80")}
	l := New(nil, func() []string { return []string{"ptun"} })
	waitLoc := func(want pool.Location, port string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			dc.Do(func() error { l.Round([]Member{m}); return nil })
			if loc, why := m.get(); loc == want && strings.Contains(why, port) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		loc, why := m.get()
		t.Fatalf("location %v (%s), want %v on %s", loc, why, want, port)
	}
	waitLoc(pool.LocationLocal, "learned on plocal of bridge br0")

	// The VM "migrates": gone from A, up behind the tunnel port, and it
	// announces itself (any frame from it does: here an ARP request).
	run(t, vma, "link", "set", "eth0", "down")
	run(t, vmb, "addr", "add", "10.9.0.10/24", "dev", "eth0")
	announce := func(ns *testnet.NS) {
		c, err := ns.Dial(context.Background(), &net.Dialer{}, "udp", "10.9.0.1:9")
		if err == nil {
			c.Write([]byte{0})
			c.Close()
		}
	}
	announce(vmb)
	waitLoc(pool.LocationRemote, "learned on tunnel ptun of bridge br0")

	// And back.
	run(t, vmb, "link", "set", "eth0", "down")
	run(t, vma, "link", "set", "eth0", "up")
	announce(vma)
	waitLoc(pool.LocationLocal, "learned on plocal")
}

// A member whose neighbour entry is on the tunnel's own interface (no
// bridge) is remote; one on a plain interface is local; an address nobody
// answers for stays unknown.
func TestWithoutBridge(t *testing.T) {
	dc := testnet.TempNS(t, "loc-dc2")
	vm := testnet.TempNS(t, "loc-vm2")
	if err := testnet.AddVeth(dc, "eip0", vm, "eth0", testnet.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	run(t, dc, "addr", "add", "10.8.0.1/24", "dev", "eip0")
	run(t, dc, "link", "set", "eip0", "up")
	run(t, vm, "addr", "add", "10.8.0.10/24", "dev", "eth0")
	run(t, vm, "link", "set", "eth0", "up")
	there := &fakeMember{addr: netip.MustParseAddrPort("10.8.0.10:80")}
	nobody := &fakeMember{addr: netip.MustParseAddrPort("10.8.0.99:80")}
	for _, tc := range []struct {
		tunnels []string
		want    pool.Location
	}{{[]string{"eip0"}, pool.LocationRemote}, {nil, pool.LocationLocal}} {
		l := New(nil, func() []string { return tc.tunnels })
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			dc.Do(func() error { l.Round([]Member{there, nobody}); return nil })
			if loc, _ := there.get(); loc == tc.want {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if loc, why := there.get(); loc != tc.want {
			t.Fatalf("tunnels %v: %v (%s), want %v", tc.tunnels, loc, why, tc.want)
		}
	}
	if loc, _ := nobody.get(); loc != pool.LocationUnknown {
		t.Fatalf("an address nobody answers for is %v", loc)
	}
}
