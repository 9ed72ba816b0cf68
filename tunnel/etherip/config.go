package etherip

import (
	"errors"
	"fmt"
	"net/netip"
)

// Config describes one tunnel endpoint.
type Config struct {
	// Name is the TAP device to create; empty lets the kernel choose
	// (tap0, tap1, …). The device exists as long as the Endpoint.
	Name string
	// Local and Remote are the outer addresses: both IPv4 or both IPv6
	// (IPv4-mapped IPv6 addresses count as IPv4). Local must be an
	// address of this host (of the calling thread's network namespace).
	Local, Remote netip.Addr
	// MTU is the TAP's MTU, the largest IP packet a frame may carry. Zero
	// means DefaultMTU(OuterMTU, family).
	MTU int
	// OuterMTU is the path MTU of the outer network, used only to derive
	// the default MTU. Zero means 1500.
	OuterMTU int
	// AcceptReversed also accepts the reversed header 0x03 0x00 sent by
	// FreeBSD 6.1–7.2. Endpoints always send 0x30 0x00.
	AcceptReversed bool
	// DontFragment sets DF on outer IPv4 packets (IP_PMTUDISC_DO) and
	// forbids fragmenting outer IPv6 packets (IPV6_PMTUDISC_DO,
	// IPV6_DONTFRAG): a frame too big for the path is dropped
	// (DropTooBig). Off (the default), the outer packet is fragmented,
	// which keeps an MTU-1500 LAN working over an MTU-1500 WAN at the cost
	// of fragments; see also ClampMSS.
	DontFragment bool
	// ClampMSS lowers the MSS option of TCP SYNs crossing the tunnel (in
	// both directions, IPv4 and IPv6, with up to two VLAN tags) so TCP
	// segments fit MTU even when the hosts on the bridge use a larger MTU.
	ClampMSS bool
}

// Outer header overheads: outer IP header + EtherIP header + inner Ethernet
// header.
const (
	overheadIPv4 = 20 + HeaderLen + ethHeaderLen // 36
	overheadIPv6 = 40 + HeaderLen + ethHeaderLen // 56
	minMTU       = 68
	maxMTU       = 65535 - overheadIPv6 - 2*vlanTagLen
)

// DefaultMTU is the TAP MTU that makes an untagged full-size frame fit an
// outer path of outerMTU bytes (1500 if zero) without fragmentation:
// outerMTU − outer IP header (20 or 40) − 2 − 14, i.e. 1464 over IPv4 and
// 1444 over IPv6 for a 1500-byte path.
func DefaultMTU(outerMTU int, ipv6 bool) int {
	if outerMTU == 0 {
		outerMTU = 1500
	}
	if ipv6 {
		return outerMTU - overheadIPv6
	}
	return outerMTU - overheadIPv4
}

// normalize validates c and returns it with unmapped addresses and the MTU
// filled in.
func (c Config) normalize() (Config, error) {
	c.Local, c.Remote = c.Local.Unmap(), c.Remote.Unmap()
	switch {
	case !c.Local.IsValid() || !c.Remote.IsValid():
		return c, errors.New("etherip: Local and Remote addresses are required")
	case c.Local.Is4() != c.Remote.Is4():
		return c, fmt.Errorf("etherip: Local %s and Remote %s are of different families", c.Local, c.Remote)
	case c.Local.WithZone("") == c.Remote.WithZone(""):
		return c, fmt.Errorf("etherip: Remote %s is the Local address: loop", c.Remote)
	case c.Remote.IsUnspecified() || c.Remote.IsMulticast() || c.Local.IsUnspecified() || c.Local.IsMulticast():
		return c, fmt.Errorf("etherip: Local %s and Remote %s must be unicast addresses", c.Local, c.Remote)
	case c.OuterMTU < 0:
		return c, fmt.Errorf("etherip: OuterMTU %d is negative", c.OuterMTU)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU(c.OuterMTU, c.Local.Is6())
	}
	if c.MTU < minMTU || c.MTU > maxMTU {
		return c, fmt.Errorf("etherip: MTU %d out of range [%d, %d]", c.MTU, minMTU, maxMTU)
	}
	return c, nil
}
