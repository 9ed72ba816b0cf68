package dedup

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// versions returns count edited copies of a base: each a few random
// overwrites, insertions and deletions away from the previous one.
func versions(seed uint64, size, count int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 3))
	v := random(seed, size)
	out := [][]byte{v}
	for range count - 1 {
		v = append([]byte(nil), v...)
		for range 4 {
			at := r.IntN(len(v))
			switch r.IntN(3) {
			case 0:
				copy(v[at:], random(r.Uint64(), 100))
			case 1:
				v = append(v[:at], append(random(r.Uint64(), 1+r.IntN(300)), v[at:]...)...)
			case 2:
				v = append(v[:at], v[min(len(v), at+1+r.IntN(300)):]...)
			}
		}
		out = append(out, v)
	}
	return out
}

func pair(t testing.TB, budget int64) (*Encoder, *Decoder) {
	e, err := NewEncoder(DefaultParams(), budget)
	if err != nil {
		t.Fatal(err)
	}
	return e, NewDecoder(budget)
}

// stream sends each of datas as its own stream, interleaved in random
// pieces with random final flags, like the tunnel's writer; it returns
// what the decoder delivered per stream and the encoded bytes per stream.
func stream(t *testing.T, e *Encoder, d *Decoder, datas [][]byte, seed uint64) ([][]byte, []int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 5))
	got := make([][]byte, len(datas))
	wire := make([]int, len(datas))
	sent := make([]int, len(datas))    // bytes handed to the writer's queue
	pending := make([]int, len(datas)) // consumed up to
	for {
		var live []int
		for i := range datas {
			if pending[i] < len(datas[i]) {
				live = append(live, i)
			}
		}
		if len(live) == 0 {
			return got, wire
		}
		i := live[r.IntN(len(live))]
		sent[i] = min(len(datas[i]), sent[i]+1+r.IntN(100<<10))
		queued := datas[i][pending[i]:sent[i]]
		final := sent[i] == len(datas[i]) || r.IntN(4) == 0
		enc, n := e.Encode(nil, queued, final)
		if n == 0 && !final {
			enc, n = e.Encode(nil, queued, true)
		}
		if n > len(queued) || (final && n != len(queued)) {
			t.Fatalf("consumed %d of %d (final %v)", n, len(queued), final)
		}
		if bound := n + 4*n/DefaultParams().Min + 5; len(enc) > bound {
			t.Fatalf("%d bytes encoded to %d, beyond %d", n, len(enc), bound)
		}
		pending[i] += n
		wire[i] += len(enc)
		out, err := d.Decode(nil, enc, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = append(got[i], out...)
	}
}

