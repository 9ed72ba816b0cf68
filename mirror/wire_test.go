package mirror

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/persist"
)

func TestWireRoundTrip(t *testing.T) {
	now := time.Now()
	r := persist.Record{Key: "v|p|10.0.0.1", Type: "source_addr", Value: "10.0.0.1", Profile: "p", Virtual: "v", Pool: "web",
		Member: netip.MustParseAddrPort("10.9.0.1:80"), Created: now.Add(-time.Minute), Expires: now.Add(2 * time.Minute), Timeout: 3 * time.Minute}
	r6 := r
	r6.Member = netip.MustParseAddrPort("[2001:db8::1]:443")
	r6.Timeout, r6.Expires = 0, time.Time{}
	frames := []*frame{
		{typ: frameHello, version: 1, group: "tg1", device: "a", generation: 7},
		{typ: frameBegin, seq: 1}, {typ: frameRecord, seq: 2, rec: r}, {typ: frameRecord, seq: 3, rec: r6},
		{typ: frameDelete, seq: 4, key: "k"}, {typ: frameEnd, seq: 5, count: 2}, {typ: frameAck, seq: 5},
	}
	var b []byte
	for _, f := range frames {
		var err error
		if b, err = appendFrame(b, f, now); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(bytes.NewReader(b))
	later := now.Add(10 * time.Second) // the receiver reads 10 s later by its clock
	for i, want := range frames {
		got, _, err := readFrame(br, nil, func() time.Time { return later })
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got.typ != want.typ || got.seq != want.seq || got.group != want.group || got.key != want.key || got.count != want.count {
			t.Errorf("frame %d: got %+v want %+v", i, got, want)
		}
		if want.typ == frameRecord {
			w := want.rec
			g := got.rec
			if g.Key != w.Key || g.Member != w.Member || g.Timeout != w.Timeout || g.Pool != w.Pool || g.Virtual != w.Virtual {
				t.Errorf("record: got %+v want %+v", g, w)
			}
			// Relative times: age and remaining life survive, shifted to the reader's clock.
			if d := g.Created.Sub(later) - w.Created.Sub(now); d != 0 {
				t.Errorf("age shifted by %s", d)
			}
			if w.Timeout > 0 && g.Expires.Sub(later) != w.Expires.Sub(now) {
				t.Errorf("remaining life %s, want %s", g.Expires.Sub(later), w.Expires.Sub(now))
			}
		}
	}
	bad := r
	bad.Key = string(make([]byte, maxKey+1))
	if _, err := appendFrame(nil, &frame{typ: frameRecord, rec: bad}, now); err == nil {
		t.Error("an oversized key was encoded")
	}
	// Truncations and trailing bytes are malformed, never a panic.
	full, _ := appendFrame(nil, &frame{typ: frameRecord, seq: 1, rec: r}, now)
	for n := 5; n < len(full); n++ {
		if _, err := decodeFrame(full[0], full[5:n], now); !errors.Is(err, errMalformed) {
			t.Fatalf("record cut at %d: %v", n, err)
		}
	}
	if _, err := decodeFrame(full[0], append(full[5:], 0), now); !errors.Is(err, errMalformed) {
		t.Error("trailing byte accepted")
	}
}

// TestWireConnFrames: connection frames survive the round trip, and every
// truncation of them is malformed.
func TestWireConnFrames(t *testing.T) {
	now := time.Now()
	st := testSetup()
	st.At = now.Add(-time.Second)
	udp := *st
	udp.Kind = KindUDP
	// An idle http client connection: the client socket alone.
	idle := &ConnSetup{Kind: KindHTTP, Virtual: st.Virtual, Pool: st.Pool, Client: st.Client, At: st.At}
	frames := []*frame{
		{typ: frameConnOpen, seq: 1, id: 7, setup: st},
		{typ: frameConnOpen, seq: 1, id: 8, setup: &udp},
		{typ: frameConnOpen, seq: 1, id: 9, setup: idle},
		{typ: frameConnData, seq: 2, id: 7, dir: 1, offset: 100, acked: [2]uint64{90}, data: []byte("payload")},
		{typ: frameConnClose, seq: 3, id: 7},
		{typ: frameConnHalf, seq: 3, id: 7, dir: 1},
		{typ: frameConnFinal, seq: 4, id: 7, acked: [2]uint64{5, 6}, sent: [2]uint64{9, 6}, ts: [2]uint32{7, 8}},
	}
	for _, want := range frames {
		b, err := appendFrame(nil, want, now)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeFrame(b[0], b[5:], now)
		if err != nil {
			t.Fatalf("type %d: %v", want.typ, err)
		}
		if got.seq != want.seq || got.id != want.id || got.dir != want.dir || got.offset != want.offset || got.acked != want.acked ||
			!bytes.Equal(got.data, want.data) || got.ts != want.ts || got.sent != want.sent {
			t.Errorf("type %d: got %+v want %+v", want.typ, got, want)
		}
		if want.setup != nil && (got.setup.Client != want.setup.Client || got.setup.Server != want.setup.Server ||
			got.setup.Member != want.setup.Member || got.setup.Virtual != "v" || got.setup.Pool != "p" || got.setup.At.Sub(now) != -time.Second ||
			got.setup.Kind != want.setup.Kind) {
			t.Errorf("setup: got %+v want %+v", got.setup, want.setup)
		}
		for n := 5; n < len(b); n++ {
			if _, err := decodeFrame(b[0], b[5:n], now); !errors.Is(err, errMalformed) {
				t.Fatalf("type %d cut at %d: %v", want.typ, n, err)
			}
		}
	}
	// Acknowledged beyond what the frame reaches, a bad family, a zero port.
	bad, _ := appendFrame(nil, &frame{typ: frameConnData, id: 1, offset: 0, acked: [2]uint64{9}, data: []byte("abc")}, now)
	if _, err := decodeFrame(bad[0], bad[5:], now); !errors.Is(err, errMalformed) {
		t.Errorf("data acknowledged past its end: %v", err)
	}
	open, _ := appendFrame(nil, frames[0], now)
	fam := 5 + 8 + 8 + 1 + 8 + 2 + 2 + 19 + 16 // header, seq, id, kind, age, "v", "p", member; the client socket's local family byte
	corrupt := append([]byte(nil), open...)
	corrupt[fam] = 5
	if _, err := decodeFrame(corrupt[0], corrupt[5:], now); !errors.Is(err, errMalformed) {
		t.Errorf("address family 5: %v", err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	r := persist.Record{Key: "v|p|10.0.0.1", Type: "source_addr", Value: "10.0.0.1", Profile: "p", Virtual: "v", Pool: "web",
		Member: netip.MustParseAddrPort("10.9.0.1:80"), Created: now, Expires: now.Add(time.Minute), Timeout: time.Minute}
	for _, fr := range []*frame{
		{typ: frameHello, version: 1, group: "tg1", device: "a"}, {typ: frameRecord, seq: 2, rec: r},
		{typ: frameDelete, seq: 4, key: "k"}, {typ: frameEnd, seq: 5, count: 2}, {typ: frameAck, seq: 5},
		{typ: frameConnOpen, seq: 6, id: 1, setup: testSetup()}, {typ: frameConnOpen, seq: 7, id: 2, setup: &ConnSetup{Kind: KindUDP, Virtual: "u", Pool: "p", Member: netip.MustParseAddrPort("10.9.0.1:53"), Client: Socket{Local: netip.MustParseAddrPort("192.0.2.10:53"), Remote: netip.MustParseAddrPort("198.51.100.7:4000")}, Server: Socket{Local: netip.MustParseAddrPort("192.0.2.11:41000"), Remote: netip.MustParseAddrPort("10.9.0.1:53")}}}, {typ: frameConnData, seq: 7, id: 1, dir: 1, offset: 10, acked: [2]uint64{4}, data: []byte("abc")},
		{typ: frameConnOpen, seq: 8, id: 3, setup: &ConnSetup{Kind: KindHTTP, Virtual: "h", Client: testSetup().Client}},
		{typ: frameConnClose, seq: 8, id: 1}, {typ: frameConnHalf, seq: 8, id: 1}, {typ: frameConnFinal, seq: 9, id: 1, acked: [2]uint64{1, 2}, sent: [2]uint64{1, 5}, ts: [2]uint32{3, 4}},
	} {
		b, _ := appendFrame(nil, fr, now)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 64; i++ {
			fr, _, err := readFrame(br, nil, func() time.Time { return now })
			if err != nil {
				return
			}
			// What decodes re-encodes to a frame that decodes the same.
			enc, err := appendFrame(nil, fr, now)
			if err != nil {
				if fr.typ == frameRecord {
					continue // e.g. a family-6 member that is v4-mapped
				}
				t.Fatalf("decoded %+v does not re-encode: %v", fr, err)
			}
			again, err := decodeFrame(enc[0], enc[5:], now)
			if err != nil || again.seq != fr.seq || again.key != fr.key || again.rec.Key != fr.rec.Key || again.rec.Member != fr.rec.Member ||
				again.id != fr.id || again.offset != fr.offset || again.acked != fr.acked || again.sent != fr.sent || !bytes.Equal(again.data, fr.data) || again.ts != fr.ts ||
				(fr.setup != nil && (again.setup.Client != fr.setup.Client || again.setup.Server != fr.setup.Server || again.setup.Member != fr.setup.Member)) {
				t.Fatalf("round trip: %+v -> %+v (%v)", fr, again, err)
			}
		}
	})
}
