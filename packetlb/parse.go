// Package packetlb is single-pass packet load balancing (issue 13's packet
// mode, the seed's "single pass"): a virtual address is routed into a TUN
// device; for the first packet of each flow (a TCP SYN, any UDP datagram)
// the caller chooses a member, from the packet's IPv6 Destination Options
// if it likes (LBSP); every packet of the flow then goes to that member
// unchanged, as an Ethernet frame to the member's MAC address on the
// servers' segment (direct server return: the member holds the virtual
// address on a loopback interface and answers the client directly). No TCP
// termination, no sequence translation: the load balancer sees each
// client packet once and no server packet at all.
//
// It is a building block: configuration and the engine do not use it yet
// (docs/lbsp.md).
package packetlb

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Key identifies a flow.
type Key struct {
	Src, Dst     netip.Addr
	Proto        uint8
	SPort, DPort uint16
}

// Packet is what the forwarder needs of one IPv6 packet.
type Packet struct {
	Key Key
	// TCPFlags are the TCP header's flags (0 for UDP).
	TCPFlags uint8
	// DestOpts is the first Destination Options header before the upper
	// layer (the whole header, as lbsp.Parser takes it), or nil.
	DestOpts []byte
}

// TCP flags.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// Protocol numbers.
const (
	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60
)

// Parse errors: each is a drop reason (its text is the counter's label).
var (
	ErrShort       = errors.New("short")
	ErrNotIPv6     = errors.New("not_ipv6")
	ErrBadLength   = errors.New("bad_length")
	ErrFragment    = errors.New("fragment")
	ErrUnsupported = errors.New("unsupported_protocol")
	ErrTooManyExt  = errors.New("too_many_extension_headers")
)

// maxExtHeaders bounds the extension-header walk.
const maxExtHeaders = 8

// Parse reads an IPv6 packet: addresses, the extension headers it may walk
// (Hop-by-Hop, Routing, Destination Options), and the TCP or UDP ports.
// Anything else (fragments, other protocols, truncation) is an error.
func Parse(b []byte) (Packet, error) {
	var p Packet
	if len(b) < 40 {
		return p, ErrShort
	}
	if b[0]>>4 != 6 {
		return p, ErrNotIPv6
	}
	if int(binary.BigEndian.Uint16(b[4:6]))+40 > len(b) {
		return p, ErrBadLength
	}
	b = b[:40+int(binary.BigEndian.Uint16(b[4:6]))]
	p.Key.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Key.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, off := b[6], 40
	for range maxExtHeaders + 1 {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts:
			if off+8 > len(b) {
				return p, ErrShort
			}
			n := (int(b[off+1]) + 1) * 8
			if off+n > len(b) {
				return p, ErrBadLength
			}
			if next == protoDestOpts && p.DestOpts == nil {
				p.DestOpts = b[off : off+n]
			}
			next, off = b[off], off+n
		case protoFragment:
			return p, ErrFragment
		case protoTCP:
			if off+20 > len(b) {
				return p, ErrShort
			}
			p.Key.Proto = protoTCP
			p.Key.SPort = binary.BigEndian.Uint16(b[off:])
			p.Key.DPort = binary.BigEndian.Uint16(b[off+2:])
			p.TCPFlags = b[off+13]
			return p, nil
		case protoUDP:
			if off+8 > len(b) {
				return p, ErrShort
			}
			p.Key.Proto = protoUDP
			p.Key.SPort = binary.BigEndian.Uint16(b[off:])
			p.Key.DPort = binary.BigEndian.Uint16(b[off+2:])
			return p, nil
		default:
			return p, ErrUnsupported
		}
	}
	return p, ErrTooManyExt
}

// First reports whether p may start a flow: a TCP SYN without ACK, or any
// UDP datagram.
func (p Packet) First() bool {
	return p.Key.Proto == protoUDP || p.TCPFlags&(FlagSYN|FlagACK|FlagRST) == FlagSYN
}
