package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// maxZstdWindow bounds the window a zstd frame may declare. Frames from
// EncodeAll of blocks up to 8 MiB never declare more, and DecodeAll decodes
// into the output slice, so the window costs no extra memory.
const maxZstdWindow = 8 << 20

// A Decompressor decodes blocks made by a Compressor, in order. It must be
// used by one goroutine at a time. Its decoders are created on first use.
type Decompressor struct {
	allowed [numCodecs]bool
	closed  bool
	br      bytes.Reader
	one     [1]byte       // probes for output past the declared length
	fr      io.ReadCloser // flate reader, also a flate.Resetter
	zr      *zstd.Decoder
}

// NewDecompressor returns a Decompressor that accepts blocks of the allowed
// codecs (the negotiated ones) and None; a block of any other codec is an
// error, as is an unknown codec in allowed, which is ignored.
func NewDecompressor(allowed []Codec) *Decompressor {
	d := &Decompressor{}
	d.allowed[None] = true
	for _, c := range allowed {
		if c.valid() {
			d.allowed[c] = true
		}
	}
	return d
}

// Close releases the decoders; Decompress fails with ErrClosed afterwards.
func (d *Decompressor) Close() {
	d.closed = true
	if d.zr != nil {
		d.zr.Close()
		d.zr = nil
	}
	d.fr = nil
}

// Decompress appends the raw bytes of one block to dst and returns the
// extended slice. The raw length the block declares must be at most maxLen
// (the caller's bound, such as the tunnel's largest frame), which is checked
// before anything is allocated, and the body must decode to exactly that
// length. On error it returns dst unchanged and an error that
// wraps ErrNotAllowed, ErrTooLarge, ErrCorrupt or ErrClosed; malformed input
// never panics.
func (d *Decompressor) Decompress(dst, block []byte, maxLen int) ([]byte, error) {
	if d.closed {
		return dst, ErrClosed
	}
	if len(block) == 0 {
		return dst, fmt.Errorf("%w: empty block", ErrCorrupt)
	}
	c := Codec(block[0])
	if !c.valid() || !d.allowed[c] {
		return dst, fmt.Errorf("%w: %v", ErrNotAllowed, c)
	}
	raw, n := binary.Uvarint(block[1:])
	if n <= 0 {
		return dst, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	if raw > uint64(max(maxLen, 0)) {
		return dst, fmt.Errorf("%w: %d > %d", ErrTooLarge, raw, maxLen)
	}
	rawLen, body := int(raw), block[1+n:]
	if c == None {
		if len(body) != rawLen {
			return dst, fmt.Errorf("%w: none body of %d bytes, want %d", ErrCorrupt, len(body), rawLen)
		}
		return append(dst, body...), nil
	}
	start := len(dst)
	out := slices.Grow(dst, rawLen)
	var err error
	switch c {
	case Deflate:
		out, err = d.inflate(out, body, rawLen)
	case Zstd:
		out, err = d.unzstd(out, body, rawLen)
	case S2:
		// The S2 block starts with our uvarint length as its own header, so
		// s2 decodes exactly rawLen bytes in place or fails.
		if _, err = s2.Decode(out[start:start+rawLen], block[1:]); err != nil {
			err = fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
		out = out[:start+rawLen]
	}
	if err != nil {
		return dst, err
	}
	if len(out)-start != rawLen {
		return dst, fmt.Errorf("%w: %v body decodes to %d bytes, want %d", ErrCorrupt, c, len(out)-start, rawLen)
	}
	return out, nil
}

// inflate appends exactly rawLen bytes inflated from body, which must end
// with the end of the DEFLATE stream.
func (d *Decompressor) inflate(out, body []byte, rawLen int) ([]byte, error) {
	d.br.Reset(body)
	if d.fr == nil {
		d.fr = flate.NewReader(&d.br)
	} else if err := d.fr.(flate.Resetter).Reset(&d.br, nil); err != nil {
		return out, fmt.Errorf("%w: deflate: %v", ErrCorrupt, err)
	}
	start := len(out)
	out = out[:start+rawLen]
	if _, err := io.ReadFull(d.fr, out[start:]); err != nil {
		return out[:start], fmt.Errorf("%w: deflate: %v", ErrCorrupt, err)
	}
	if n, err := d.fr.Read(d.one[:]); n != 0 || err != io.EOF {
		return out[:start], fmt.Errorf("%w: deflate: longer than declared or unterminated", ErrCorrupt)
	}
	if d.br.Len() != 0 {
		return out[:start], fmt.Errorf("%w: deflate: %d bytes after the stream", ErrCorrupt, d.br.Len())
	}
	return out, nil
}

// unzstd appends the decoding of body, refusing to produce more than rawLen
// bytes.
func (d *Decompressor) unzstd(out, body []byte, rawLen int) ([]byte, error) {
	if d.zr == nil {
		zr, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			return out, fmt.Errorf("codec: zstd: %w", err)
		}
		d.zr = zr
	}
	if len(body) == 0 {
		return out, fmt.Errorf("%w: zstd: no frame", ErrCorrupt)
	}
	start := len(out)
	res, err := d.zr.DecodeAll(body, out[:start:start+rawLen])
	if err != nil {
		return out, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
	}
	return res, nil
}
