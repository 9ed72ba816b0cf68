package dedup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// random returns n pseudo-random bytes.
func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// shaStream returns n bytes of SHA-256 in counter mode: pseudo-random
// bytes that depend on no library's choice of generator, for pinned
// values.
func shaStream(seed string, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	for i := uint64(0); len(out) < n; i++ {
		h := sha256.New()
		h.Write([]byte(seed))
		h.Write(binary.LittleEndian.AppendUint64(nil, i))
		out = h.Sum(out)
	}
	return out[:n]
}

// refCut is Params.Cut written plainly, one byte at a time: the
// specification the fast version must match.
func refCut(p Params, data []byte) int {
	n := min(len(data), p.Max)
	if n <= p.Min {
		return n
	}
	b := 0
	for 1<<b < p.Avg {
		b++
	}
	hard := ^uint64(0) << (64 - (b + 2)) // mask of the top b+2 bits
	easy := ^uint64(0) << (64 - (b - 2))
	var h uint64
	for i := p.Min; i < n; i++ {
		h = h<<1 + gear[data[i]]
		mask := easy
		if i < p.Avg {
			mask = hard
		}
		if h&mask == 0 {
			return i + 1
		}
	}
	return n
}

var testParams = []Params{
	DefaultParams(),
	{Min: 256, Avg: 512, Max: 1024},
	{Min: 256, Avg: 1024, Max: 8192},
	{Min: 300, Avg: 4096, Max: 1 << 20},
	{Min: 4095, Avg: 4096, Max: 4097},
}

// The Gear table decides the cut points, which both ends must share with
// every version of the software that ever ran: it must never change.
func TestGearPinned(t *testing.T) {
	var b []byte
	for _, g := range gear {
		b = binary.LittleEndian.AppendUint64(b, g)
	}
	const want = "e4c01b48ec3e5fd80a2a12143f46db5e33bca883b83c8bf1ca3339f42beee3af"
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != want {
		t.Fatalf("the gear table changed: SHA-256 %x", got)
	}
}

// So must the cut points themselves (the masks, the normalization).
func TestCutPinned(t *testing.T) {
	data := shaStream("fulcrum dedup cut points", 4<<20)
	for _, c := range []struct {
		p     Params
		count int
		hash  string
	}{
		{DefaultParams(), 444, "831f4b3bf33b36da280461d4e3cce5207e876c19508ed1a8fd9a01118c0bc88f"},
		{Params{256, 1024, 8192}, 3602, "ec95a3ba6af9eaef53de1d25e48b159f762639978f16789337656aa6944e172e"},
	} {
		var lengths []byte
		count := 0
		for off := 0; off < len(data); count++ {
			n := c.p.Cut(data[off:])
			off += n
			lengths = binary.AppendUvarint(lengths, uint64(n))
		}
		if got := sha256.Sum256(lengths); count != c.count || hex.EncodeToString(got[:]) != c.hash {
			t.Errorf("%v: %d chunks, lengths hash %x; want %d, %s", c.p, count, got, c.count, c.hash)
		}
	}
}

func TestCutMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	inputs := [][]byte{random(1, 2<<20), make([]byte, 200<<10), bytes.Repeat([]byte("0123456789abcdef"), 16<<10), text(2, 1<<20)}
	for _, p := range testParams {
		for _, data := range inputs {
			for range 2000 {
				off := r.IntN(len(data))
				d := data[off : off+r.IntN(min(len(data)-off, 2*p.Max)+1)]
				if got, want := p.Cut(d), refCut(p, d); got != want {
					t.Fatalf("%v, %d bytes at %d: Cut %d, reference %d", p, len(d), off, got, want)
				}
			}
		}
	}
}

// A cut before the end of data (or at Max) does not depend on the bytes
// after it; a prefix shorter than the chunk has no cut point.
func TestCutStable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	data := random(3, 4<<20)
	for _, p := range testParams {
		for range 500 {
			off := r.IntN(len(data) - 2*p.Max)
			d := data[off : off+p.Max+r.IntN(p.Max)]
			c := p.Cut(d)
			if c <= p.Min || c > p.Max {
				t.Fatalf("%v: chunk of %d", p, c)
			}
			for range 10 {
				k := r.IntN(len(d) + 1)
				want := c
				if k < c || (k == c && c < p.Max) {
					want = k // ends before a cut point was seen
				}
				if got := p.Cut(d[:k]); got != want {
					t.Fatalf("%v: Cut of %d bytes %d, of %d bytes %d", p, len(d), c, k, got)
				}
			}
		}
	}
	if got := DefaultParams().Cut(nil); got != 0 {
		t.Fatalf("Cut(nil) = %d", got)
	}
}

func TestCutSizes(t *testing.T) {
	for _, p := range testParams[:4] {
		data := random(5, 32*p.Avg+4*p.Max)
		n, count := 0, 0
		for off := 0; off < len(data); count++ {
			c := p.Cut(data[off:])
			if off+c < len(data) && (c <= p.Min || c > p.Max) {
				t.Fatalf("%v: chunk of %d", p, c)
			}
			off += c
			n += c
		}
		// Normalized chunking keeps the average near Avg (plus part of Min).
		if avg := n / count; avg < p.Avg*3/4 || avg > p.Avg*2 {
			t.Errorf("%v: average chunk %d", p, avg)
		}
	}
	// Constant data has no cut point: Max-sized chunks.
	if c := DefaultParams().Cut(make([]byte, 1<<20)); c != 64<<10 {
		t.Errorf("zeros cut at %d", c)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range testParams {
		if err := p.Validate(); err != nil {
			t.Errorf("%v: %v", p, err)
		}
	}
	for _, p := range []Params{
		{},
		{Min: 255, Avg: 8192, Max: 65536},         // below MinCache
		{Min: 4096, Avg: 4096, Max: 65536},        // Min = Avg
		{Min: 2048, Avg: 6000, Max: 65536},        // Avg not a power of two
		{Min: 2048, Avg: 65536, Max: 65536},       // Avg = Max
		{Min: 2048, Avg: 8192, Max: 1<<20 + 1},    // Max too large
		{Min: -1, Avg: 8192, Max: 65536},          // negative
		{Min: 2048, Avg: 1 << 20, Max: 1<<20 + 2}, // too large
	} {
		if p.Validate() == nil {
			t.Errorf("%v accepted", p)
		}
		if _, err := NewEncoder(p, 1<<20, testKey()); err == nil {
			t.Errorf("NewEncoder accepted %v", p)
		}
	}
	if s := DefaultParams().Scheme(); s != "fastcdc-gmac-v2/2048/8192/65536" {
		t.Errorf("scheme %q", s)
	}
}

func BenchmarkCut(b *testing.B) {
	data := random(6, 16<<20)
	p := DefaultParams()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for off := 0; off < len(data); {
			off += p.Cut(data[off:])
		}
	}
}
