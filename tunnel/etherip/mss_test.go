package etherip

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// onesSum is the 16-bit one's complement sum of b, continuing from s.
func onesSum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return s
}

// tcpChecksum computes the TCP checksum (field taken as zero).
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var s uint32
	s = onesSum(s, src.AsSlice())
	s = onesSum(s, dst.AsSlice())
	s += 6 + uint32(len(seg))
	c := bytes.Clone(seg)
	c[16], c[17] = 0, 0
	s = onesSum(s, c)
	return ^uint16(s)
}

// tcpSeg builds a TCP segment with the given flags and options and a zero
// checksum.
func tcpSeg(flags byte, opts []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	t := make([]byte, 20+len(opts)+3) // three payload bytes
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 80)
	binary.BigEndian.PutUint32(t[4:], 12345)
	t[12] = byte((20+len(opts))/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:], 65535)
	copy(t[20:], opts)
	copy(t[20+len(opts):], "abc")
	return t
}

var (
	src4 = netip.MustParseAddr("198.51.100.1")
	dst4 = netip.MustParseAddr("198.51.100.2")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8::2")
)

// frame4 wraps seg in IPv4 (with ipOpts words of IP options) and Ethernet
// with the given VLAN tags, and fills in the TCP checksum.
func frame4(seg []byte, ipOpts int, tags ...uint16) []byte {
	seg = bytes.Clone(seg)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(src4, dst4, seg))
	ip := make([]byte, 20+4*ipOpts)
	ip[0] = 0x45 + byte(ipOpts)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(seg)))
	ip[8], ip[9] = 64, 6
	copy(ip[12:], src4.AsSlice())
	copy(ip[16:], dst4.AsSlice())
	for i := 20; i < len(ip); i++ {
		ip[i] = 1 // NOP options
	}
	return ether(etherTypeIPv4, append(ip, seg...), tags...)
}

func frame6(seg []byte, hopByHop bool, tags ...uint16) []byte {
	seg = bytes.Clone(seg)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(src6, dst6, seg))
	ip := make([]byte, 40)
	ip[0] = 0x60
	ip[6], ip[7] = 6, 64
	copy(ip[8:], src6.AsSlice())
	copy(ip[24:], dst6.AsSlice())
	if hopByHop {
		ip[6] = 0
		ip = append(ip, 6, 0, 1, 4, 0, 0, 0, 0) // next TCP, PadN
	}
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40+len(seg)))
	return ether(etherTypeIPv6, append(ip, seg...), tags...)
}

func ether(et uint16, payload []byte, tags ...uint16) []byte {
	f := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	for i, tag := range tags {
		tpid := uint16(etherType8021Q)
		if i == 0 && len(tags) == 2 {
			tpid = etherType8021AD
		}
		f = binary.BigEndian.AppendUint16(f, tpid)
		f = binary.BigEndian.AppendUint16(f, tag)
	}
	f = binary.BigEndian.AppendUint16(f, et)
	return append(f, payload...)
}

func mssOpt(v uint16) []byte { return []byte{2, 4, byte(v >> 8), byte(v)} }

// segOf finds the TCP segment in a frame built above and its addresses.
func segOf(t *testing.T, f []byte) (seg []byte, src, dst netip.Addr) {
	t.Helper()
	off := 12
	for binary.BigEndian.Uint16(f[off:]) != etherTypeIPv4 && binary.BigEndian.Uint16(f[off:]) != etherTypeIPv6 {
		off += 4
	}
	p := f[off+2:]
	if p[0]>>4 == 4 {
		return p[int(p[0]&15)*4:], src4, dst4
	}
	if p[6] == 0 {
		return p[48:], src6, dst6
	}
	return p[40:], src6, dst6
}

