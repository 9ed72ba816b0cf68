package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MinLifetime is the shortest lifetime Lifetime returns. The kernel counts
// address lifetimes in whole seconds and checks them about once a second,
// so a one-second lifetime could lapse between two renewals of a busy but
// healthy device.
const MinLifetime = 2 * time.Second

// Lifetime is the valid lifetime given to floating addresses for a device
// group whose peers declare a device dead after deadTime: at least
// MinLifetime, else deadTime rounded up to a second, so that the address of
// a hung process lapses at about the time its peer takes the group over.
func Lifetime(deadTime time.Duration) time.Duration {
	l := (deadTime + time.Second - 1).Truncate(time.Second)
	return max(l, MinLifetime)
}

// RenewEvery is how often an active device renews its floating addresses'
// lifetime: a quarter of it, so three renewals in a row can be late.
func RenewEvery(lifetime time.Duration) time.Duration { return lifetime / 4 }

// Address is one floating address on one interface.
type Address struct {
	Prefix    netip.Prefix // address and prefix length as added
	Interface string
}

func (a Address) String() string { return a.Prefix.String() + " dev " + a.Interface }

func (a Address) nl(lifetime time.Duration) (netlink.Link, *netlink.Addr, error) {
	link, err := netlink.LinkByName(a.Interface)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %s: %w", a.Interface, err)
	}
	p := a.Prefix.Masked()
	ipn := &net.IPNet{IP: a.Prefix.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	addr := &netlink.Addr{IPNet: ipn}
	if lifetime > 0 {
		secs := int(lifetime / time.Second)
		addr.ValidLft, addr.PreferedLft = secs, secs
	}
	if a.Prefix.Addr().Is6() {
		// Usable at once: duplicate address detection would hold a
		// taken-over address "tentative" for a second or more.
		addr.Flags = unix.IFA_F_NODAD
	}
	return link, addr, nil
}

// Add adds (or renews) the address with the given valid lifetime (0: no
// lifetime, the address stays until removed). For IPv4 it first makes sure
// the interface's arp_announce is 2 (see PrimaryARPSource).
func Add(a Address, lifetime time.Duration) error {
	link, addr, err := a.nl(lifetime)
	if err != nil {
		return err
	}
	if a.Prefix.Addr().Is4() {
		if err := PrimaryARPSource(a.Interface); err != nil {
			return err
		}
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("add %s: %w", a, err)
	}
	return nil
}

// PrimaryARPSource sets net.ipv4.conf.IFACE.arp_announce to 2 unless it
// is already: the ARP requests the kernel sends from the interface then
// carry the interface's primary address as their source, never a floating
// one. Otherwise a device that holds a floating address it is about to lose
// (stalled, cut off, handing over) can send an ARP request "from" that
// address after the new owner announced it, and every neighbour that hears
// it points the address back at the old device (keepalived's documentation
// asks operators for the same setting).
func PrimaryARPSource(iface string) error {
	if iface == "" || iface == "." || iface == ".." || strings.Contains(iface, "/") {
		return fmt.Errorf("interface name %q", iface)
	}
	path := "/proc/sys/net/ipv4/conf/" + iface + "/arp_announce"
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("arp_announce of %s: %w", iface, err)
	}
	if strings.TrimSpace(string(b)) == "2" {
		return nil
	}
	if err := os.WriteFile(path, []byte("2\n"), 0o644); err != nil {
		return fmt.Errorf("set arp_announce=2 on %s: %w", iface, err)
	}
	return nil
}

// Remove deletes the address; an address that is not there is no error.
func Remove(a Address) error {
	link, addr, err := a.nl(0)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(link, addr); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", a, err)
	}
	return nil
}

// Present reports whether the interface holds the address.
func Present(a Address) (bool, error) {
	link, err := netlink.LinkByName(a.Interface)
	if err != nil {
		return false, fmt.Errorf("interface %s: %w", a.Interface, err)
	}
	fam := netlink.FAMILY_V4
	if a.Prefix.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(link, fam)
	if err != nil {
		return false, err
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a.Prefix.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// Announce tells the link that this host now owns the address: a
// gratuitous ARP (an ARP request for the address from itself, to the
// broadcast address, which every Linux and router updates from) for IPv4,
// an unsolicited neighbour advertisement with the Override flag to
// all-nodes for IPv6. The address must be on the interface.
func Announce(a Address) error {
	ifi, err := net.InterfaceByName(a.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", a.Interface, err)
	}
	ip := a.Prefix.Addr()
	if ip.Is4() {
		c, err := arp.Dial(ifi)
		if err != nil {
			return fmt.Errorf("gratuitous ARP on %s: %w", a.Interface, err)
		}
		defer c.Close()
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernetBroadcast, ip)
		if err != nil {
			return err
		}
		if err := c.WriteTo(p, ethernetBroadcast); err != nil {
			return fmt.Errorf("gratuitous ARP for %s on %s: %w", ip, a.Interface, err)
		}
		return nil
	}
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return fmt.Errorf("neighbour advertisement on %s: %w", a.Interface, err)
	}
	defer c.Close()
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
	}
	if err := c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("neighbour advertisement for %s on %s: %w", ip, a.Interface, err)
	}
	return nil
}

var ethernetBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