func TestVersionsAcrossStreams(t *testing.T) {
	e, d := pair(t, 64<<20)
	vs := versions(1, 1<<20, 20)
	got, wire := stream(t, e, d, vs, 7)
	for i := range vs {
		if !bytes.Equal(got[i], vs[i]) {
			t.Fatalf("version %d corrupted", i)
		}
	}
	// Streams interleave, so a version may be sent before the chunks it
	// shares with another arrive; over all but the first, most must be
	// references.
	total, wired := 0, 0
	for i := 1; i < len(vs); i++ {
		total += len(vs[i])
		wired += wire[i]
	}
	if wired > total/4 {
		t.Fatalf("versions 2..20: %d bytes encoded to %d", total, wired)
	}
	// One after another, each later version costs a few chunks.
	e2, d2 := pair(t, 64<<20)
	for i, v := range vs {
		enc, n := e2.Encode(nil, v, true)
		out, err := d2.Decode(nil, enc, len(v))
		if err != nil || n != len(v) || !bytes.Equal(out, v) {
			t.Fatalf("version %d: %v", i, err)
		}
		if i > 0 && len(enc) > len(v)/10 {
			t.Fatalf("version %d: %d bytes encoded to %d", i, len(v), len(enc))
		}
	}
	if s := e2.Stats(); s.Refs == 0 || s.BytesOut >= s.BytesIn/4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestShiftedContent(t *testing.T) {
	e, d := pair(t, 64<<20)
	base := random(2, 512<<10)
	shifted := append(random(3, 777), base...)
	for _, v := range [][]byte{base, shifted} {
		enc, _ := e.Encode(nil, v, true)
		out, err := d.Decode(nil, enc, len(v))
		if err != nil || !bytes.Equal(out, v) {
			t.Fatal(err)
		}
		if &v[0] == &shifted[0] && len(enc) > len(v)/8 {
			t.Fatalf("shifted copy encoded to %d of %d", len(enc), len(v))
		}
	}
}

func TestBudgetLockStep(t *testing.T) {
	e, d := pair(t, 1<<20)
	hot := random(4, 4096)
	for i := range 200 {
		// The hot chunk is referenced between bursts of new data; LRU keeps it.
		for _, v := range [][]byte{hot, random(uint64(100+i), 20<<10)} {
			enc, _ := e.Encode(nil, v, true)
			out, err := d.Decode(nil, enc, len(v))
			if err != nil || !bytes.Equal(out, v) {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	}
	if e.cache.used > 1<<20 || d.cache.used > 1<<20 || e.cache.used != d.cache.used {
		t.Fatalf("budgets: encoder %d decoder %d", e.cache.used, d.cache.used)
	}
	if len(e.cache.m) != len(d.cache.m) {
		t.Fatal("entry counts differ")
	}
	for k := range e.cache.m {
		if d.cache.m[k] == nil {
			t.Fatal("key sets differ")
		}
	}
	if e.cache.m[keyOf(hot)] == nil {
		t.Fatal("hot chunk evicted")
	}
}

func TestDivergenceRecovers(t *testing.T) {
	e, d := pair(t, 64<<20)
	v := random(5, 256<<10)
	enc, _ := e.Encode(nil, v, true)
	if _, err := d.Decode(nil, enc, len(v)); err != nil {
		t.Fatal(err)
	}
	// The receiving end restarts: a new Decoder.
	d = NewDecoder(64 << 20)
	enc, _ = e.Encode(nil, v, true) // all references now
	out, err := d.Decode(nil, enc, len(v))
	if !errors.Is(err, ErrDiverged) || len(out) != 0 {
		t.Fatalf("got %d bytes, %v", len(out), err)
	}
	epoch, reset := d.Resync()
	if !reset || epoch != 1 {
		t.Fatalf("resync %d %v", epoch, reset)
	}
	// In flight before the peer hears: references fail as stale, literals
	// still arrive.
	enc, _ = e.Encode(nil, v, true)
	if _, err := d.Decode(nil, enc, len(v)); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	if _, reset := d.Resync(); reset {
		t.Fatal("a stale payload reset again")
	}
	fresh := random(6, 64<<10)
	enc, _ = e.Encode(nil, fresh, true)
	if out, err := d.Decode(nil, enc, len(fresh)); err != nil || !bytes.Equal(out, fresh) {
		t.Fatalf("stale literal: %v", err)
	}
	// The peer resets: everything round-trips again.
	e.Reset(epoch)
	for range 3 {
		enc, _ = e.Encode(nil, v, true)
		if out, err := d.Decode(nil, enc, len(v)); err != nil || !bytes.Equal(out, v) {
			t.Fatalf("after reset: %v", err)
		}
	}
	if e.Stats().Refs == 0 {
		t.Fatal("no references after the reset")
	}
}

func TestMalformed(t *testing.T) {
	e, d := pair(t, 1<<20)
	v := random(7, 8<<10)
	good, _ := e.Encode(nil, v, true)
	if _, err := d.Decode(nil, good, len(v)); err != nil {
		t.Fatal(err)
	}
	ref, _ := e.Encode(nil, v, true)
	for name, c := range map[string]struct {
		p   []byte
		max int
		err error
	}{
		"empty":          {nil, 100, ErrCorrupt},
		"unknown op":     {[]byte{0, 7}, 100, ErrCorrupt},
		"short literal":  {[]byte{0, 0, 10, 1, 2}, 100, ErrCorrupt},
		"bad varint":     {[]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 100, ErrCorrupt},
		"short ref":      {[]byte{0, 1, 1, 2}, 100, ErrCorrupt},
		"over the limit": {ref, len(v) - 1, ErrTooLarge},
	} {
		d2 := NewDecoder(1 << 20)
		if name == "over the limit" {
			d2 = d
		}
		out, err := d2.Decode([]byte("x"), c.p, c.max)
		if !errors.Is(err, c.err) || string(out) != "x" {
			t.Errorf("%s: %q %v", name, out, err)
		}
	}
	// An amplification attempt: references to a 64 KiB chunk, bounded.
	e3, d3 := pair(t, 1<<20)
	big := random(8, 64<<10)
	enc, _ := e3.Encode(nil, big, true)
	d3.Decode(nil, enc, len(big))
	enc, _ = e3.Encode(nil, big, true)
	amp := append([]byte{enc[0]}, bytes.Repeat(enc[1:], 1000)...)
	if out, err := d3.Decode(nil, amp, 1<<20); !errors.Is(err, ErrTooLarge) || len(out) != 0 {
		t.Fatalf("amplification: %d %v", len(out), err)
	}
}

func TestParams(t *testing.T) {
	for _, p := range []Params{{100, 8192, 65536}, {4096, 4096, 65536}, {2048, 6000, 65536}, {2048, 8192, 2 << 20}} {
		if p.Validate() == nil {
			t.Errorf("%v accepted", p)
		}
	}
	// Chunk sizes stay within bounds and average near Avg on random data.
	data := random(9, 8<<20)
	n, count := 0, 0
	for off := 0; off < len(data); {
		c, cut := DefaultParams().Cut(data[off:])
		if cut && (c < DefaultParams().Min || c > DefaultParams().Max) {
			t.Fatalf("chunk of %d", c)
		}
		off += c
		n += c
		count++
	}
	if avg := n / count; avg < 6<<10 || avg > 14<<10 {
		t.Fatalf("average chunk %d", avg)
	}
}

func FuzzDecode(f *testing.F) {
	e, _ := NewEncoder(DefaultParams(), 1<<20)
	v := random(10, 4096)
	lit, _ := e.Encode(nil, v, true)
	ref, _ := e.Encode(nil, v, true)
	f.Add(lit)
	f.Add(ref)
	f.Add([]byte{0, 0, 3, 'a', 'b', 'c'})
	f.Fuzz(func(t *testing.T, p []byte) {
		d := NewDecoder(1 << 20)
		d.Decode(nil, lit, 1<<20)
		out, err := d.Decode(nil, p, 64<<10)
		if err == nil && len(out) > 64<<10 {
			t.Fatalf("%d bytes beyond the limit", len(out))
		}
		if err != nil && len(out) != 0 {
			t.Fatal("output on error")
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(random(11, 10000), uint16(3000), uint16(500))
	f.Add(bytes.Repeat([]byte("abc"), 5000), uint16(100), uint16(7000))
	f.Fuzz(func(t *testing.T, data []byte, s1, s2 uint16) {
		e, err := NewEncoder(Params{Min: 256, Avg: 1024, Max: 4096}, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		d := NewDecoder(64 << 10)
		var got []byte
		for round := range 2 {
			pending := data
			cuts := []int{int(s1), int(s2)}
			for i := 0; len(pending) > 0; i++ {
				n := min(len(pending), 1+cuts[i%2])
				final := n == len(pending) || i%3 == round
				enc, c := e.Encode(nil, pending[:n], final)
				if c == 0 && !final {
					enc, c = e.Encode(nil, pending[:n], true)
				}
				out, err := d.Decode(nil, enc, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, out...)
				pending = pending[c:]
			}
		}
		if !bytes.Equal(got, append(append([]byte(nil), data...), data...)) {
			t.Fatal("round trip differs")
		}
	})
}

func BenchmarkCut(b *testing.B) {
	data := random(12, 16<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		for off := 0; off < len(data); {
			n, _ := DefaultParams().Cut(data[off:])
			off += n
		}
	}
}

func BenchmarkEncodeUnique(b *testing.B) {
	data := random(13, 16<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var dst []byte
	for range b.N {
		e, _ := NewEncoder(DefaultParams(), 64<<20)
		dst, _ = e.Encode(dst[:0], data, true)
	}
}

func BenchmarkEncodeDuplicate(b *testing.B) {
	data := random(14, 16<<20)
	e, _ := NewEncoder(DefaultParams(), 64<<20)
	dst, _ := e.Encode(nil, data, true)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		dst, _ = e.Encode(dst[:0], data, true)
	}
}

func BenchmarkDecode(b *testing.B) {
	data := random(15, 16<<20)
	e, _ := NewEncoder(DefaultParams(), 64<<20)
	lit, _ := e.Encode(nil, data, true)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var dst []byte
	for range b.N {
		d := NewDecoder(64 << 20)
		dst, _ = d.Decode(dst[:0], lit, len(data))
	}
}
