package isession

import (
	"errors"
	"fmt"
	"net/netip"
)

// Target is what the remote end (the branch) tells the data-center end
// about an inner connection when it opens its stream: where the client
// was going and who it is. The data-center end's target-virtual policy
// decides where the connection goes from there.
type Target struct {
	// Dst is the destination the client connected to (the remote
	// virtual's address). Its port is zero when port transparency is off.
	Dst netip.AddrPort
	// Src is the client's address, for logs and policy.
	Src netip.AddrPort
	// Virtual names the remote virtual the client came in on, for logs.
	Virtual string
}

// The stream open header on the wire:
//
//	version u8 (1)
//	dst     addr
//	src     addr
//	vlen u8, virtual[vlen]
//
// addr = family u8 (4 or 6), 4 or 16 address bytes, port u16 big-endian.

const (
	headerVersion  = 1
	maxVirtualName = 255
)

// ErrHeader wraps every malformed open header.
var ErrHeader = errors.New("isession: bad stream header")

// AppendTarget appends t's wire form to b.
func AppendTarget(b []byte, t Target) ([]byte, error) {
	if !t.Dst.IsValid() || !t.Src.IsValid() {
		return nil, fmt.Errorf("isession: target without destination or source")
	}
	if len(t.Virtual) > maxVirtualName {
		return nil, fmt.Errorf("isession: virtual name of %d bytes exceeds %d", len(t.Virtual), maxVirtualName)
	}
	b = append(b, headerVersion)
	b = appendAddr(b, t.Dst)
	b = appendAddr(b, t.Src)
	b = append(b, byte(len(t.Virtual)))
	return append(b, t.Virtual...), nil
}

func appendAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		b = append(b, 4)
		s := a.As4()
		b = append(b, s[:]...)
	} else {
		b = append(b, 6)
		s := a.As16()
		b = append(b, s[:]...)
	}
	return append(b, byte(ap.Port()>>8), byte(ap.Port()))
}

// ParseTarget decodes an open header; every byte must be accounted for.
func ParseTarget(b []byte) (Target, error) {
	var t Target
	if len(b) < 1 || b[0] != headerVersion {
		return t, fmt.Errorf("%w: unknown version", ErrHeader)
	}
	b = b[1:]
	var err error
	if t.Dst, b, err = parseAddr(b); err != nil {
		return t, err
	}
	if t.Src, b, err = parseAddr(b); err != nil {
		return t, err
	}
	if len(b) < 1 || len(b)-1 != int(b[0]) {
		return t, fmt.Errorf("%w: virtual name length", ErrHeader)
	}
	t.Virtual = string(b[1:])
	return t, nil
}

func parseAddr(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) < 1 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: truncated", ErrHeader)
	}
	n := 0
	switch b[0] {
	case 4:
		n = 4
	case 6:
		n = 16
	default:
		return netip.AddrPort{}, nil, fmt.Errorf("%w: address family %d", ErrHeader, b[0])
	}
	if len(b) < 1+n+2 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: truncated address", ErrHeader)
	}
	a, _ := netip.AddrFromSlice(b[1 : 1+n])
	if n == 16 && a.Is4In6() {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: IPv4-mapped address in an IPv6 field", ErrHeader)
	}
	port := uint16(b[1+n])<<8 | uint16(b[2+n])
	return netip.AddrPortFrom(a, port), b[3+n:], nil
}
