package testnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VethOptions are optional settings for AddVeth. Zero values keep the
// kernel's defaults (random MACs, MTU 1500).
type VethOptions struct {
	MTU     int
	MAC     net.HardwareAddr // for the end in a
	PeerMAC net.HardwareAddr // for the end in b
}

// AddVeth creates a veth pair with end aName in namespace a and end bName in
// namespace b, both left down. The pair is created directly inside a with its
// peer placed into b, so no interface ever appears in the host namespace and
// names only need to be unique within each namespace. Deleting either
// namespace deletes the pair.
func AddVeth(a *NS, aName string, b *NS, bName string, opt VethOptions) error {
	if len(aName) >= unix.IFNAMSIZ || len(bName) >= unix.IFNAMSIZ {
		return fmt.Errorf("testnet: interface name too long (max %d): %q/%q", unix.IFNAMSIZ-1, aName, bName)
	}
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: aName, MTU: opt.MTU, HardwareAddr: opt.MAC},
		PeerName:         bName,
		PeerHardwareAddr: opt.PeerMAC,
	}
	if a != b {
		v.PeerNamespace = netlink.NsFd(int(b.handle))
	}
	if err := a.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("testnet: veth %s/%s ⇄ %s/%s: %w", a.name, aName, b.name, bName, err)
	}
	return nil
}

func (n *NS) link(name string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("testnet: %s: link %s: %w", n.name, name, err)
	}
	return l, nil
}

// LinkUp sets an interface administratively up.
func (n *NS) LinkUp(name string) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("testnet: %s: link %s up: %w", n.name, name, err)
	}
	return nil
}

// SetPromisc turns promiscuous mode on or off.
func (n *NS) SetPromisc(name string, on bool) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	if on {
		err = n.nl.SetPromiscOn(l)
	} else {
		err = n.nl.SetPromiscOff(l)
	}
	if err != nil {
		return fmt.Errorf("testnet: %s: promisc %s: %w", n.name, name, err)
	}
	return nil
}

// LinkMAC returns an interface's hardware address.
func (n *NS) LinkMAC(name string) (net.HardwareAddr, error) {
	l, err := n.link(name)
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}

// AddAddr adds an address with its prefix length (198.18.0.1/24,
// 2001:db8::1/64) to an interface. IPv6 addresses skip duplicate address
// detection so they are usable at once instead of after ~1-2 s of DAD.
func (n *NS) AddAddr(name string, p netip.Prefix) error {
	l, err := n.link(name)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: prefixToIPNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(l, a); err != nil {
		return fmt.Errorf("testnet: %s: addr %s dev %s: %w", n.name, p, name, err)
	}
	return nil
}

// AddRoute adds a route to dst via gw (invalid gw: on-link) out of the named
// interface (empty: chosen by the kernel from gw).
func (n *NS) AddRoute(dst netip.Prefix, gw netip.Addr, dev string) error {
	r := &netlink.Route{Dst: prefixToIPNet(dst)}
	if gw.IsValid() {
		r.Gw = gw.AsSlice()
	}
	if dev != "" {
		l, err := n.link(dev)
		if err != nil {
			return err
		}
		r.LinkIndex = l.Attrs().Index
	}
	if err := n.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("testnet: %s: route %s via %v dev %s: %w", n.name, dst, gw, dev, err)
	}
	return nil
}

// AddNeigh adds a permanent neighbour (ARP or NDP) entry, so that traffic to
// ip needs no resolution on the wire.
func (n *NS) AddNeigh(dev string, ip netip.Addr, mac net.HardwareAddr) error {
	l, err := n.link(dev)
	if err != nil {
		return err
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	err = n.nl.NeighSet(&netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       fam,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	})
	if err != nil {
		return fmt.Errorf("testnet: %s: neigh %s lladdr %s dev %s: %w", n.name, ip, mac, dev, err)
	}
	return nil
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Offloads are the per-interface segmentation and checksum offloads that
// SetOffloads switches (the `ethtool -K` names in comments).
type Offloads struct {
	TxChecksum bool // tx-checksumming
	SG         bool // scatter-gather
	TSO        bool // tcp-segmentation-offload
	GSO        bool // generic-segmentation-offload
	GRO        bool // generic-receive-offload
}

// ethtool legacy get/set command pairs (include/uapi/linux/ethtool.h).
var offloadCmds = [...]struct {
	get, set uint32
	name     string
}{
	{unix.ETHTOOL_GTXCSUM, unix.ETHTOOL_STXCSUM, "tx-checksumming"},
	{unix.ETHTOOL_GSG, unix.ETHTOOL_SSG, "scatter-gather"},
	{unix.ETHTOOL_GTSO, unix.ETHTOOL_STSO, "tcp-segmentation-offload"},
	{unix.ETHTOOL_GGSO, unix.ETHTOOL_SGSO, "generic-segmentation-offload"},
	{unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO, "generic-receive-offload"},
}

func (o Offloads) values() [5]bool { return [5]bool{o.TxChecksum, o.SG, o.TSO, o.GSO, o.GRO} }

// SetOffloads sets an interface's offloads, like `ethtool -K dev tx off sg
// off tso off gso off gro off`, through the SIOCETHTOOL ioctl (this machine
// has no ethtool binary), and reads each one back. Dependent features are
// applied in an order that lets the kernel accept them (checksum offload
// before segmentation when enabling, the reverse when disabling).
func (n *NS) SetOffloads(dev string, o Offloads) error {
	want := o.values()
	return n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		order := []int{4, 3, 2, 1, 0} // disabling: GRO, GSO, TSO, SG, csum
		if want[0] {
			order = []int{0, 1, 2, 3, 4}
		}
		for _, i := range order {
			c := offloadCmds[i]
			v := uint32(0)
			if want[i] {
				v = 1
			}
			if err := ethtoolValue(fd, dev, c.set, &v); err != nil {
				return fmt.Errorf("testnet: %s: ethtool -K %s %s: %w", n.name, dev, c.name, err)
			}
		}
		for i, c := range offloadCmds {
			var v uint32
			if err := ethtoolValue(fd, dev, c.get, &v); err != nil {
				return fmt.Errorf("testnet: %s: ethtool -k %s %s: %w", n.name, dev, c.name, err)
			}
			if (v != 0) != want[i] {
				return fmt.Errorf("testnet: %s: %s %s is %v after setting %v", n.name, dev, c.name, v != 0, want[i])
			}
		}
		return nil
	})
}

// GetOffloads reads an interface's offloads.
func (n *NS) GetOffloads(dev string) (Offloads, error) {
	var got [5]bool
	err := n.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for i, c := range offloadCmds {
			var v uint32
			if err := ethtoolValue(fd, dev, c.get, &v); err != nil {
				return fmt.Errorf("testnet: %s: ethtool -k %s %s: %w", n.name, dev, c.name, err)
			}
			got[i] = v != 0
		}
		return nil
	})
	return Offloads{TxChecksum: got[0], SG: got[1], TSO: got[2], GSO: got[3], GRO: got[4]}, err
}

// ifreqData is struct ifreq with its union holding a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolValue issues one legacy ethtool command carrying struct
// ethtool_value {cmd, data}; for get commands *v receives the data.
func ethtoolValue(fd int, dev string, cmd uint32, v *uint32) error {
	if len(dev) >= unix.IFNAMSIZ {
		return errors.New("interface name too long")
	}
	val := struct{ cmd, data uint32 }{cmd, *v}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&val)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&val)
	if errno != 0 {
		return errno
	}
	*v = val.data
	return nil
}
