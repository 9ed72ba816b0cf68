package etherip

import (
	"bytes"
	"testing"
)

// FuzzDecap: Decap never panics, returns a frame that aliases the input
// and is at least an Ethernet header long, accepts exactly the two known
// headers, and inverts Encap. ClampMSS never panics on what Decap accepts
// and never lengthens a frame; the offload parsers (groCandidate, GRO,
// gsoSplit) never panic on it.
func FuzzDecap(f *testing.F) {
	f.Add([]byte{0x30, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3, 4, 5, 0x08, 0x06}, false)
	f.Add([]byte{0x03, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3, 4, 5, 0x08, 0x06}, true)
	f.Add([]byte{0x30}, false)
	f.Add([]byte{0x31, 0x00}, false)
	f.Fuzz(func(t *testing.T, pkt []byte, reversed bool) {
		frame, err := Decap(pkt, reversed)
		if err != nil {
			if _, ok := err.(DropReason); !ok {
				t.Fatalf("error %T is not a DropReason", err)
			}
			if frame != nil {
				t.Fatal("frame with error")
			}
		} else {
			if len(frame) < ethHeaderLen || len(frame) != len(pkt)-2 || &frame[0] != &pkt[2] {
				t.Fatalf("bad frame for % x", pkt)
			}
			okHdr := pkt[0] == 0x30 && pkt[1] == 0 || reversed && pkt[0] == 0x03 && pkt[1] == 0
			if !okHdr {
				t.Fatalf("accepted header % x (reversed=%v)", pkt[:2], reversed)
			}
			c := bytes.Clone(frame)
			ClampMSS(c, 1400)
			if len(c) != len(frame) {
				t.Fatal("ClampMSS changed the length")
			}
			// The receive offload parses what the wire delivers: it must
			// not panic, and a lone segment must come out unchanged.
			if g, ok := groCandidate(c); ok {
				var st groState
				st.buf = make([]byte, vnetHdrLen+len(c))
				st.start(c, g)
				if st.add(c, g) {
					t.Fatal("a segment continued itself")
				}
				if out := st.finish(); !bytes.Equal(out[vnetHdrLen:], c) {
					t.Fatal("a lone segment changed")
				}
			}
			if g, ok := parseTCP(c); ok {
				const mss = 536
				out := [][]byte{make([]byte, g.hdrEnd+mss), make([]byte, g.hdrEnd+mss)}
				var lens [2]int
				gsoSplit(c, g, mss, 0, out, lens[:])
			}
		}
		// Round trip: whatever the bytes, as a frame they survive.
		enc := Encap(nil, pkt)
		got, err := Decap(enc, false)
		if len(pkt) < ethHeaderLen {
			if err != DropRuntFrame {
				t.Fatalf("Decap(Encap(%d bytes)) = %v, want runt_frame", len(pkt), err)
			}
			return
		}
		if err != nil || !bytes.Equal(got, pkt) {
			t.Fatalf("round trip of % x: % x, %v", pkt, got, err)
		}
	})
}
