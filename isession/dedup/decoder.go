package dedup

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Error is the type of the errors Decode's errors wrap; test them with
// errors.Is.
type Error string

func (e Error) Error() string { return string(e) }

const (
	// ErrCorrupt: the payload is malformed (empty, an unknown op, a
	// truncated op, a bad length).
	ErrCorrupt Error = "dedup: corrupt payload"
	// ErrDiverged: a reference to a chunk this end does not hold, in a
	// payload of the current epoch: the two caches differ.
	ErrDiverged Error = "dedup: caches diverged"
	// ErrStale: a reference in a payload of another epoch, encoded
	// against a cache this end has since cleared.
	ErrStale Error = "dedup: reference from before a cache reset"
	// ErrTooLarge: the payload decodes to more than the caller's limit.
	ErrTooLarge Error = "dedup: decoded payload exceeds the limit"
)

// Decoder reverses an Encoder. Its methods are called from one goroutine
// at a time (the tunnel's reader), except Stats, which any goroutine may
// call at any time.
type Decoder struct {
	cache     *cache // with the chunks' data
	hash      *hasher
	epoch     uint8
	lastReset bool // the last Decode or Reset reset the Decoder
	c         counters
}

// NewDecoder returns a Decoder, in epoch 0, whose cache holds up to budget
// bytes (chunk lengths plus 64 bytes per entry) and whose chunks are keyed
// with k: the budget and key of the peer's Encoder, which the tunnel
// negotiates.
func NewDecoder(budget int64, k Key) *Decoder {
	return &Decoder{cache: newCache(budget), hash: newHasher(k)}
}

// Decode appends the decoded payload to dst and returns the extended dst.
// It never appends more than maxOut bytes (a negative maxOut is 0), and
// if it must grow dst it allocates once, for at most maxOut more bytes:
// a payload of references to long chunks cannot make it allocate more
// than the caller accepts.
//
// On error it returns dst unextended (bytes beyond its length may have
// been written: they are not data) and the caller must deliver nothing of
// the payload. The error wraps one of the Error constants. The payload's
// structure is checked before anything else, so a malformed payload is
// always ErrCorrupt; then a payload of another epoch that holds a
// reference is ErrStale; otherwise the first op that fails decides
// between ErrDiverged and ErrTooLarge.
//
// A payload of another epoch never changes the Decoder. A payload of the
// current epoch that fails (or one too short to carry an epoch) resets it:
// the cache is cleared and the epoch advances, and Resync then reports
// the new epoch for the tunnel to send to the peer's Encoder. The peer's
// Encoder cached the literals of the failed payload, so after any failure
// the caches can no longer be assumed identical; clearing them on both
// ends is the only way back to lock-step.
func (d *Decoder) Decode(dst, payload []byte, maxOut int) ([]byte, error) {
	d.lastReset = false
	start := len(dst)
	out, refs, literals, err := d.decode(dst, payload, max(maxOut, 0))
	if err != nil {
		if len(payload) == 0 || payload[0] == d.epoch {
			d.reset()
		}
		return dst[:start], fmt.Errorf("%w (payload of %d bytes in epoch %d)", err, len(payload), d.epochOf(payload))
	}
	d.c.add(len(payload), len(out)-start, refs, literals)
	d.c.cache(d.cache)
	return out, nil
}

// epochOf returns a payload's epoch byte, for error messages.
func (d *Decoder) epochOf(payload []byte) int {
	if len(payload) == 0 {
		return -1
	}
	return int(payload[0])
}

