// Package etherip is an RFC 3378 EtherIP tunnel endpoint in user space.
//
// EtherIP carries Ethernet frames (without preamble or FCS) directly in IP
// protocol 97, behind a 16-bit header: version 3 in the high nibble of the
// first byte, twelve reserved bits that must be zero, i.e. the bytes 0x30
// 0x00 on the wire. Linux has no EtherIP driver, so an Endpoint is a TAP
// device (to be enslaved to a bridge) plus raw IP sockets: frames read from
// the TAP are encapsulated and sent to the remote address, and packets from
// the remote address are decapsulated and written to the TAP. Endpoints
// created through one Mux share a receiving socket per local address.
// TCP super-frames are segmented and re-joined in user space (offload.go),
// so the TAP can use TSO while the wire carries MTU-sized packets.
//
// The protocol has no loop protection, no authentication and no integrity
// check of its own: run it over a trusted path or IPsec, never build two
// parallel tunnels between the same bridges without STP (see CheckConfigs),
// and do not let the tunnel's outer packets be routed back into the bridge.
//
// Some old implementations (FreeBSD 6.1 to 7.2) sent the version nibble in
// the wrong half of the byte (0x03 0x00). Endpoints always send 0x30 0x00
// and reject the reversed form unless Config.AcceptReversed is set.
package etherip

// Wire constants.
const (
	// Protocol is the IP protocol number (IPv4 Protocol, IPv6 Next Header)
	// of EtherIP.
	Protocol = 97
	// HeaderLen is the length of the EtherIP header.
	HeaderLen = 2
	// Version is the only EtherIP version in use.
	Version = 3

	ethHeaderLen = 14
	vlanTagLen   = 4

	hdrByte0         = Version << 4 // 0x30
	hdrByte0Reversed = Version      // 0x03, old FreeBSD
)

// DropReason says why a packet or frame was dropped. It is also the error
// type returned by Decap; its values are small and comparing or converting
// them to error allocates nothing.
type DropReason uint8

// Drop reasons. The String form is the metric label.
const (
	// DropShort: fewer bytes than the EtherIP header.
	DropShort DropReason = iota
	// DropBadVersion: the version nibble is not 3 (and the header is not
	// the accepted reversed form).
	DropBadVersion
	// DropReservedBits: version 3 but a reserved bit is set.
	DropReservedBits
	// DropReversed: the reversed header 0x03 0x00, not accepted by this
	// endpoint's configuration.
	DropReversed
	// DropRuntFrame: the encapsulated frame is shorter than an Ethernet
	// header (14 bytes).
	DropRuntFrame
	// DropOversize: the frame is longer than the tunnel MTU allows, or the
	// packet did not fit the receive buffer.
	DropOversize
	// DropForeignSource: a protocol-97 packet from an address that is the
	// remote of no tunnel. Counted on the shared receiver (ReceiverStats),
	// not on an endpoint.
	DropForeignSource
	// DropBadOuter: the outer IPv4 header delivered by the kernel is
	// inconsistent (wrong version or protocol, bad length, a fragment).
	DropBadOuter
	// DropTooBig: sending failed because the packet exceeds the path MTU
	// and fragmentation is off (Config.DontFragment).
	DropTooBig
	// DropSendError: sending the outer packet failed for another reason
	// (for example ICMP errors reported by the kernel: no route,
	// protocol unreachable at the peer).
	DropSendError

	// NumDropReasons is the number of drop reasons; Stats.Drops is indexed
	// by DropReason.
	NumDropReasons
)

// String returns the reason's metric label, such as "bad_version".
func (r DropReason) String() string {
	switch r {
	case DropShort:
		return "short"
	case DropBadVersion:
		return "bad_version"
	case DropReservedBits:
		return "reserved_bits"
	case DropReversed:
		return "reversed"
	case DropRuntFrame:
		return "runt_frame"
	case DropOversize:
		return "oversize"
	case DropForeignSource:
		return "foreign_source"
	case DropBadOuter:
		return "bad_outer"
	case DropTooBig:
		return "too_big"
	case DropSendError:
		return "send_error"
	}
	return "unknown"
}

// Error makes a DropReason usable as the error Decap returns.
func (r DropReason) Error() string { return "etherip: dropped: " + r.String() }

// Encap appends the EtherIP header 0x30 0x00 and frame to dst and returns
// the extended slice (dst may be nil). It does not check the frame.
func Encap(dst, frame []byte) []byte {
	dst = append(dst, hdrByte0, 0)
	return append(dst, frame...)
}

// Decap checks the EtherIP header of pkt (the payload of the outer IP
// packet) and returns the encapsulated Ethernet frame, which aliases pkt.
// It is strict: only 0x30 0x00 is accepted, plus 0x03 0x00 when
// acceptReversed is set. The frame must hold at least an Ethernet header.
// A non-nil error is always a DropReason.
func Decap(pkt []byte, acceptReversed bool) (frame []byte, err error) {
	frame, r, ok := decap(pkt, acceptReversed)
	if !ok {
		return nil, r
	}
	return frame, nil
}

// decap is Decap without the interface conversion, for the data path.
func decap(pkt []byte, acceptReversed bool) ([]byte, DropReason, bool) {
	if len(pkt) < HeaderLen {
		return nil, DropShort, false
	}
	b0, b1 := pkt[0], pkt[1]
	switch {
	case b0 == hdrByte0 && b1 == 0:
	case b0 == hdrByte0Reversed && b1 == 0:
		if !acceptReversed {
			return nil, DropReversed, false
		}
	case b0>>4 != Version:
		return nil, DropBadVersion, false
	default:
		return nil, DropReservedBits, false
	}
	frame := pkt[HeaderLen:]
	if len(frame) < ethHeaderLen {
		return nil, DropRuntFrame, false
	}
	return frame, 0, true
}
