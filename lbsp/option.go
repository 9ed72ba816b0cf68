package lbsp

import (
	"crypto/rand"
	"fmt"
	"net/netip"
)

// Wire constants of the LBSP option (DESIGN.md §6).
const (
	// DefaultType is the option type used when none is configured: 0x1E,
	// an RFC 4727 experimental value whose action bits are 00 ("skip if
	// unknown") and whose change bit is 0 ("does not change en route"). An
	// experimental value must not be what a product ships as a permanent
	// codepoint, which is why the type is configurable everywhere.
	DefaultType byte = 0x1E

	// DataLen is the Opt Data Len of the LBSP option, in octets: 16 octets
	// of client identity followed by 16 octets of server address.
	DataLen = 32

	// TLVLen is the length of the whole option TLV (type, length, data).
	TLVLen = 2 + DataLen

	// HeaderLen is the length of a Destination Options header that carries
	// only the LBSP option, built by BuildDestOpts: 2 octets of header,
	// PadN(2), the 34-octet TLV. Its Hdr Ext Len is 4.
	HeaderLen = 40

	// TypePad1 and TypePadN are the RFC 8200 padding options.
	TypePad1 byte = 0x00
	TypePadN byte = 0x01
)

// Option is the LBSP option: who the client is, and (once a server has
// answered) which server holds the session.
//
// On the wire the Option Data is Client (16 octets) then Server (16 octets);
// there are no flags. An unset Server is sent as 16 zero octets, which is
// what the client puts in its first packet (the TCP SYN or first UDP
// datagram); the responding server fills in its own address and never
// changes Client.
type Option struct {
	// Client identifies the client: its original IPv6 address (see
	// ClientFromAddr) or, for anonymity, a random value (RandomClient). The
	// load balancer only uses it as a key; it does not need to be routable.
	Client [16]byte

	// Server is the responding server's address; the zero Addr (invalid)
	// means "not set yet". Server is encoded with As16: an IPv4 address is
	// sent in its IPv4-mapped form and parses back as that IPv6 address
	// (use Unmap to compare), a zone is dropped, and the unspecified address
	// :: is indistinguishable from "not set".
	Server netip.Addr
}

// ClientFromAddr returns a as a client identity: its 16-octet form (IPv4
// addresses are IPv4-mapped; a zone is dropped).
func ClientFromAddr(a netip.Addr) [16]byte { return a.As16() }

// RandomClient returns a client identity drawn from crypto/rand, for clients
// that do not want to reveal their address (the seed's "anonymous" variant).
func RandomClient() [16]byte {
	var c [16]byte
	rand.Read(c[:]) // never fails (Go 1.24+: crashes the program instead)
	return c
}

// ClientAddr returns Client read as an IPv6 address. When the client sent a
// random identity the result is not an address of anything.
func (o Option) ClientAddr() netip.Addr { return netip.AddrFrom16(o.Client) }

// HasServer reports whether Server is set (non-zero on the wire).
func (o Option) HasServer() bool {
	return o.Server.IsValid() && o.Server.As16() != [16]byte{}
}

// String formats the option as "client=C server=S" (server "-" when unset).
func (o Option) String() string {
	s := "-"
	if o.HasServer() {
		s = o.Server.String()
	}
	return fmt.Sprintf("client=%s server=%s", o.ClientAddr(), s)
}

// Append appends the option TLV (Option Type, Opt Data Len = 32, data) to dst
// and returns the extended slice. It appends only the TLV: to send it, put
// it in a Destination Options header with BuildDestOpts, which places it at
// the 8n+6 alignment the option requires.
//
// Append panics if optType is Pad1 or PadN (0x00, 0x01): the result would be
// read as padding, which is exactly the seed's malformed encoding. Validate
// configured types with CheckType.
func (o Option) Append(dst []byte, optType byte) []byte {
	if err := CheckType(optType); err != nil {
		panic("lbsp: Option.Append: " + err.Error())
	}
	dst = append(dst, optType, DataLen)
	dst = append(dst, o.Client[:]...)
	if o.HasServer() {
		s := o.Server.As16()
		return append(dst, s[:]...)
	}
	var zero [16]byte
	return append(dst, zero[:]...)
}

// ParseOption decodes the Option Data of an LBSP option: the DataLen (32)
// octets after the type and length octets, as TLV.Data from Walk or
// Result.Option from Parser.Parse give them. It does not take the whole
// TLV: the type is configurable, so matching it is the walker's job.
//
// All 32-octet values are accepted: 16 zero octets of server mean "not
// set" (Server is the zero Addr). For such data,
// o.Append(nil, t)[2:] is equal to data.
func ParseOption(data []byte) (Option, error) {
	var o Option
	if len(data) != DataLen {
		hint := ""
		if len(data) == TLVLen {
			hint = " (pass the Option Data, not the whole TLV)"
		}
		return o, &Error{Kind: ErrOptionData, Offset: -1,
			Detail: fmt.Sprintf("LBSP option data is %d octets, want %d%s", len(data), DataLen, hint)}
	}
	copy(o.Client[:], data[:16])
	var s [16]byte
	copy(s[:], data[16:])
	if s != [16]byte{} {
		o.Server = netip.AddrFrom16(s)
	}
	return o, nil
}

// CheckType reports whether t can be used as the LBSP option type. Pad1 and
// PadN are refused. Other values are allowed, but note what the top bits
// mean to a destination that does not know the option (see ActionOf): with
// any action other than ActionSkip an LBSP-unaware server behind a DSR load
// balancer drops the packet, and with the change bit set (MayChange) AH
// treats the option as zeros. DefaultType has neither.
func CheckType(t byte) error {
	switch t {
	case TypePad1:
		return fmt.Errorf("option type 0x00 is Pad1")
	case TypePadN:
		return fmt.Errorf("option type 0x01 is PadN (the seed's literal type 1 is malformed padding, dropped by Linux)")
	}
	return nil
}
