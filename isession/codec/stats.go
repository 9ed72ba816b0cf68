package codec

import "sync/atomic"

// Stats counts what a Compressor sent. The Compressor's goroutine updates it
// with atomic operations; any goroutine may read it at any time.
type Stats struct {
	codec     [numCodecs]codecCounters
	skipped   atomic.Uint64
	fallbacks atomic.Uint64
}

type codecCounters struct {
	blocks, in, out atomic.Uint64
}

// CodecStats is a snapshot of the counters of one codec.
type CodecStats struct {
	Blocks   uint64 // blocks sent with this codec
	BytesIn  uint64 // raw bytes in those blocks
	BytesOut uint64 // bytes on the wire for those blocks, headers included
}

// Codec returns the counters of blocks sent with codec c. Blocks that fell
// back to None, were skipped as incompressible or were too short to try are
// counted under None.
func (s *Stats) Codec(c Codec) CodecStats {
	if !c.valid() {
		return CodecStats{}
	}
	k := &s.codec[c]
	return CodecStats{Blocks: k.blocks.Load(), BytesIn: k.in.Load(), BytesOut: k.out.Load()}
}

// Skipped returns how many blocks adaptive mode sent as None without trying
// to compress them, because a sample of them looked incompressible.
func (s *Stats) Skipped() uint64 { return s.skipped.Load() }

// Fallbacks returns how many blocks were compressed but sent as None because
// the compressed body was not smaller than the input.
func (s *Stats) Fallbacks() uint64 { return s.fallbacks.Load() }

// Ratio returns the overall wire bytes / raw bytes over all codecs (1 when
// nothing was sent yet).
func (s *Stats) Ratio() float64 {
	var in, out uint64
	for c := range s.codec {
		in += s.codec[c].in.Load()
		out += s.codec[c].out.Load()
	}
	if in == 0 {
		return 1
	}
	return float64(out) / float64(in)
}

func (s *Stats) add(c Codec, in, out int) {
	k := &s.codec[c]
	k.blocks.Add(1)
	k.in.Add(uint64(in))
	k.out.Add(uint64(out))
}
