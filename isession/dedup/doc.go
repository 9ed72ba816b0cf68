// Package dedup is iSession's symmetric de-duplication (F5: Symmetric Data
// Deduplication): repeated content crossing a tunnel connection is sent as
// a 17-byte reference to a chunk both ends already hold.
//
// One Encoder (sending end) and one Decoder (receiving end) serve one
// direction of one tunnel connection. The tunnel's writer calls Encode on
// each DATA payload in the order frames go on the wire, its reader calls
// Decode in the same order, so both ends see the same sequence of cache
// operations and their caches stay identical (lock-step) without any
// message about them.
//
// # Chunking
//
// Content-defined chunking (FastCDC, Xia et al., USENIX ATC 2016): a Gear
// rolling hash over the bytes, a cut where the hash matches a mask, with
// normalized chunking (a harder mask below the average size, an easier one
// above it) and no cut below the minimum. Identical content therefore cuts
// identically wherever it sits in a stream, and an insertion or deletion
// disturbs only the chunks around it. Encode is told whether more bytes of
// the same stream follow (final false): it then consumes data only up to
// its last cut point and the caller passes the rest again with what comes
// next, so chunk boundaries do not depend on how the stream was split into
// frames. With final true (nothing more queued: interactive traffic) the
// tail is sent at once as a short chunk.
//
// # Cache
//
// A chunk's key is the first 16 bytes of its SHA-256. Each end holds an
// LRU set bounded by bytes (chunk lengths plus 64 bytes of overhead per
// entry): the Encoder keys and lengths only, the Decoder the chunk data
// too. A literal chunk of at least MinCache bytes is inserted at the front
// on both ends; a reference moves its chunk to the front on both ends;
// both evict from the back while over budget. The Encoder references only
// keys it holds, so a Decoder in step always finds them. The Decoder
// hashes each literal itself when it inserts it, so a hit can only return
// the bytes whose hash is the key: a reference never delivers wrong data.
//
// # Wire format of one encoded payload
//
//	payload = epoch:u8 op*
//	op      = 0x00 uvarint(len) bytes[len]   literal
//	        | 0x01 key[16]                   reference
//
// # Divergence
//
// The caches can differ only if an end lost its state (a restart of its
// half), a bug, or a hostile peer. A reference the Decoder does not hold is
// detected (ErrDiverged): nothing of that payload is delivered, the Decoder
// clears its cache and moves to the next epoch, and the tunnel tells the
// peer, whose Encoder clears its own and encodes in the new epoch from then
// on (Reset). Payloads already in flight carry the old epoch: their
// literals are still delivered (they are self-contained) but not cached,
// and a reference in them fails (ErrStale) without a further reset. Any
// other failure of a payload (corrupt, too large) resets the Decoder the
// same way, since the peer's Encoder has cached what the payload taught.
//
// Caches are per tunnel connection between two devices that trust each
// other (mutual TLS); sharing them across tenants would let one infer
// another's data from sizes, which is why they are never shared across
// connections.
package dedup
