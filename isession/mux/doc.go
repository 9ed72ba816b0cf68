// Package mux multiplexes many streams (the inner connections of an
// iSession tunnel) over one connection (the tunnel's TLS connection).
//
// It is its own framing rather than yamux or smux because of
// de-duplication: the optimization layer keeps a chunk cache per direction
// of a tunnel connection, shared by all its streams and kept in lock-step
// between the two ends. That works only if payloads are encoded in exactly
// the order they go on the wire and decoded in exactly the order they come
// off it, at the moment they are read — not later, when some stream's
// consumer gets round to it. So a Session has one writer goroutine, which
// encodes each DATA payload (PayloadEncoder) as it builds the frame, and
// one reader goroutine, which decodes each (PayloadDecoder) before it
// queues the bytes in the stream's receive buffer. A generic mux hides both
// orders from its user.
//
// # Wire format
//
// Every frame is a 9-byte header and a payload:
//
//	length u24 | type u8 | flags u8 | stream u32     (big-endian)
//
//	DATA    0  flags FIN 0x1, ENC 0x2   payload: data (encoded when ENC)
//	OPEN    1  flags FIN, ENC           payload: hlen u16 | header[hlen] | data
//	WINDOW  2                           payload: increment u32
//	RST     3                           payload: code u32 | reason (≤ 256 bytes)
//	PING    4  flag ACK 0x1             payload: 8 opaque bytes
//	GOAWAY  5  (stream 0)               payload: code u32 | reason
//	RESYNC  6  (stream 0)               payload: epoch u8
//
// Stream 0 is the session. The end created with Client opens odd stream
// IDs, the Server end even ones, each strictly increasing; both ends may
// open streams. OPEN carries the caller's opaque header (the original
// destination) and the first data, so a stream costs no round trip. An
// unknown type, a frame longer than the negotiated maximum, a reused or
// out-of-order stream ID, or data beyond the receive window is a
// connection error: the session closes. DATA for a stream that is gone is
// decoded (to keep the caches in step) and dropped.
//
// # Flow control
//
// Windows count raw (decoded) bytes per stream: a sender sends only what
// the receiver has granted, so a slow consumer back-pressures its own
// stream and nothing else; the reader goroutine never waits on a consumer.
// A receiver returns credit (WINDOW) once the application has read half the
// window. Windows start at Options.InitialWindow and auto-tune like
// quic-go's: when credit falls due sooner than two round trips (PING) after
// the last update, the window doubles, up to MaxWindow, while the session's
// growth budget (SessionWindow) lasts. Memory per session is bounded by
// MaxStreams × InitialWindow + SessionWindow of receive buffers, and per
// stream by its send queue (512 KiB).
//
// # Scheduling
//
// The writer serves control frames first (WINDOW, PING, RST, GOAWAY,
// RESYNC), then streams with data and credit round-robin, one frame of at
// most 128 KiB of raw data per stream per turn, so an interactive stream
// is never queued behind a bulk one's backlog. Frames are batched into one
// write while more are ready.
//
// # Failures of the optimization layer
//
// A payload that fails to decode (a cache miss after the peer lost its
// state, a corrupt block) resets only its stream (RST code
// CodeOptimization): nothing of the payload is delivered. If the decoder
// reset its state, a RESYNC frame tells the peer's encoder to follow. The
// session and every other stream go on.
package mux
