package lbsp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ipv6UDP returns an IPv6 packet from src to dst carrying the Destination
// Options header dopts (Next Header 17) and a UDP datagram with payload,
// checksummed.
func ipv6UDP(src, dst netip.Addr, dopts []byte, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	s, d := src.As16(), dst.As16()
	// Checksum over the pseudo-header (RFC 8200 §8.1) and the datagram.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(s[:])
	add(d[:])
	var ph [8]byte
	binary.BigEndian.PutUint32(ph[0:], uint32(len(udp)))
	ph[7] = 17
	add(ph[:])
	add(udp)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	ck := ^uint16(sum)
	if ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], ck)

	dopts = append([]byte(nil), dopts...)
	dopts[0] = 17
	pkt := make([]byte, 40, 40+len(dopts)+len(udp))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(dopts)+len(udp)))
	pkt[6] = 60 // Destination Options
	pkt[7] = 64
	copy(pkt[8:], s[:])
	copy(pkt[24:], d[:])
	pkt = append(pkt, dopts...)
	return append(pkt, udp...)
}

// writePcap writes packets (raw IP, LINKTYPE_RAW) to a classic pcap file.
func writePcap(t *testing.T, path string, pkts ...[]byte) {
	t.Helper()
	var b bytes.Buffer
	hdr := []any{uint32(0xa1b2c3d4), uint16(2), uint16(4), int32(0), uint32(0), uint32(65535), uint32(101)}
	for _, v := range hdr {
		binary.Write(&b, binary.LittleEndian, v)
	}
	for i, p := range pkts {
		for _, v := range []uint32{uint32(1700000000 + i), 0, uint32(len(p)), uint32(len(p))} {
			binary.Write(&b, binary.LittleEndian, v)
		}
		b.Write(p)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tsharkFields are the fields checkDissection reads, in order.
var tsharkFields = []string{
	"ipv6.nxt", "ipv6.dstopts.nxt", "ipv6.dstopts.len_oct",
	"ipv6.opt.type", "ipv6.opt.length", "ipv6.opt.type.action", "ipv6.opt.type.change",
	"ipv6.opt.experimental", "_ws.expert.severity", "_ws.malformed", "udp.checksum.status",
}

// tsharkRows dissects the pcap at path and returns, per frame, the values
// of tsharkFields (multiple occurrences joined with commas). It skips the
// test when tshark is not installed.
func tsharkRows(t *testing.T, path string) [][]string {
	t.Helper()
	ts, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt-get install tshark): dissection not checked")
	}
	args := []string{"-n", "-r", path, "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=|"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(ts, args...)
	// A fresh home: no user preferences change the dissection, and no
	// unreadable ~/.config/wireshark (tshark can crash on one).
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.Bytes())
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		rows = append(rows, strings.Split(line, "|"))
	}
	return rows
}

// checkDissection asserts that tshark decoded row as a valid Destination
// Options header of 40 octets over UDP holding PadN(2) and an option of
// type typ (with typ's action and change bits) and 32 octets of data equal
// to opt's, and found nothing malformed.
func checkDissection(t *testing.T, row []string, typ byte, opt Option) {
	t.Helper()
	want := []string{
		"60", "17", "40",
		fmt.Sprintf("0x01,0x%02x", typ), "2,32",
		fmt.Sprintf("0,%d", ActionOf(typ)), fmt.Sprintf("0,%d", typ>>5&1),
		hex.EncodeToString(opt.Append(nil, typ)[2:]), "", "", "1", // checksum good
	}
	if len(row) != len(want) {
		t.Fatalf("tshark row %q: want %d fields", row, len(want))
	}
	for i := range want {
		if row[i] != want[i] {
			t.Errorf("tshark %s = %q, want %q", tsharkFields[i], row[i], want[i])
		}
	}
}

// TestTsharkDecodesOption writes a pcap of packets carrying the option as
// BuildDestOpts builds it and checks that Wireshark's dissector reads a
// valid header with the option type and length we sent. It also checks
// that it reads the seed's literal encoding as padding, as Linux does.
func TestTsharkDecodesOption(t *testing.T) {
	src, dst := netip.MustParseAddr("2001:db8::c1"), netip.MustParseAddr("2001:db8::5")
	first := Option{Client: ClientFromAddr(src)}
	reply := Option{Client: RandomClient(), Server: dst}
	const other = 0x3E // another RFC 4727 experimental value: skip, may change
	pkts := [][]byte{
		ipv6UDP(src, dst, BuildDestOpts(0, first.Append(nil, DefaultType)), 49999, 49998, []byte("ping")),
		ipv6UDP(dst, src, BuildDestOpts(0, reply.Append(nil, other)), 49998, 49999, []byte("pong")),
		ipv6UDP(src, dst, legacyHeader(), 49999, 49998, []byte("seed")),
	}
	f := filepath.Join(t.TempDir(), "lbsp.pcap")
	writePcap(t, f, pkts...)
	rows := tsharkRows(t, f)
	if len(rows) != len(pkts) {
		t.Fatalf("tshark printed %d frames, want %d", len(rows), len(pkts))
	}
	checkDissection(t, rows[0], DefaultType, first)
	checkDissection(t, rows[1], other, reply)
	// The seed's bytes: a PadN of 4 (our ErrLegacy), then padding.
	if typ, l := rows[2][3], rows[2][4]; !strings.HasPrefix(typ, "0x01,0x00,") || !strings.HasPrefix(l, "4,") {
		t.Errorf("tshark read the seed's encoding as types %s lengths %s; want PadN(4) then padding", typ, l)
	}
}