// decode decodes p into dst, appending at most room bytes, and returns the
// extended dst and how many references and literals it decoded.
func (d *Decoder) decode(dst, p []byte, room int) ([]byte, int, int, error) {
	if len(p) == 0 {
		return dst, 0, 0, fmt.Errorf("%w: no epoch byte", ErrCorrupt)
	}
	stale := p[0] != d.epoch
	ops := p[1:]

	// First pass: check the structure and bound the output (at most
	// room). A reference to a chunk not in the cache can only be to a
	// literal earlier in the payload (or it will fail): the longest
	// literal so far bounds its length.
	var literalBytes, bound, longest int
	hasRef := false
	for q := ops; len(q) > 0; {
		switch q[0] {
		case opLiteral:
			n, w := binary.Uvarint(q[1:])
			if w <= 0 || n > uint64(len(q)-1-w) {
				return dst, 0, 0, fmt.Errorf("%w: bad literal at offset %d", ErrCorrupt, len(p)-len(q))
			}
			q = q[1+w+int(n):]
			literalBytes += int(n) // at most len(p): no overflow
			bound = addAtMost(bound, int(n), room)
			longest = max(longest, int(n))
		case opRef:
			if len(q) < refLen {
				return dst, 0, 0, fmt.Errorf("%w: truncated reference at offset %d", ErrCorrupt, len(p)-len(q))
			}
			if e := d.cache.m[key(q[1:refLen])]; e != nil {
				bound = addAtMost(bound, e.size, room)
			} else {
				bound = addAtMost(bound, longest, room)
			}
			q = q[refLen:]
			hasRef = true
		default:
			return dst, 0, 0, fmt.Errorf("%w: unknown op %#x at offset %d", ErrCorrupt, q[0], len(p)-len(q))
		}
	}
	if stale && hasRef {
		return dst, 0, 0, fmt.Errorf("%w: epoch %d, expected %d", ErrStale, p[0], d.epoch)
	}
	if literalBytes > room {
		return dst, 0, 0, fmt.Errorf("%w: %d bytes of literals, limit %d", ErrTooLarge, literalBytes, room)
	}
	if cap(dst)-len(dst) < bound {
		grown := make([]byte, len(dst), len(dst)+bound)
		copy(grown, dst)
		dst = grown
	}

	// Second pass: decode, in order, mirroring the Encoder's cache
	// operations. A payload of another epoch (literals only, by now) is
	// delivered but leaves the cache alone: its Encoder cached into the
	// cache that was cleared since.
	refs, literals := 0, 0
	for q := ops; len(q) > 0; {
		var chunk []byte
		if q[0] == opLiteral {
			n, w := binary.Uvarint(q[1:])
			chunk = q[1+w : 1+w+int(n)]
			q = q[1+w+int(n):]
			if !stale && d.cache.cacheable(len(chunk)) {
				d.cache.add(d.hash.keyOf(chunk), len(chunk), bytes.Clone(chunk))
			}
			literals++
		} else {
			k := key(q[1:refLen])
			q = q[refLen:]
			e := d.cache.get(k)
			if e == nil {
				return dst, 0, 0, fmt.Errorf("%w: no chunk %x", ErrDiverged, k)
			}
			chunk = e.data
			refs++
		}
		if len(chunk) > room {
			return dst, 0, 0, fmt.Errorf("%w: limit %d", ErrTooLarge, room)
		}
		room -= len(chunk)
		dst = append(dst, chunk...)
	}
	return dst, refs, literals, nil
}

// addAtMost returns min(a+b, limit) for 0 <= a <= limit and b >= 0,
// without overflow.
func addAtMost(a, b, limit int) int {
	if b > limit-a {
		return limit
	}
	return a + b
}

// Reset clears the cache and moves to the next epoch, as a failed Decode
// does. The tunnel calls it when it lost a payload before it got here (one
// that failed to decompress), since the peer's Encoder learnt from it.
func (d *Decoder) Reset() { d.reset() }

func (d *Decoder) reset() {
	d.cache.clear()
	d.epoch++
	d.lastReset = true
	d.c.resets.Add(1)
	d.c.cache(d.cache)
}

// Resync reports the Decoder's epoch and whether the last Decode (or a
// Reset since) reset the Decoder: if so the tunnel sends the epoch to the
// peer, whose Encoder calls Reset with it.
func (d *Decoder) Resync() (epoch uint8, reset bool) { return d.epoch, d.lastReset }

// Epoch returns the epoch the Decoder expects payloads in.
func (d *Decoder) Epoch() uint8 { return d.epoch }

// Stats returns the Decoder's counters. It may be called from any
// goroutine at any time.
func (d *Decoder) Stats() Stats { return d.c.snapshot() }
