package netcfg

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// pair makes two namespaces joined by a veth (eth0 in each), up.
func pair(t *testing.T, name string) (a, b *testnet.NS) {
	t.Helper()
	a = testnet.TempNS(t, name+"a")
	b = testnet.TempNS(t, name+"b")
	if err := testnet.AddVeth(a, "eth0", b, "eth0", testnet.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testnet.NS{a, b} {
		if err := n.LinkUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []*testnet.NS{a, b} {
		waitLinkReady(t, n, "eth0")
	}
	return a, b
}

// waitLinkReady waits until dev has carrier and a link-local IPv6 address
// that finished duplicate address detection: before that the kernel drops
// neighbour discovery on the link (a real HA link has long been up).
func waitLinkReady(t *testing.T, ns *testnet.NS, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ready bool
		err := ns.Do(func() error {
			l, err := netlink.LinkByName(dev)
			if err != nil {
				return err
			}
			if l.Attrs().OperState != netlink.OperUp {
				return nil
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
			for _, x := range addrs {
				if x.IP.IsLinkLocalUnicast() && x.Flags&unix.IFA_F_TENTATIVE == 0 {
					ready = true
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s: no carrier or link-local address after 5s", dev, ns.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func neighMAC(t *testing.T, ns *testnet.NS, ip netip.Addr) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		ns, err := netlink.NeighList(0, fam)
		for _, n := range ns {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && n.HardwareAddr != nil {
				mac = n.HardwareAddr
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func TestAddAnnounceRemove(t *testing.T) {
	t.Parallel()
	a, b := pair(t, "fcnc1")
	// b learns neighbours from unsolicited announcements (a router or a
	// host with an entry would update one it has).
	if err := b.SetSysctl("net.ipv4.conf.eth0.arp_accept", "1"); err != nil {
		t.Fatal(err)
	}
	// Linux creates an entry from an untracked NA only as a router.
	if err := b.SetSysctl("net.ipv6.conf.eth0.forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSysctl("net.ipv6.conf.eth0.accept_untracked_na", "1"); err != nil {
		t.Skipf("kernel without accept_untracked_na: %v", err)
	}
	macA, err := a.LinkMAC("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.66.0.10/24", "fd66::10/64"} {
		fa := Address{Prefix: netip.MustParsePrefix(p), Interface: "eth0"}
		err := a.Do(func() error {
			if err := Add(fa, 10*time.Second); err != nil {
				return err
			}
			if ok, err := Present(fa); err != nil || !ok {
				t.Errorf("%s not present after Add (%v)", fa, err)
			}
			// Renewing is a replace, not an error.
			if err := Add(fa, 10*time.Second); err != nil {
				return err
			}
			return Announce(fa)
		})
		if err != nil {
			t.Fatal(err)
		}
		if fa.Prefix.Addr().Is4() {
			if v, err := a.Sysctl("net.ipv4.conf.eth0.arp_announce"); err != nil || v != "2" {
				t.Errorf("arp_announce on an interface with a floating IPv4 address: %q %v, want 2", v, err)
			}
		}
		deadline := time.Now().Add(2 * time.Second)
		for !bytes.Equal(neighMAC(t, b, fa.Prefix.Addr()), macA) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the peer's neighbour table did not learn %s from the announcement", fa, macA)
			}
			time.Sleep(10 * time.Millisecond)
		}
		err = a.Do(func() error {
			if err := Remove(fa); err != nil {
				return err
			}
			if err := Remove(fa); err != nil { // already gone: no error
				return err
			}
			if ok, _ := Present(fa); ok {
				t.Errorf("%s still present after Remove", fa)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestLifetimeLapses is the crash guarantee: an address nobody renews is
// removed by the kernel itself.
func TestLifetimeLapses(t *testing.T) {
	t.Parallel()
	a, _ := pair(t, "fcnc2")
	for _, p := range []string{"10.67.0.10/24", "fd67::10/64"} {
		fa := Address{Prefix: netip.MustParsePrefix(p), Interface: "eth0"}
		if err := a.Do(func() error { return Add(fa, MinLifetime) }); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for {
			var ok bool
			if err := a.Do(func() (err error) { ok, err = Present(fa); return }); err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if time.Since(start) > MinLifetime+3*time.Second {
				t.Fatalf("%s still present %s after being added with a %s lifetime", fa, time.Since(start), MinLifetime)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if lapsed := time.Since(start); lapsed < MinLifetime-100*time.Millisecond {
			t.Errorf("%s removed after %s, before its %s lifetime", fa, lapsed, MinLifetime)
		} else {
			t.Logf("%s lapsed %s after it was added with a %s lifetime", fa, lapsed.Round(10*time.Millisecond), MinLifetime)
		}
	}
}

func TestLifetime(t *testing.T) {
	for _, c := range []struct{ dead, want time.Duration }{
		{50 * time.Millisecond, MinLifetime}, {3 * time.Second, 3 * time.Second}, {3100 * time.Millisecond, 4 * time.Second},
	} {
		if got := Lifetime(c.dead); got != c.want {
			t.Errorf("Lifetime(%s) = %s, want %s", c.dead, got, c.want)
		}
	}
}
