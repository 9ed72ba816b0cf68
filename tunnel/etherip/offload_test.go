package etherip

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func tcpSegPayload(flags byte, opts, payload []byte) []byte {
	t := tcpSeg(flags, opts)
	return append(t[:len(t)-3], payload...)
}

func TestGSOSplitAndGRO(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	ts := []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} // NOP NOP timestamps
	for _, v6 := range []bool{false, true} {
		for _, plen := range []int{1, 1448, 1449, 10000, 60000} {
			payload := make([]byte, plen)
			for i := range payload {
				payload[i] = byte(rng.Uint32())
			}
			seg := tcpSegPayload(tcpACK|tcpPSH, ts, payload)
			var super []byte
			if v6 {
				super = frame6(seg, false)
			} else {
				super = frame4(seg, 0)
				binary.BigEndian.PutUint16(super[14+4:], 777) // IP ID
				binary.BigEndian.PutUint16(super[14+10:], ^fold(sum(0, super[14:34])))
			}
			g, ok := parseTCP(super)
			if !ok {
				t.Fatal("parseTCP failed")
			}
			const mss = 1448
			n := gsoSegments(super, g, mss)
			out := make([][]byte, n)
			for i := range out {
				out[i] = make([]byte, g.hdrEnd+mss)
			}
			lens := make([]int, n)
			// Split in two calls, as the endpoint does when its batch
			// fills up.
			k := gsoSplit(super, g, mss, 0, out[:1], lens[:1])
			k += gsoSplit(super, g, mss, 1, out[1:], lens[1:])
			if k != n {
				t.Fatalf("v6=%v len %d: %d segments, want %d", v6, plen, k, n)
			}
			var st groState
			st.buf = make([]byte, vnetHdrLen+65536)
			var joined []byte
			for i := range n {
				s := out[i][:lens[i]]
				sg, ok := groCandidate(s)
				if !ok {
					t.Fatalf("segment %d is no GRO candidate (bad checksum or lengths)", i)
				}
				if f := s[sg.l4+13]; (f&tcpPSH != 0) != (i == n-1) {
					t.Fatalf("segment %d flags %#x", i, f)
				}
				if !v6 && binary.BigEndian.Uint16(s[14+4:]) != 777+uint16(i) {
					t.Fatalf("segment %d IP ID", i)
				}
				if i == 0 {
					st.start(s, sg)
				} else if !st.add(s, sg) {
					t.Fatalf("segment %d not joined", i)
				}
			}
			joined = st.finish()
			h := decodeVnet(joined)
			f := bytes.Clone(joined[vnetHdrLen:])
			if n == 1 {
				if h != (vnetHdr{}) || !bytes.Equal(f, out[0][:lens[0]]) {
					t.Fatalf("single segment changed: %+v", h)
				}
				continue
			}
			wantGSO := uint8(vnetGSOTCPv4)
			if v6 {
				wantGSO = vnetGSOTCPv6
			}
			if h.gsoType != wantGSO || h.gsoSize != mss || h.flags != vnetFlagNeedsCsum || int(h.csumStart) != g.l4 || h.csumOffs != 16 || int(h.hdrLen) != g.hdrEnd {
				t.Fatalf("vnet header %+v", h)
			}
			if !finishChecksum(f, int(h.csumStart), int(h.csumOffs)) {
				t.Fatal("finishChecksum")
			}
			if !bytes.Equal(f, super) {
				t.Fatalf("v6=%v len %d: joined frame differs from the original", v6, plen)
			}
		}
	}
}

func TestGRORefuses(t *testing.T) {
	t.Parallel()
	mk := func(seq uint32, flags byte, plen int) []byte {
		s := tcpSegPayload(flags, nil, make([]byte, plen))
		binary.BigEndian.PutUint32(s[4:], seq)
		return frame4(s, 0)
	}
	var st groState
	st.buf = make([]byte, vnetHdrLen+65536)
	first := mk(1000, tcpACK, 100)
	g, ok := groCandidate(first)
	if !ok {
		t.Fatal("first not a candidate")
	}
	st.start(first, g)
	for name, f := range map[string][]byte{
		"gap":    mk(1200, tcpACK, 100),
		"bigger": mk(1100, tcpACK, 101),
	} {
		fg, ok := groCandidate(f)
		if ok && st.add(f, fg) {
			t.Errorf("%s joined", name)
		}
	}
	for name, f := range map[string][]byte{
		"syn":     mk(1100, tcpSYN|tcpACK, 100),
		"fin":     mk(1100, tcpFIN|tcpACK, 100),
		"no data": mk(1100, tcpACK, 0),
	} {
		if _, ok := groCandidate(f); ok {
			t.Errorf("%s is a candidate", name)
		}
	}
	bad := mk(1100, tcpACK, 100)
	bad[len(bad)-1] ^= 1
	if _, ok := groCandidate(bad); ok {
		t.Error("bad checksum is a candidate")
	}
	short := mk(1100, tcpACK, 50)
	sg, _ := groCandidate(short)
	if !st.add(short, sg) {
		t.Fatal("short last segment not joined")
	}
	next := mk(1150, tcpACK, 100)
	ng, _ := groCandidate(next)
	if st.add(next, ng) {
		t.Fatal("joined after a short segment")
	}
}

func TestSum(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 100 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := fold(sum(0, b)), uint16(onesSum(0, b)); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d: sum %#x, want %#x", n, got, want)
		}
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(1500)
	for b.Loop() {
		_ = fold(sum(0, buf))
	}
}
