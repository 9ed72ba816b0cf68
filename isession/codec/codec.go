package codec

import (
	"encoding/binary"
	"fmt"
)

// Codec identifies a block compression algorithm. Its value is the first byte
// of every block on the wire, so the values are fixed forever.
type Codec uint8

// The codecs. None is always allowed: it is what a block falls back to when
// compression does not pay.
const (
	None    Codec = 0 // raw bytes
	Deflate Codec = 1 // raw DEFLATE (RFC 1951), klauspost/compress/flate
	Zstd    Codec = 2 // one or more Zstandard frames, klauspost/compress/zstd
	S2      Codec = 3 // one S2 block, klauspost/compress/s2
)

// numCodecs is the number of defined codecs; a codec byte >= numCodecs is invalid.
const numCodecs = 4

// maxHeader is the longest block header: the codec byte and a 64-bit uvarint.
const maxHeader = 1 + binary.MaxVarintLen64

// String returns the codec's name as ParseCodec accepts it.
func (c Codec) String() string {
	switch c {
	case None:
		return "none"
	case Deflate:
		return "deflate"
	case Zstd:
		return "zstd"
	case S2:
		return "s2"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// valid reports whether c is a defined codec.
func (c Codec) valid() bool { return c < numCodecs }

// ParseCodec returns the codec named s: "none", "deflate", "zstd" or "s2".
func ParseCodec(s string) (Codec, error) {
	for c := Codec(0); c < numCodecs; c++ {
		if c.String() == s {
			return c, nil
		}
	}
	return None, fmt.Errorf("codec: unknown codec %q (want none, deflate, zstd or s2)", s)
}

// Error is the type of the errors this package reports; each is a constant,
// and the errors returned by Decompress wrap one of them (test with errors.Is).
type Error string

func (e Error) Error() string { return string(e) }

// The errors a Decompressor reports.
const (
	// ErrNotAllowed: the block's codec is unknown or was not negotiated.
	ErrNotAllowed Error = "codec: codec not allowed"
	// ErrTooLarge: the block declares more raw bytes than the caller's limit.
	ErrTooLarge Error = "codec: declared length exceeds limit"
	// ErrCorrupt: the header or body is malformed, or the body does not
	// decode to exactly the declared length.
	ErrCorrupt Error = "codec: corrupt block"
	// ErrClosed: the Decompressor was used after Close.
	ErrClosed Error = "codec: decompressor closed"
)

// appendHeader appends a block header: the codec byte and the raw length.
func appendHeader(dst []byte, c Codec, rawLen int) []byte {
	return binary.AppendUvarint(append(dst, byte(c)), uint64(rawLen))
}
