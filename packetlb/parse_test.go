package packetlb

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/lbsp"
)

// packet builds an IPv6 packet: ext are whole extension headers (their
// first byte is patched to chain), then an upper-layer header.
func packet(proto uint8, upper []byte, ext ...[]byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	src := netip.MustParseAddr("2001:db8::1").As16()
	dst := netip.MustParseAddr("2001:db8::80").As16()
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	nh := &b[6]
	for _, e := range ext {
		*nh = protoDestOpts
		if len(e) > 0 && e[0] == 0xff { // marker: a routing header
			*nh = protoRouting
		}
		at := len(b)
		b = append(b, e...)
		nh = &b[at]
	}
	*nh = proto
	b = append(b, upper...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

func tcpHeader(sport, dport uint16, flags uint8) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = 5 << 4
	h[13] = flags
	return h
}

func TestParse(t *testing.T) {
	opt := lbsp.Option{Client: lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8::c1"))}
	dest := lbsp.BuildDestOpts(0, opt.Append(nil, lbsp.DefaultType))
	routing := []byte{0xff, 0, 0, 0, 0, 0, 0, 0}
	p, err := Parse(packet(protoTCP, tcpHeader(40000, 80, FlagSYN), routing, dest))
	if err != nil {
		t.Fatal(err)
	}
	if p.Key.Proto != protoTCP || p.Key.SPort != 40000 || p.Key.DPort != 80 || !p.First() || p.Key.Dst.String() != "2001:db8::80" {
		t.Fatalf("parsed %+v", p)
	}
	if r, err := (lbsp.Parser{Type: lbsp.DefaultType}).Parse(p.DestOpts); err != nil || !r.Found || r.Option.Client != opt.Client {
		t.Fatalf("destination options %x: %v %+v", p.DestOpts, err, r)
	}
	if p, _ := Parse(packet(protoTCP, tcpHeader(1, 80, FlagSYN|FlagACK))); p.First() {
		t.Error("a SYN-ACK starts a flow")
	}
	if p, err := Parse(packet(protoUDP, make([]byte, 8))); err != nil || !p.First() || p.Key.Proto != protoUDP {
		t.Errorf("udp: %+v %v", p, err)
	}
	good := packet(protoTCP, tcpHeader(1, 80, FlagACK), dest)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:30], ErrShort},
		{"ipv4", append([]byte{0x45}, good[1:]...), ErrNotIPv6},
		{"payload length beyond the packet", good[:len(good)-1], ErrBadLength},
		{"truncated tcp", packet(protoTCP, make([]byte, 10)), ErrShort},
		{"extension header past the end", packet(protoTCP, nil, []byte{0, 9, 0, 0, 0, 0, 0, 0}), ErrBadLength},
		{"fragment", packet(protoFragment, make([]byte, 8)), ErrFragment},
		{"icmpv6", packet(58, make([]byte, 8)), ErrUnsupported},
		{"too many headers", packet(protoTCP, tcpHeader(1, 80, 0), dest, dest, dest, dest, dest, dest, dest, dest, dest), ErrTooManyExt},
	} {
		if _, err := Parse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	opt := lbsp.Option{Client: lbsp.RandomClient()}
	f.Add(packet(protoTCP, tcpHeader(40000, 80, FlagSYN), lbsp.BuildDestOpts(0, opt.Append(nil, lbsp.DefaultType))))
	f.Add(packet(protoUDP, make([]byte, 8)))
	f.Add(packet(protoFragment, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.DestOpts != nil && (len(p.DestOpts) < 8 || len(p.DestOpts)%8 != 0) {
			t.Fatalf("destination options of %d bytes", len(p.DestOpts))
		}
		if p.Key.Proto != protoTCP && p.Key.Proto != protoUDP {
			t.Fatalf("protocol %d accepted", p.Key.Proto)
		}
	})
}

// The flow table is bounded, keeps a flow's member, and ends idle and
// closed flows (releasing their members).
func TestTable(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := newTable(2, time.Minute)
	released := 0
	rel := func() { released++ }
	k1, k2, k3 := Key{SPort: 1}, Key{SPort: 2}, Key{SPort: 3}
	m1 := netip.MustParseAddrPort("[2001:db8::11]:80")
	if !tb.add(k1, m1, rel, now) || !tb.add(k2, m1, rel, now) {
		t.Fatal("add")
	}
	if tb.add(k3, m1, rel, now) {
		t.Fatal("a full table took a flow")
	}
	if !tb.add(k1, netip.MustParseAddrPort("[2001:db8::12]:80"), rel, now) || released != 1 {
		t.Fatal("a repeated SYN did not keep the flow's member (and release the new pick)")
	}
	if m, ok := tb.get(k1, FlagFIN, now); !ok || m != m1 {
		t.Fatalf("get %v %v", m, ok)
	}
	if n := tb.sweep(now.Add(closeWait + time.Second)); n != 1 || released != 2 {
		t.Fatalf("closed flow: swept %d, released %d", n, released)
	}
	if n := tb.sweep(now.Add(2 * time.Minute)); n != 1 || tb.len() != 0 || released != 3 {
		t.Fatalf("idle flow: swept %d, len %d, released %d", n, tb.len(), released)
	}
	// A SYN nobody follows up (a spoofed flood) gives its slots back after
	// synWait, not after the idle timeout; a flow that went on does not.
	tb.add(k1, m1, rel, now)
	tb.add(k2, m1, rel, now)
	tb.get(k2, FlagACK, now)
	if n := tb.sweep(now.Add(synWait + time.Second)); n != 1 || tb.len() != 1 || released != 4 {
		t.Fatalf("half-open flow: swept %d, len %d, released %d", n, tb.len(), released)
	}
}
