package dedup

import "encoding/binary"

// The op bytes of the wire format (see the package documentation).
const (
	opLiteral = 0x00
	opRef     = 0x01
)

// refLen is the size of a reference op: the op byte and the key.
const refLen = 1 + len(key{})

// Encoder de-duplicates one direction of one tunnel connection. Its
// methods are called from one goroutine at a time (the tunnel's writer),
// except Stats, which any goroutine may call at any time.
type Encoder struct {
	p     Params
	cache *cache // keys and lengths only
	hash  *hasher
	epoch uint8
	c     counters
}

// NewEncoder returns an Encoder that chunks with p, keys chunks with k and
// caches up to budget bytes (chunk lengths plus 64 bytes per entry), in
// epoch 0. The peer's Decoder must have the same budget and key. A budget
// of 0 caches nothing.
func NewEncoder(p Params, budget int64, k Key) (*Encoder, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Encoder{p: p, cache: newCache(budget), hash: newHasher(k)}, nil
}

// Encode appends to dst the encoding of a prefix of data and returns the
// extended dst and the number of bytes of data it consumed.
//
// With final false it consumes data only up to its last chunk boundary
// that more bytes could not move (see Params.Cut), possibly nothing: the
// caller keeps the rest and passes it again, followed by more bytes of the
// same stream, next time. The chunks are then the same however the
// stream is split into calls. With final true it consumes all of data,
// its tail becoming a short chunk.
//
// Each chunk is one op: a reference if its key is in the cache (which
// moves it to the front), else a literal, inserted into the cache if it is
// at least MinCache bytes long. When it consumes nothing (always for empty
// data) Encode appends nothing. Otherwise the encoding of n bytes is at
// most n + n/64 + 5 bytes: the epoch byte, at most 1/64 of each chunk
// longer than Min for its op header (Min >= MinCache), and at most 4 bytes
// of header for one shorter tail.
func (e *Encoder) Encode(dst, data []byte, final bool) (out []byte, consumed int) {
	if len(data) == 0 {
		return dst, 0
	}
	start := len(dst)
	dst = append(dst, e.epoch)
	off, refs, literals := 0, 0, 0
	for off < len(data) {
		rest := data[off:]
		n := e.p.Cut(rest)
		if n == len(rest) && n < e.p.Max && !final {
			break // the chunk may go on in bytes not passed yet
		}
		chunk := rest[:n]
		off += n
		if e.cache.cacheable(n) {
			k := e.hash.keyOf(chunk)
			if e.cache.get(k) != nil {
				dst = append(append(dst, opRef), k[:]...)
				refs++
				continue
			}
			e.cache.add(k, n, nil)
		}
		dst = binary.AppendUvarint(append(dst, opLiteral), uint64(n))
		dst = append(dst, chunk...)
		literals++
	}
	if off == 0 {
		return dst[:start], 0
	}
	e.c.add(off, len(dst)-start, refs, literals)
	e.c.cache(e.cache)
	return dst, off
}

// Reset clears the cache and encodes in epoch from now on. The tunnel
// calls it when the peer reports that its Decoder reset to epoch
// (Decoder.Resync).
func (e *Encoder) Reset(epoch uint8) {
	e.cache.clear()
	e.epoch = epoch
	e.c.resets.Add(1)
	e.c.cache(e.cache)
}

// Epoch returns the epoch the Encoder encodes in. Like Encode, it must not
// be called concurrently with Reset.
func (e *Encoder) Epoch() uint8 { return e.epoch }

// Stats returns the Encoder's counters. It may be called from any
// goroutine at any time.
func (e *Encoder) Stats() Stats { return e.c.snapshot() }
