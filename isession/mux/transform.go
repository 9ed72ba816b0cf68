package mux

// PayloadEncoder transforms DATA payloads. It is called only from the
// session's writer goroutine, in wire order.
type PayloadEncoder interface {
	// Encode appends to dst the encoding of a prefix of data and returns
	// the extended dst and how many bytes of data it consumed. With final
	// false it may consume less than all of data, even nothing (it cuts
	// at content-defined chunk boundaries; the rest stays queued and is
	// passed again with more bytes behind it); with final true it
	// consumes all of data. The encoding of n bytes must not exceed
	// n + n/64 + 64 bytes.
	Encode(dst, data []byte, final bool) (out []byte, consumed int)
	// Resync is called when the peer's decoder reset its state to epoch
	// (a RESYNC frame arrived); what is encoded next must be decodable by
	// a decoder in that fresh state.
	Resync(epoch uint8)
}

// PayloadDecoder reverses a PayloadEncoder. It is called only from the
// session's reader goroutine, in wire order, for every encoded payload —
// those of streams that are gone included, so that its state follows the
// encoder's.
type PayloadDecoder interface {
	// Decode appends the decoded payload to dst. maxOut bounds the decoded
	// length. On error nothing of the payload may be delivered.
	Decode(dst, payload []byte, maxOut int) ([]byte, error)
	// Resync reports whether the last failed Decode reset the decoder, and
	// the epoch it reset to.
	Resync() (epoch uint8, reset bool)
}

// maxExpansion is the most an encoder may add to n raw bytes.
func maxExpansion(n int) int { return n/64 + 64 }
