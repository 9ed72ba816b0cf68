// Package dedup is iSession's symmetric de-duplication (what F5 BIG-IP
// calls Symmetric Data Deduplication): content that already crossed a
// tunnel connection crosses it again as a 17-byte reference to a chunk
// both ends hold.
//
// # Roles
//
// One tunnel connection carries many multiplexed streams. Each direction
// of it has one Encoder, on the sending end, and one Decoder, on the
// receiving end. The tunnel's writer goroutine calls Encoder.Encode on
// each DATA payload in the order the frames go on the wire, frames of
// different streams interleaved; the reader goroutine calls Decoder.Decode
// on every encoded payload in the same order (those of streams reset in
// the meantime included). Both ends therefore perform the same sequence of
// cache operations and their caches stay identical, in lock-step, without
// a single message about them. The encoded payloads are then compressed
// by another package; this one only produces and consumes the op stream.
//
// # Chunking
//
// Data is cut into chunks by content (FastCDC, Xia et al., USENIX ATC
// 2016): a Gear rolling hash, h = h<<1 + gear[byte], with gear a fixed
// table of 256 pseudo-random values; a chunk ends after a byte that leaves
// the top bits of h zero. Normalized chunking (level 2) uses two more bits
// than log2(Avg) below the average size and two fewer above it, which
// narrows the distribution of sizes; no cut point is looked for below Min
// (those bytes are not even hashed) and a chunk is cut at Max regardless.
// Identical content therefore cuts identically wherever it sits, in any
// stream at any offset, and an insertion or deletion disturbs only the
// chunks around it. See Params.Cut for the exact rule.
//
// A stream's bytes arrive in pieces of arbitrary size. Encode is told
// whether more bytes of the same stream are queued behind the ones it is
// given (final false, bulk transfers): it then consumes only whole chunks,
// up to the last boundary that more bytes could not move, and the caller
// passes the rest again followed by the next bytes, so the chunks do not
// depend on how the stream was split. With final true (nothing more
// queued: interactive traffic, which must not wait) the tail goes at once
// as a short chunk. That costs de-duplication: the chunks that follow
// start where the tail ended, not at a content-defined boundary, until a
// cut point brings them back in step a chunk or two later, so a stream
// sent in short frames that are all final hardly de-duplicates at all.
// The Encoder keeps no state per stream; the caller keeps each stream's
// unconsumed tail.
//
// # Cache
//
// A chunk's key is its GMAC under a secret Key the Encoder's end draws for
// each tunnel connection (see Key for why that is safe and fast). Each
// end holds an
// LRU cache bounded by bytes: each entry costs its chunk's length plus 64
// bytes, so that many short chunks cannot exceed the memory the budget
// stands for. The Encoder's cache holds keys and lengths only, the
// Decoder's the chunks too. The lock-step rule, applied identically on
// both ends in wire order, op by op:
//
//   - a literal of at least MinCache (256) bytes is inserted at the front
//     (shorter ones, and chunks costing more than the whole budget, are
//     never cached; the Decoder applies the rule by the literal's length);
//   - a reference moves its chunk to the front;
//   - after an insertion, entries are evicted from the back while the
//     cache costs more than its budget.
//
// The Encoder sends a reference exactly when the chunk's key is in its
// cache, so a Decoder in step always finds it. The Decoder hashes every
// literal it caches itself, so a reference can only ever deliver the
// bytes whose hash is the key: short of a collision of the keyed hash
// (probability at most 2^-111 per pair of chunks that did not know the
// key), a reference never delivers wrong data, whatever the peer sends.
//
// # Wire format
//
// One encoded payload (this format must never change; a new one needs a
// new Params.Scheme):
//
//	payload = epoch:u8 op*
//	op      = 0x00 uvarint(len) bytes[len]   literal: len bytes of data
//	        | 0x01 key[16]                   reference: the cached chunk
//
// uvarint is encoding/binary's. Each chunk is exactly one op, in stream
// order. A payload of just the epoch byte decodes to nothing; the Encoder
// never produces one.
//
// # Divergence and resynchronisation
//
// The caches can differ only through a bug, an end that lost its state,
// or a misbehaving peer; it is detected, never delivered. Each end has an
// epoch, 0 at first, and the Encoder writes its own in each payload. When
// a payload of the Decoder's current epoch fails in any way (a reference
// it does not hold: ErrDiverged; malformed: ErrCorrupt; decoding to more
// than the caller accepts: ErrTooLarge), nothing of it is delivered and
// the Decoder resets: it clears its cache and moves to the next epoch. The
// peer's Encoder had cached the literals of that payload, so after any
// failure the two caches can no longer be assumed identical, and clearing
// both is the only way back. The tunnel sends the new epoch
// (Decoder.Resync) to the peer, whose Encoder clears its cache and
// encodes in that epoch from then on (Encoder.Reset).
//
// Payloads encoded before the peer heard of the reset carry another
// epoch: they were encoded against a cache that both ends have cleared
// since. Their literals are still delivered, since literal data is
// self-contained, but not cached (the Encoder's insertions went into the
// cache it cleared); a reference in them fails with ErrStale, and since
// such a payload changed nothing on either end that counts, it does not
// reset the Decoder again. Epochs wrap at 256: a payload 256 resets late
// would be taken for a current one, which still cannot deliver wrong
// bytes (keys are hashes of content); at worst it diverges, detectably.
//
// A Decode error means the caller resets the stream that payload belonged
// to; the tunnel itself goes on.
//
// # Security and sizes
//
// The caches are per tunnel connection, between two devices that trust
// each other (mutual TLS). They are never shared across connections or
// tenants: a shared cache would let one party learn, from what crosses as
// a reference, whether another sent some content. Against a peer that
// misbehaves anyway, Decode never panics, never delivers a chunk the
// Decoder did not hash itself, and never produces or allocates more than
// the limit its caller passes (a 17-byte reference can stand for up to
// Max bytes).
//
// With the default parameters (DefaultParams: 2 KiB minimum, 8 KiB
// average, 64 KiB maximum chunks; on random data the chunks average about
// 9.5 KiB) a 64 MiB budget holds some 7,000 chunks. The Encoder's cache
// takes about 100 bytes of memory per entry, the Decoder's that plus the
// chunk (rounded up by the allocator). The encoding of n bytes is at most
// n + n/64 + 5 bytes. On one core of an x86-64 with AES-NI and PCLMULQDQ,
// chunking runs at about 3.4 GB/s and the keyed hash at about 7 GB/s;
// decoding references runs at memory speed.
package dedup
