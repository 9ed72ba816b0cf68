package codec

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
)

var allCodecs = []Codec{None, Deflate, Zstd, S2}

// modes are the compressor configurations every round trip runs through.
func modes() map[string]Options {
	return map[string]Options{
		"none":           {Codecs: []Codec{None}},
		"deflate":        {Codecs: []Codec{Deflate}},
		"deflate9":       {Codecs: []Codec{Deflate}, DeflateLevel: 9},
		"zstd":           {Codecs: []Codec{Zstd}},
		"zstd4":          {Codecs: []Codec{Zstd}, ZstdLevel: 4},
		"s2":             {Codecs: []Codec{S2}},
		"adaptive":       {Codecs: []Codec{Deflate, Zstd, S2}, Adaptive: true},
		"adaptive-empty": {Adaptive: true},
	}
}

var generators = map[string]func(int, uint64) []byte{
	"text":   textLike,
	"random": randomData,
	"zeros":  func(n int, _ uint64) []byte { return make([]byte, n) },
	"mixed":  mixed,
}

var sizes = []int{0, 1, 100, 64 << 10, 256 << 10}

func newCompressor(t testing.TB, o Options) *Compressor {
	t.Helper()
	c, err := NewCompressor(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// roundTrip compresses src after a prefix, checks the block and decompresses
// it after another prefix.
func roundTrip(t testing.TB, c *Compressor, d *Decompressor, src []byte) []byte {
	t.Helper()
	prefix := []byte("hdr")
	out := c.Compress(append([]byte(nil), prefix...), src)
	if !bytes.HasPrefix(out, prefix) {
		t.Fatal("Compress clobbered dst")
	}
	block := out[len(prefix):]
	if len(block) > len(src)+maxHeader {
		t.Fatalf("block of %d bytes for %d raw", len(block), len(src))
	}
	got, err := d.Decompress([]byte("x"), block, len(src))
	if err != nil {
		t.Fatalf("%v block of %d raw: %v", Codec(block[0]), len(src), err)
	}
	if got[0] != 'x' || !bytes.Equal(got[1:], src) {
		t.Fatalf("%v block of %d raw: round trip mismatch", Codec(block[0]), len(src))
	}
	return block
}

func TestRoundTrip(t *testing.T) {
	for name, o := range modes() {
		t.Run(name, func(t *testing.T) {
			c := newCompressor(t, o)
			c.SetLinkRate(10e6)
			d := NewDecompressor(o.Codecs)
			defer d.Close()
			for gname, gen := range generators {
				for _, n := range sizes {
					src := gen(n, uint64(n))
					block := roundTrip(t, c, d, src)
					// A fixed codec must really be used on compressible data.
					if !o.Adaptive && len(o.Codecs) > 0 && gname != "random" && n >= 64<<10 && Codec(block[0]) != o.Codecs[0] {
						t.Errorf("%s %d bytes sent as %v, want %v", gname, n, Codec(block[0]), o.Codecs[0])
					}
				}
			}
			checkStats(t, c.Stats())
		})
	}
}

// TestRoundTripSequence runs many blocks of changing content through one
// compressor and decompressor, as a tunnel does, to catch state leaking
// between blocks.
func TestRoundTripSequence(t *testing.T) {
	c := newCompressor(t, Options{Codecs: []Codec{S2, Zstd, Deflate}, Adaptive: true})
	d := NewDecompressor(allCodecs)
	defer d.Close()
	gens := []func(int, uint64) []byte{textLike, randomData, mixed, base64Random, deflated}
	var blocks [][]byte
	var srcs [][]byte
	for i := range 200 {
		c.SetLinkRate([]float64{0, 1e5, 1e7, 1e9, 1e11}[i/10%5])
		src := gens[i%len(gens)](1+i*1289%(256<<10), uint64(i))
		srcs = append(srcs, src)
		blocks = append(blocks, c.Compress(nil, src))
	}
	var out []byte
	for i, b := range blocks {
		var err error
		if out, err = d.Decompress(out[:0], b, 256<<10); err != nil {
			t.Fatalf("block %d (%v): %v", i, Codec(b[0]), err)
		}
		if !bytes.Equal(out, srcs[i]) {
			t.Fatalf("block %d (%v): mismatch", i, Codec(b[0]))
		}
	}
	checkStats(t, c.Stats())
	for _, k := range allCodecs {
		if c.Stats().Codec(k).Blocks == 0 {
			t.Errorf("no block sent with %v", k)
		}
	}
}

func checkStats(t *testing.T, s *Stats) {
	t.Helper()
	for _, k := range allCodecs {
		cs := s.Codec(k)
		if k != None && cs.BytesOut >= cs.BytesIn+cs.Blocks*maxHeader && cs.Blocks > 0 {
			t.Errorf("%v: %d bytes out for %d in", k, cs.BytesOut, cs.BytesIn)
		}
	}
	if r := s.Ratio(); r <= 0 || r > 2 {
		t.Errorf("ratio %v", r)
	}
}

func TestParseCodec(t *testing.T) {
	for _, k := range allCodecs {
		if got, err := ParseCodec(k.String()); err != nil || got != k {
			t.Errorf("ParseCodec(%q) = %v, %v", k.String(), got, err)
		}
	}
	if _, err := ParseCodec("lz4"); err == nil {
		t.Error("ParseCodec(lz4) succeeded")
	}
	if s := Codec(9).String(); s != "codec(9)" {
		t.Errorf("Codec(9).String() = %q", s)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{
		{Codecs: []Codec{7}},
		{Codecs: []Codec{Deflate}, DeflateLevel: 10},
		{Codecs: []Codec{Deflate}, DeflateLevel: -1},
		{Codecs: []Codec{Zstd}, ZstdLevel: 5},
	} {
		if c, err := NewCompressor(o); err == nil {
			c.Close()
			t.Errorf("NewCompressor(%+v) succeeded", o)
		}
	}
}

// warm feeds blocks of src to c so that adaptive mode measures every codec.
func warm(c *Compressor, src []byte, blocks int) {
	var dst []byte
	for range blocks {
		dst = c.Compress(dst[:0], src)
	}
}

func TestAdaptiveDecisions(t *testing.T) {
	all := Options{Codecs: []Codec{Deflate, Zstd, S2}, Adaptive: true}
	text := textLike(64<<10, 1)
	for _, tc := range []struct {
		name string
		link float64
		src  []byte
		want []Codec
	}{
		// Slow enough that the better ratio wins even with the race
		// detector and a loaded machine slowing the compressors 100-fold.
		{"slow link", 1e4, text, []Codec{Zstd, Deflate}},
		{"fast link", 10e9, text, []Codec{None, S2}},
		{"unknown link", 0, text, []Codec{S2}},
		{"fast link zeros", 10e9, make([]byte, 64<<10), []Codec{None, S2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCompressor(t, all)
			c.SetLinkRate(tc.link)
			warm(c, tc.src, 100)
			for _, k := range all.Codecs {
				if c.est[k].last == 0 {
					t.Errorf("%v was never measured", k)
				}
			}
			best, _ := c.best()
			if !contains(tc.want, best) {
				t.Fatalf("chose %v, want one of %v (estimates %+v)", best, tc.want, c.est)
			}
			// Exploration aside, the choice carries most of the blocks.
			if n := c.Stats().Codec(best).Blocks; n < 75 {
				t.Errorf("only %d of 100 blocks sent with %v", n, best)
			}
			if c.Stats().Skipped() != 0 {
				t.Errorf("%d compressible blocks skipped", c.Stats().Skipped())
			}
		})
	}
	t.Run("only deflate allowed, slow link", func(t *testing.T) {
		c := newCompressor(t, Options{Codecs: []Codec{Deflate}, Adaptive: true})
		c.SetLinkRate(1e4)
		warm(c, text, 20)
		if n := c.Stats().Codec(Deflate).Blocks; n != 20 {
			t.Errorf("%d of 20 blocks with deflate", n)
		}
	})
}

func TestAdaptiveSkipsIncompressible(t *testing.T) {
	for _, gen := range []func(int, uint64) []byte{randomData, deflated} {
		c := newCompressor(t, Options{Codecs: []Codec{Deflate, Zstd, S2}, Adaptive: true})
		c.SetLinkRate(1e6)
		d := NewDecompressor(allCodecs)
		for i := range 20 {
			if b := roundTrip(t, c, d, gen(64<<10, uint64(i))); Codec(b[0]) != None {
				t.Fatalf("incompressible block %d sent as %v", i, Codec(b[0]))
			}
		}
		s := c.Stats()
		if s.Skipped() < 19 || s.Codec(None).Blocks != 20 {
			t.Errorf("skipped %d, none %d of 20", s.Skipped(), s.Codec(None).Blocks)
		}
		d.Close()
	}
	// Fixed mode still compresses (and falls back).
	c := newCompressor(t, Options{Codecs: []Codec{Zstd}})
	warm(c, randomData(64<<10, 1), 3)
	if s := c.Stats(); s.Skipped() != 0 || s.Fallbacks() != 3 {
		t.Errorf("fixed zstd on random: skipped %d, fallbacks %d", s.Skipped(), s.Fallbacks())
	}
}

func contains(s []Codec, k Codec) bool {
	for _, x := range s {
		if x == k {
			return true
		}
	}
	return false
}

// validBlocks returns one compressed block of each codec (and its source).
func validBlocks(t testing.TB) (map[Codec][]byte, []byte) {
	src := textLike(4000, 7)
	blocks := map[Codec][]byte{}
	for _, k := range allCodecs {
		c := newCompressor(t, Options{Codecs: []Codec{k}})
		b := c.Compress(nil, src)
		if Codec(b[0]) != k {
			t.Fatalf("%v block sent as %v", k, Codec(b[0]))
		}
		blocks[k] = b
	}
	return blocks, src
}

func TestDecompressRefuses(t *testing.T) {
	blocks, src := validBlocks(t)
	all := NewDecompressor(allCodecs)
	defer all.Close()
	expect := func(name string, d *Decompressor, block []byte, maxLen int, want error) {
		t.Helper()
		dst := []byte("keep")
		out, err := d.Decompress(dst, block, maxLen)
		if !errors.Is(err, want) {
			t.Errorf("%s: err %v, want %v", name, err, want)
		}
		if string(out) != "keep" {
			t.Errorf("%s: dst changed to %d bytes", name, len(out))
		}
	}
	noneOnly := NewDecompressor(nil)
	for k, b := range blocks {
		if _, err := all.Decompress(nil, b, len(src)); err != nil {
			t.Fatalf("valid %v block: %v", k, err)
		}
		if k != None {
			expect(fmt.Sprint(k, " not negotiated"), noneOnly, b, len(src), ErrNotAllowed)
			expect(fmt.Sprint(k, " allowing another"), NewDecompressor([]Codec{(k % 3) + 1}), b, len(src), ErrNotAllowed)
		}
		expect(fmt.Sprint(k, " over maxLen"), all, b, len(src)-1, ErrTooLarge)
		expect(fmt.Sprint(k, " negative maxLen"), all, b, -1, ErrTooLarge)
		for _, delta := range []int{-1, 1, 100} {
			// (For S2 the length is also S2's own header.)
			bad := append(appendHeader(nil, k, len(src)+delta), b[len(appendHeader(nil, k, len(src))):]...)
			expect(fmt.Sprint(k, " length ", delta), all, bad, 1<<20, ErrCorrupt)
		}
		for n := 0; n < len(b); n += 1 + n/50 {
			expect(fmt.Sprint(k, " truncated to ", n), all, b[:n], 1<<20, ErrCorrupt)
		}
		expect(fmt.Sprint(k, " trailing byte"), all, append(b[:len(b):len(b)], 0), 1<<20, ErrCorrupt)
		garbage := append(appendHeader(nil, k, 1000), randomData(300, uint64(k))...)
		expect(fmt.Sprint(k, " garbage"), all, garbage, 1<<20, ErrCorrupt)
	}
	expect("unknown codec", all, []byte{9, 0}, 10, ErrNotAllowed)
	expect("bad uvarint", all, []byte{0, 0x80}, 10, ErrCorrupt)
	expect("huge length", all, append([]byte{byte(Zstd)}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f), 1<<20, ErrTooLarge)
	expect("empty zstd", all, appendHeader(nil, Zstd, 0), 1<<20, ErrCorrupt)
	all.Close()
	expect("closed", all, blocks[None], 1<<20, ErrClosed)
}

func TestAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are meaningless in short mode and under the race detector")
	}
	src := textLike(64<<10, 3)
	d := NewDecompressor(allCodecs)
	defer d.Close()
	for _, k := range []Codec{Deflate, Zstd, S2} {
		c := newCompressor(t, Options{Codecs: []Codec{k}})
		dst := c.Compress(nil, src)
		raw, _ := d.Decompress(nil, dst, len(src))
		ca := testing.AllocsPerRun(20, func() { dst = c.Compress(dst[:0], src) })
		da := testing.AllocsPerRun(20, func() { raw, _ = d.Decompress(raw[:0], dst, len(src)) })
		t.Logf("%v: %.1f allocs per Compress, %.1f per Decompress", k, ca, da)
		if ca > 1 || da > 1 {
			t.Errorf("%v: %.1f allocs per Compress, %.1f per Decompress", k, ca, da)
		}
	}
}

// TestConcurrentStats reads Stats and sets the link rate from other
// goroutines while one goroutine compresses (meaningful under -race).
func TestConcurrentStats(t *testing.T) {
	c := newCompressor(t, Options{Codecs: []Codec{S2, Zstd}, Adaptive: true})
	src := textLike(16<<10, 5)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.SetLinkRate(float64(i%3) * 1e8)
			_ = c.Stats().Codec(S2).Blocks + c.Stats().Skipped()
		}
	}()
	warm(c, src, 200)
	close(stop)
	wg.Wait()
	var n uint64
	for _, k := range allCodecs {
		n += c.Stats().Codec(k).Blocks
	}
	if n != 200 {
		t.Errorf("counted %d blocks, want 200", n)
	}
}
