package netcfg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Links: the VLAN sub-interfaces and bridges (VLAN groups) Fulcrum
// creates, and the ports and self IPs it puts on them.
//
// Fulcrum marks every interface it creates with the alias "fulcrum:" and
// the object it is for ("fulcrum:vlan_groups.vm"), so that after a crash
// the next start recognises its own leftovers and takes them over, and so
// that it never mistakes someone else's interface of the same name for
// its own: creating an interface whose name is taken by one without the
// mark is an error.

// AliasPrefix marks the interfaces Fulcrum owns.
const AliasPrefix = "fulcrum:"

// ErrNotOurs is an interface that exists but was not created by Fulcrum.
var ErrNotOurs = errors.New("exists and is not Fulcrum's")

// owned returns the link named name if it exists and is Fulcrum's, nil if
// it does not exist, or ErrNotOurs.
func owned(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	if !strings.HasPrefix(l.Attrs().Alias, AliasPrefix) {
		return nil, fmt.Errorf("interface %s %w (alias %q): rename it or choose another name", name, ErrNotOurs, l.Attrs().Alias)
	}
	return l, nil
}

// claim marks a link Fulcrum's and brings it up.
func claim(l netlink.Link, owner string) error {
	if err := netlink.LinkSetAlias(l, AliasPrefix+owner); err != nil {
		return fmt.Errorf("interface %s: set alias: %w", l.Attrs().Name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("interface %s: up: %w", l.Attrs().Name, err)
	}
	return nil
}

// EnsureBridge creates the bridge name for owner (a configuration path),
// or takes over the one a previous run left, and sets its spanning tree.
// It reports whether it created it.
func EnsureBridge(name, owner string, stp bool) (created bool, err error) {
	l, err := owned(name)
	if err != nil {
		return false, err
	}
	if l == nil {
		l = &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(l); err != nil {
			return false, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		created = true
		if l, err = netlink.LinkByName(name); err != nil {
			return true, fmt.Errorf("bridge %s: %w", name, err)
		}
	} else if l.Type() != "bridge" {
		return false, fmt.Errorf("interface %s is Fulcrum's but a %s, not a bridge", name, l.Type())
	}
	if err := setSTP(l.Attrs().Index, stp); err != nil {
		return created, fmt.Errorf("bridge %s: stp: %w", name, err)
	}
	return created, claim(l, owner)
}

// EnsureVLAN creates the 802.1Q sub-interface name of parent with tag (and
// mtu, if not 0) for owner, or takes over a previous run's. It reports
// whether it created it.
func EnsureVLAN(name, parent string, tag, mtu int, owner string) (created bool, err error) {
	l, err := owned(name)
	if err != nil {
		return false, err
	}
	p, err := netlink.LinkByName(parent)
	if err != nil {
		return false, fmt.Errorf("VLAN %s: interface %s: %w", name, parent, err)
	}
	if v, ok := l.(*netlink.Vlan); l != nil && (!ok || v.VlanId != tag || v.ParentIndex != p.Attrs().Index) {
		// A leftover with other settings: make it again.
		if err := netlink.LinkDel(l); err != nil {
			return false, fmt.Errorf("VLAN %s: remove the old one: %w", name, err)
		}
		l = nil
	}
	if l == nil {
		attrs := netlink.LinkAttrs{Name: name, ParentIndex: p.Attrs().Index, MTU: mtu}
		if err := netlink.LinkAdd(&netlink.Vlan{LinkAttrs: attrs, VlanId: tag}); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return false, fmt.Errorf("VLAN %s: this kernel has no 802.1Q support (module 8021q): %w", name, err)
			}
			return false, fmt.Errorf("VLAN %s: create tag %d on %s: %w", name, tag, parent, err)
		}
		created = true
		if l, err = netlink.LinkByName(name); err != nil {
			return true, fmt.Errorf("VLAN %s: %w", name, err)
		}
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return created, fmt.Errorf("VLAN %s: mtu %d: %w", name, mtu, err)
		}
	}
	return created, claim(l, owner)
}

// Enslave makes port a port of bridge (and brings it up).
func Enslave(port, bridge string) error {
	p, err := netlink.LinkByName(port)
	if err != nil {
		return fmt.Errorf("interface %s: %w", port, err)
	}
	b, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if p.Attrs().MasterIndex != b.Attrs().Index {
		if err := netlink.LinkSetMaster(p, b); err != nil {
			return fmt.Errorf("add %s to bridge %s: %w", port, bridge, err)
		}
	}
	if err := netlink.LinkSetUp(p); err != nil {
		return fmt.Errorf("interface %s: up: %w", port, err)
	}
	return nil
}

// Release takes port out of whatever bridge it is in; a port that is gone
// is not an error.
func Release(port string) error {
	p, err := netlink.LinkByName(port)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	if p.Attrs().MasterIndex == 0 {
		return nil
	}
	return netlink.LinkSetNoMaster(p)
}

// DeleteOwned deletes the interface name if it is Fulcrum's; one that is
// gone is not an error, one that is not Fulcrum's is left alone.
func DeleteOwned(name string) error {
	l, err := owned(name)
	if err != nil || l == nil {
		if errors.Is(err, ErrNotOurs) {
			return nil
		}
		return err
	}
	return netlink.LinkDel(l)
}

// AddSelfIP adds the static address p to the interface ifname (permanent,
// no lifetime); present already is not an error.
func AddSelfIP(ifname string, p netip.Prefix) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("self IP %s: interface %s: %w", p, ifname, err)
	}
	a := &netlink.Addr{IPNet: prefixNet(p)}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("self IP %s on %s: %w", p, ifname, err)
	}
	return nil
}

// RemoveSelfIP removes the address p from ifname; one that is gone is not
// an error.
func RemoveSelfIP(ifname string, p netip.Prefix) error {
	l, err := netlink.LinkByName(ifname)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	err = netlink.AddrDel(l, &netlink.Addr{IPNet: prefixNet(p)})
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("self IP %s on %s: %w", p, ifname, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// setSTP sets a bridge's IFLA_BR_STP_STATE (the netlink library has no
// field for it); unlike sysfs this works in any network namespace.
func setSTP(index int, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	data.AddRtAttr(nl.IFLA_BR_STP_STATE, nl.Uint32Attr(v))
	req.AddData(info)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// OwnedLinks returns the names of the sub-interfaces and bridges marked as
// Fulcrum's (alias fulcrum:vlans.… or fulcrum:vlan_groups.…) in this
// network namespace.
func OwnedLinks() []string {
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range links {
		a := l.Attrs().Alias
		if strings.HasPrefix(a, AliasPrefix+"vlans.") || strings.HasPrefix(a, AliasPrefix+"vlan_groups.") {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}
