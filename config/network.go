package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Networks: the schema of the L2/L3 objects Fulcrum owns on the host (F5:
// net vlan, net vlan-group, net tunnels tunnel, net self), their defaults
// and their checks. The netcfg package creates them, the tunnel/etherip
// package runs the tunnels; docs/etherip.md explains them.

// VLAN is an L2 segment (F5: net vlan): an existing interface Fulcrum
// adopts as it is, or, with Tag, an 802.1Q sub-interface of it that
// Fulcrum creates, named after the VLAN, and removes.
type VLAN struct {
	Interface string `yaml:"interface"` // the host interface (F5: interfaces)
	Tag       int    `yaml:"tag"`       // 1..4094: a tagged sub-interface Fulcrum owns; 0: the interface untagged
	MTU       int    `yaml:"mtu"`       // set on a tagged sub-interface Fulcrum creates; 0: inherit
}

// VLANGroup bridges VLANs and tunnels into one L2 segment (F5: net
// vlan-group, mode transparent): a Linux bridge Fulcrum creates and owns.
type VLANGroup struct {
	Members []string `yaml:"members"` // VLAN and tunnel names
	Bridge  string   `yaml:"bridge"`  // the bridge's interface name (default: the group's name)
	// Mode is F5's vlan-group mode; only transparent (plain bridging) is
	// built.
	Mode string `yaml:"mode"`
	// STP runs the kernel's spanning tree on the bridge (default false).
	// A group with more than one tunnel must enable it: tunnels to
	// several sites that are also joined to each other form a loop.
	STP bool `yaml:"stp"`
}

// Tunnel is an IP tunnel (F5: net tunnels tunnel). Only type etherip
// (RFC 3378, F5 profile etherip) is built.
type Tunnel struct {
	Type          string `yaml:"type"`           // etherip
	LocalAddress  string `yaml:"local_address"`  // an address of this host (IPv4 or IPv6)
	RemoteAddress string `yaml:"remote_address"` // the peer's, same family
	// Interface is the tunnel's TAP device name (default: the tunnel's
	// name).
	Interface string `yaml:"interface"`
	// OuterMTU is the MTU of the path between the sites (default 1500);
	// MTU the tunnel interface's (default: OuterMTU less the outer IP
	// header, the EtherIP header and the Ethernet header: 1464 over IPv4,
	// 1444 over IPv6). A larger MTU needs Fragment.
	OuterMTU int `yaml:"outer_mtu"`
	MTU      int `yaml:"mtu"`
	// Fragment lets the kernel fragment outer packets bigger than the
	// path (default false: outer packets carry DF and frames that do not
	// fit are dropped and counted).
	Fragment bool `yaml:"fragment"`
	// MSSClamp lowers the MSS option of TCP SYNs crossing the tunnel to
	// fit MTU (default true).
	MSSClamp *bool `yaml:"mss_clamp"`
	// AcceptReversedVersion accepts the header 0x03 0x00 that some old
	// implementations send (version in the wrong nibble); default false:
	// only 0x30 0x00.
	AcceptReversedVersion bool `yaml:"accept_reversed_version"`

	Local, Remote netip.Addr `yaml:"-"` // parsed
}

// SelfIP is an address of the host on a VLAN or VLAN group (F5: net
// self). With TrafficGroup it is floating: held by the traffic group's
// active device only.
type SelfIP struct {
	Address      string `yaml:"address"` // IP/PREFIXLEN
	VLAN         string `yaml:"vlan"`    // a VLAN or VLAN group
	TrafficGroup string `yaml:"traffic_group"`

	Prefix netip.Prefix `yaml:"-"` // parsed
}

// Tunnel MTU defaults.
const (
	DefaultOuterMTU = 1500
	etherIPOverhead = 2 + 14 // EtherIP header and the inner Ethernet header
	maxIfName       = 15     // Linux IFNAMSIZ - 1
)

// DefaultTunnelMTU is a tunnel's MTU when none is set: what fits in one
// outer packet of outerMTU.
func DefaultTunnelMTU(outerMTU int, ipv6 bool) int {
	if ipv6 {
		return outerMTU - 40 - etherIPOverhead
	}
	return outerMTU - 20 - etherIPOverhead
}

// IfName returns the host interface a VLAN or VLAN group name stands
// for, or "".
func (c *Config) IfName(name string) string {
	if v := c.VLANs[name]; v != nil {
		if v.Tag != 0 {
			return name
		}
		return v.Interface
	}
	if g := c.VLANGroups[name]; g != nil {
		return g.Bridge
	}
	return ""
}

// validIfName reports whether s can name a Linux interface.
func validIfName(s string) bool {
	return s != "" && len(s) <= maxIfName && s != "." && s != ".." &&
		!strings.ContainsAny(s, "/: \t\n") && validName(s)
}

func (v *validator) network() {
	c := v.cfg
	for _, sec := range []struct {
		name  string
		names []string
	}{{"vlans", sortedKeys(c.VLANs)}, {"vlan_groups", sortedKeys(c.VLANGroups)}, {"tunnels", sortedKeys(c.Tunnels)}, {"self_ips", sortedKeys(c.SelfIPs)}} {
		for _, n := range sec.names {
			if !validName(n) {
				v.errorf(sec.name+"."+n, "name %q is not valid: names are made of letters, digits, '_', '.' and '-'", n)
			}
		}
	}
	// One namespace for VLANs, groups and tunnels: members name them.
	seen := map[string]string{}
	for _, sec := range []struct {
		name  string
		names []string
	}{{"vlans", sortedKeys(c.VLANs)}, {"vlan_groups", sortedKeys(c.VLANGroups)}, {"tunnels", sortedKeys(c.Tunnels)}} {
		for _, n := range sec.names {
			if other, dup := seen[n]; dup {
				v.errorf(sec.name+"."+n, "%q is also the name of one of %s: VLANs, VLAN groups and tunnels share one namespace", n, other)
			}
			seen[n] = sec.name
		}
	}
	ifOwner := map[string]string{} // interface names Fulcrum creates, by object
	claim := func(path, ifname, what string) {
		if other, dup := ifOwner[ifname]; dup {
			v.errorf(path, "interface name %q is also %s", ifname, other)
			return
		}
		ifOwner[ifname] = what
	}

	for _, name := range sortedKeys(c.VLANs) {
		vl, path := c.VLANs[name], "vlans."+name
		if vl == nil {
			v.errorf(path, "empty VLAN: it needs interface")
			continue
		}
		if vl.Interface == "" {
			v.errorf(path+".interface", "a VLAN needs interface: the host interface it is on")
		} else if !validIfName(vl.Interface) {
			v.errorf(path+".interface", "%q is not a Linux interface name (at most %d characters)", vl.Interface, maxIfName)
		}
		switch {
		case vl.Tag < 0 || vl.Tag > 4094:
			v.errorf(path+".tag", "tag must be 1 to 4094 (0: untagged)")
		case vl.Tag > 0:
			if !validIfName(name) {
				v.errorf(path, "a tagged VLAN's sub-interface is named after it: %q is longer than %d characters or not an interface name", name, maxIfName)
			}
			claim(path, name, "the sub-interface of VLAN "+name)
		}
		if vl.MTU != 0 {
			if vl.Tag == 0 {
				v.errorf(path+".mtu", "mtu is set only on a tagged sub-interface Fulcrum creates; an adopted interface keeps its own")
			} else if vl.MTU < 576 || vl.MTU > 65535 {
				v.errorf(path+".mtu", "mtu must be 576 to 65535")
			}
		}
	}
	for _, name := range sortedKeys(c.Tunnels) {
		t, path := c.Tunnels[name], "tunnels."+name
		if t == nil {
			v.errorf(path, "empty tunnel: it needs type, local_address and remote_address")
			continue
		}
		switch t.Type {
		case "etherip":
		case "":
			v.errorf(path+".type", "a tunnel needs type: etherip")
		case "gre", "ipip", "vxlan", "geneve", "wccpgre", "ppp", "lw4o6", "map", "fec", "v6rd", "dslite":
			v.errorf(path+".type", "tunnel type %s is not built; Linux has it natively (ip link add type ...), only etherip needs Fulcrum", t.Type)
		default:
			v.errorf(path+".type", "unknown tunnel type %q (want etherip)", t.Type)
		}
		var err error
		if t.Local, err = netip.ParseAddr(t.LocalAddress); err != nil {
			v.errorf(path+".local_address", "local_address %q is not an IP address", t.LocalAddress)
		}
		if t.Remote, err = netip.ParseAddr(t.RemoteAddress); err != nil {
			v.errorf(path+".remote_address", "remote_address %q is not an IP address", t.RemoteAddress)
		}
		t.Local, t.Remote = t.Local.Unmap(), t.Remote.Unmap()
		if t.Local.IsValid() && t.Remote.IsValid() {
			switch {
			case t.Local.Is4() != t.Remote.Is4():
				v.errorf(path+".remote_address", "local_address and remote_address must be of one family")
			case t.Local == t.Remote:
				v.errorf(path+".remote_address", "remote_address is local_address: the tunnel would loop to itself")
			case t.Remote.IsUnspecified() || t.Remote.IsMulticast() || t.Local.IsUnspecified() || t.Local.IsMulticast():
				v.errorf(path+".remote_address", "tunnel endpoints must be unicast addresses")
			}
		}
		if t.Interface == "" {
			t.Interface = name
		}
		if !validIfName(t.Interface) {
			v.errorf(path+".interface", "the tunnel's interface %q is not a Linux interface name of at most %d characters: set interface", t.Interface, maxIfName)
		} else {
			claim(path+".interface", t.Interface, "the interface of tunnel "+name)
		}
		if t.OuterMTU == 0 {
			t.OuterMTU = DefaultOuterMTU
		}
		if t.OuterMTU < 1280 || t.OuterMTU > 65535 {
			v.errorf(path+".outer_mtu", "outer_mtu must be 1280 to 65535")
		}
		fit := DefaultTunnelMTU(t.OuterMTU, t.Local.Is6())
		if t.MTU == 0 {
			t.MTU = fit
		}
		switch {
		case t.MTU < 576 || t.MTU > 65535-60:
			v.errorf(path+".mtu", "mtu must be 576 to 65475")
		case t.MTU > fit && !t.Fragment:
			v.errorf(path+".mtu", "mtu %d does not fit in one outer packet of %d (at most %d): lower it, raise outer_mtu, or set fragment: true", t.MTU, t.OuterMTU, fit)
		}
		if t.MSSClamp == nil {
			t.MSSClamp = new(bool)
			*t.MSSClamp = true
		}
	}
	// Two tunnels with the same endpoints would each take the other's
	// packets: one is a loop, not redundancy.
	names := sortedKeys(c.Tunnels)
	for i, a := range names {
		for _, b := range names[i+1:] {
			ta, tb := c.Tunnels[a], c.Tunnels[b]
			if ta != nil && tb != nil && ta.Local.IsValid() && ta.Local == tb.Local && ta.Remote == tb.Remote {
				v.errorf("tunnels."+b+".remote_address", "tunnels %s and %s have the same local and remote addresses: the peer could not tell them apart, and two parallel tunnels between the same bridges loop", a, b)
			}
		}
	}

	inGroup := map[string]string{}
	for _, name := range sortedKeys(c.VLANGroups) {
		g, path := c.VLANGroups[name], "vlan_groups."+name
		if g == nil {
			v.errorf(path, "empty VLAN group: it needs members")
			continue
		}
		switch g.Mode {
		case "", "transparent":
			g.Mode = "transparent"
		case "translucent", "opaque":
			v.errorf(path+".mode", "mode %s is not built (it rewrites MAC addresses and proxies ARP); use transparent, a plain bridge", g.Mode)
		default:
			v.errorf(path+".mode", "unknown mode %q (want transparent)", g.Mode)
		}
		if g.Bridge == "" {
			g.Bridge = name
		}
		if !validIfName(g.Bridge) {
			v.errorf(path+".bridge", "the group's bridge %q is not a Linux interface name of at most %d characters: set bridge", g.Bridge, maxIfName)
		} else {
			claim(path+".bridge", g.Bridge, "the bridge of VLAN group "+name)
		}
		if len(g.Members) == 0 {
			v.errorf(path+".members", "a VLAN group needs members: VLANs and tunnels")
		}
		tunnels := 0
		remotes := map[netip.Addr]string{}
		for i, m := range g.Members {
			mp := fmt.Sprintf("%s.members[%d]", path, i)
			switch {
			case c.VLANs[m] != nil:
			case c.Tunnels[m] != nil:
				tunnels++
				r := c.Tunnels[m].Remote
				if other, dup := remotes[r]; dup && r.IsValid() {
					v.errorf(mp, "tunnels %s and %s both reach %s: two parallel tunnels between the same bridges loop", other, m, r)
				}
				remotes[r] = m
			case c.VLANGroups[m] != nil:
				v.errorf(mp, "%q is a VLAN group: groups cannot nest", m)
				continue
			default:
				v.errorf(mp, "%q is neither a VLAN nor a tunnel", m)
				continue
			}
			if other, dup := inGroup[m]; dup {
				v.errorf(mp, "%q is already a member of VLAN group %s: an interface joins one bridge", m, other)
			}
			inGroup[m] = name
		}
		if tunnels > 1 && !g.STP {
			v.errorf(path+".members", "%d tunnels in one group loop when their sites are also connected to each other: set stp: true (and see docs/etherip.md)", tunnels)
		}
	}
	for _, name := range sortedKeys(c.Tunnels) {
		if _, ok := inGroup[name]; !ok && c.Tunnels[name] != nil {
			v.notice("tunnels."+name, "tunnel %s is in no VLAN group: it carries frames only for what else joins its interface %s", name, c.Tunnels[name].Interface)
		}
	}

	for _, name := range sortedKeys(c.SelfIPs) {
		s, path := c.SelfIPs[name], "self_ips."+name
		if s == nil {
			v.errorf(path, "empty self IP: it needs address and vlan")
			continue
		}
		pf, err := netip.ParsePrefix(s.Address)
		if err != nil {
			v.errorf(path+".address", "address %q is not IP/PREFIXLEN (e.g. 10.10.0.5/24)", s.Address)
		}
		s.Prefix = pf
		ifname := c.IfName(s.VLAN)
		switch {
		case s.VLAN == "":
			v.errorf(path+".vlan", "a self IP needs vlan: the VLAN or VLAN group it is on")
		case ifname == "":
			v.errorf(path+".vlan", "%q is neither a VLAN nor a VLAN group", s.VLAN)
		case c.VLANs[s.VLAN] != nil && inGroup[s.VLAN] != "":
			v.errorf(path+".vlan", "VLAN %s is a member of VLAN group %s: put the self IP on the group (its bridge), as F5 does", s.VLAN, inGroup[s.VLAN])
		}
		for _, tn := range sortedKeys(c.Tunnels) {
			if t := c.Tunnels[tn]; t != nil && pf.IsValid() && t.Local == pf.Addr() && s.TrafficGroup != "" {
				v.errorf(path+".traffic_group", "tunnel %s's local_address is this floating self IP: a floating tunnel endpoint is not built (use a non-floating self IP)", tn)
			}
		}
		if s.TrafficGroup != "" {
			tg := c.TrafficGroups[s.TrafficGroup]
			if tg == nil {
				v.errorf(path+".traffic_group", "traffic group %q does not exist", s.TrafficGroup)
			} else if pf.IsValid() && ifname != "" {
				// A floating self IP is a floating address of its group.
				tg.Addresses = append(tg.Addresses, FloatingAddress{Address: s.Address, Interface: ifname})
				tg.Prefixes = append(tg.Prefixes, pf)
			}
		}
	}
	for i, a := range sortedKeys(c.SelfIPs) {
		for _, b := range sortedKeys(c.SelfIPs)[i+1:] {
			sa, sb := c.SelfIPs[a], c.SelfIPs[b]
			if sa != nil && sb != nil && sa.Prefix.IsValid() && sa.Prefix.Addr() == sb.Prefix.Addr() {
				v.errorf("self_ips."+b+".address", "self IPs %s and %s have one address", a, b)
			}
		}
	}
}

// TunnelInterfaces returns the interface names of the configured tunnels,
// sorted.
func (c *Config) TunnelInterfaces() []string {
	var out []string
	for _, t := range c.Tunnels {
		if t != nil {
			out = append(out, t.Interface)
		}
	}
	slices.Sort(out)
	return out
}