func TestClampMSS(t *testing.T) {
	t.Parallel()
	const syn, synAck, ack = 0x02, 0x12, 0x10
	std := append(append(mssOpt(1460), 4, 2, 8, 10), make([]byte, 8)...) // MSS, SACK-perm, timestamps
	odd := append([]byte{1}, mssOpt(1460)...)                            // NOP first: the value straddles words
	tests := []struct {
		name    string
		frame   []byte
		mtu     int
		wantMSS uint16 // 0: unchanged
	}{
		{"v4 SYN", frame4(tcpSeg(syn, std), 0), 1464, 1424},
		{"v4 SYN-ACK", frame4(tcpSeg(synAck, std), 0), 1464, 1424},
		{"v4 SYN odd offset", frame4(tcpSeg(syn, odd), 0), 1464, 1424},
		{"v4 SYN IP options", frame4(tcpSeg(syn, std), 2), 1464, 1424},
		{"v4 SYN 802.1Q", frame4(tcpSeg(syn, std), 0, 100), 1464, 1420},
		{"v4 SYN QinQ", frame4(tcpSeg(syn, odd), 0, 10, 100), 1464, 1416},
		{"v4 ACK untouched", frame4(tcpSeg(ack, std), 0), 1464, 0},
		{"v4 smaller MSS untouched", frame4(tcpSeg(syn, mssOpt(1200)), 0), 1464, 0},
		{"v4 no MSS", frame4(tcpSeg(syn, []byte{1, 1, 1, 1}), 0), 1464, 0},
		{"v4 tiny MTU", frame4(tcpSeg(syn, std), 0), 40, 0},
		{"v6 SYN", frame6(tcpSeg(syn, std), false), 1444, 1384},
		{"v6 SYN odd offset", frame6(tcpSeg(syn, odd), false), 1444, 1384},
		{"v6 SYN hop-by-hop", frame6(tcpSeg(syn, std), true), 1444, 1384},
		{"v6 SYN 802.1Q", frame6(tcpSeg(syn, std), false, 7), 1444, 1380},
		{"v6 ACK untouched", frame6(tcpSeg(ack, std), false), 1444, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := bytes.Clone(tt.frame)
			changed := ClampMSS(f, tt.mtu)
			if changed != (tt.wantMSS != 0) {
				t.Fatalf("changed = %v", changed)
			}
			if !changed {
				if !bytes.Equal(f, tt.frame) {
					t.Fatal("frame modified though not reported")
				}
				return
			}
			seg, src, dst := segOf(t, f)
			i := bytes.Index(seg[20:], []byte{2, 4})
			if got := binary.BigEndian.Uint16(seg[20+i+2:]); got != tt.wantMSS {
				t.Fatalf("MSS = %d, want %d", got, tt.wantMSS)
			}
			if got, want := binary.BigEndian.Uint16(seg[16:]), tcpChecksum(src, dst, seg); got != want {
				t.Fatalf("checksum %#04x, want %#04x", got, want)
			}
			// Idempotent.
			if ClampMSS(f, tt.mtu) {
				t.Fatal("second clamp changed the frame")
			}
		})
	}
}

func TestClampMSSMalformed(t *testing.T) {
	t.Parallel()
	good := frame4(tcpSeg(0x02, mssOpt(1460)), 0)
	// Every truncation, and option lengths that run off the end, are
	// left alone without panicking.
	for n := range len(good) {
		ClampMSS(bytes.Clone(good[:n]), 1000)
	}
	bad := bytes.Clone(good)
	bad[14+20+21] = 40 // MSS option length past the header
	if ClampMSS(bad, 1000) {
		t.Fatal("clamped an option with a bad length")
	}
	frag := bytes.Clone(good)
	frag[14+7] = 1 // fragment offset 8
	if ClampMSS(frag, 1000) {
		t.Fatal("clamped a non-first fragment")
	}
}

func TestCsumReplace(t *testing.T) {
	t.Parallel()
	data := []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xff, 0xff}
	ck := ^uint16(onesSum(0, data))
	for _, nw := range []uint16{0, 1, 0xffff, 0x5a5a, 0x0578} {
		d := bytes.Clone(data)
		old := binary.BigEndian.Uint16(d[2:])
		binary.BigEndian.PutUint16(d[2:], nw)
		want := ^uint16(onesSum(0, d))
		got := csumReplace(ck, old, nw)
		// 0x0000 and 0xffff are the same number in one's complement.
		if got != want && !(got^want == 0xffff && (got == 0 || want == 0)) {
			t.Errorf("replace %#x→%#x: %#04x, want %#04x", old, nw, got, want)
		}
	}
}
