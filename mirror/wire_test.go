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

func FuzzDecodeFrame(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	r := persist.Record{Key: "v|p|10.0.0.1", Type: "source_addr", Value: "10.0.0.1", Profile: "p", Virtual: "v", Pool: "web",
		Member: netip.MustParseAddrPort("10.9.0.1:80"), Created: now, Expires: now.Add(time.Minute), Timeout: time.Minute}
	for _, fr := range []*frame{
		{typ: frameHello, version: 1, group: "tg1", device: "a"}, {typ: frameRecord, seq: 2, rec: r},
		{typ: frameDelete, seq: 4, key: "k"}, {typ: frameEnd, seq: 5, count: 2}, {typ: frameAck, seq: 5},
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
			if err != nil || again.seq != fr.seq || again.key != fr.key || again.rec.Key != fr.rec.Key || again.rec.Member != fr.rec.Member {
				t.Fatalf("round trip: %+v -> %+v (%v)", fr, again, err)
			}
		}
	})
}
