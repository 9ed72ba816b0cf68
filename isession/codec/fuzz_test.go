package codec

import (
	"bytes"
	"testing"
)

const fuzzMaxLen = 1 << 20

// FuzzDecompress feeds arbitrary blocks to a Decompressor that allows every
// codec: it must never panic, and what it accepts is bounded by maxLen.
func FuzzDecompress(f *testing.F) {
	blocks, _ := validBlocks(f)
	for _, b := range blocks {
		f.Add(b)
	}
	d := NewDecompressor(allCodecs) // reused, as on a tunnel
	f.Cleanup(d.Close)
	prefix := []byte("prefix")
	f.Fuzz(func(t *testing.T, block []byte) {
		out, err := d.Decompress(prefix[:len(prefix):len(prefix)], block, fuzzMaxLen)
		if err != nil {
			if string(out) != "prefix" {
				t.Fatalf("error %v changed dst", err)
			}
			return
		}
		if !bytes.HasPrefix(out, prefix) || len(out)-len(prefix) > fuzzMaxLen {
			t.Fatalf("accepted %d bytes", len(out)-len(prefix))
		}
		// What decodes must decode the same on a fresh Decompressor.
		d2 := NewDecompressor(allCodecs)
		defer d2.Close()
		again, err := d2.Decompress(nil, block, fuzzMaxLen)
		if err != nil || !bytes.Equal(again, out[len(prefix):]) {
			t.Fatalf("fresh decompressor: %v", err)
		}
	})
}

// FuzzRoundTrip sends arbitrary data through every codec and adaptive mode.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("hello hello hello hello hello hello hello hello hello hello hello"))
	f.Add(textLike(5000, 1))
	var cs []*Compressor
	for _, o := range []Options{
		{Codecs: []Codec{Deflate}}, {Codecs: []Codec{Deflate}, DeflateLevel: 9},
		{Codecs: []Codec{Zstd}}, {Codecs: []Codec{Zstd}, ZstdLevel: 3},
		{Codecs: []Codec{S2}}, {Codecs: []Codec{S2, Zstd, Deflate}, Adaptive: true},
	} {
		cs = append(cs, newCompressor(f, o))
	}
	slow := newCompressor(f, Options{Codecs: []Codec{S2, Zstd, Deflate}, Adaptive: true})
	slow.SetLinkRate(1e6) // adaptive with zstd or deflate
	cs = append(cs, slow)
	d := NewDecompressor(allCodecs)
	f.Cleanup(d.Close)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range cs {
			roundTrip(t, c, d, data)
		}
	})
}
