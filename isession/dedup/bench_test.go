package dedup

import "testing"

// benchData is 16 MiB of random bytes: no repeats within it.
func benchData() []byte { return random(13, 16<<20) }

// BenchmarkEncodeUnique: everything new, all literals (hashed and cached).
func BenchmarkEncodeUnique(b *testing.B) {
	data := benchData()
	dst := make([]byte, 0, len(data)+len(data)/64+5)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		e, _ := NewEncoder(DefaultParams(), 64<<20, testKey())
		dst, _ = e.Encode(dst[:0], data, true)
	}
}

// BenchmarkEncodeDuplicate: everything seen before, all references.
func BenchmarkEncodeDuplicate(b *testing.B) {
	data := benchData()
	e, _ := NewEncoder(DefaultParams(), 64<<20, testKey())
	dst, _ := e.Encode(nil, data, true)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dst, _ = e.Encode(dst[:0], data, true)
	}
}

// BenchmarkEncodeFrames: like the tunnel's writer in a bulk transfer, 128
// KiB frames with final false, the unconsumed tail passed again.
func BenchmarkEncodeFrames(b *testing.B) {
	data := benchData()
	var dst []byte
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		e, _ := NewEncoder(DefaultParams(), 64<<20, testKey())
		for pos := 0; pos < len(data); {
			end := min(len(data), pos+128<<10)
			var n int
			dst, n = e.Encode(dst[:0], data[pos:end], end == len(data))
			pos += n
		}
	}
}

// BenchmarkDecodeUnique: all literals (hashed, copied and cached).
func BenchmarkDecodeUnique(b *testing.B) {
	data := benchData()
	e, _ := NewEncoder(DefaultParams(), 64<<20, testKey())
	payload, _ := e.Encode(nil, data, true)
	dst := make([]byte, 0, len(data))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		d := NewDecoder(64<<20, testKey())
		var err error
		if dst, err = d.Decode(dst[:0], payload, len(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeDuplicate: all references (looked up and copied).
func BenchmarkDecodeDuplicate(b *testing.B) {
	data := benchData()
	e, _ := NewEncoder(DefaultParams(), 64<<20, testKey())
	d := NewDecoder(64<<20, testKey())
	payload, _ := e.Encode(nil, data, true)
	dst, err := d.Decode(nil, payload, len(data))
	if err != nil {
		b.Fatal(err)
	}
	payload, _ = e.Encode(nil, data, true)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if dst, err = d.Decode(dst[:0], payload, len(data)); err != nil {
			b.Fatal(err)
		}
	}
}
