// Package codec compresses the frame payloads of an iSession-style tunnel:
// blocks of up to a few hundred KiB, each compressed on its own (no history
// across blocks) just before the tunnel's writer goroutine sends it, and
// decompressed in the same order by the reader goroutine.
//
// # Wire format
//
// A block is one codec byte, the raw (uncompressed) length as a uvarint, and
// the body:
//
//	None     the raw bytes
//	Deflate  a raw DEFLATE stream (RFC 1951), ending exactly at the block end
//	Zstd     Zstandard frames (no checksum) that decode to the raw length
//	S2       an S2 block; its own leading uvarint is the header's raw length,
//	         so the S2 block starts right after the codec byte
//
// A Compressor sends None whenever the compressed body would not be smaller
// than the input, so a block is never more than len(src)+11 bytes. A
// Decompressor accepts only the negotiated codecs (and None), checks the
// declared length against the caller's limit before allocating anything and
// requires the body to decode to exactly that length.
//
// # Adaptive mode
//
// The goal is the most raw bytes delivered per second. Compressing a block
// and sending the previous one overlap (the writer compresses while the
// kernel drains the socket buffer), so with codec c the time per raw byte is
//
//	t_c = max(r_c / L, 1 / s_c)
//
// where L is the link's delivery rate in bytes per second (SetLinkRate, from
// TCP_INFO), r_c the codec's ratio (compressed / raw bytes) and s_c its speed
// (raw bytes per second of compression time). None has r = 1 and s = ∞, so
// t_None = 1/L. Each block uses the codec with the least t_c: on a slow WAN
// link r/L dominates and the strongest ratio wins (zstd or deflate); on a
// fast link 1/s dominates and a fast codec (s2) or None wins; in between the
// rule picks the crossover. Decompression speed is not modelled: every codec
// here decodes much faster than it encodes.
//
// r_c and s_c are exponentially weighted moving averages (weight 1/4 for a
// 64 KiB block, less for shorter ones) of measurements on real blocks: the
// body length and the wall time of the encode call (the writer goroutine is
// busy for that time, so it approximates the CPU time the block costs). The
// estimates start from typical constants for text-like traffic and converge
// within a few blocks. The codec chosen is measured on every block; a codec
// not chosen is used for one block once it is due, every 16 blocks stretched
// by how much slower than the best it is expected to be (capped at 65536
// blocks), so that estimates stay fresh as the traffic and the link change
// while measuring costs at most about 1/16 of the time per codec. Measuring
// by sending the block with that codec, rather than compressing it twice,
// wastes no CPU: the block is still delivered, only a little less well.
//
// When the link rate is unknown (0) the time to send cannot be estimated, so
// the fastest codec whose ratio is below 0.9 is used (normally s2): it
// gains most of the bytes at little CPU cost. If no codec compresses, None.
//
// Before choosing, a block is tested for compressibility with
// compress.Estimate (order-1 predictability and byte histogram) on eight
// evenly spaced 512-byte samples, 4 KiB in all (on the whole block when it is
// at most 4 KiB). When their mean is below 0.1 the block is sent as None
// without compressing and counted in Stats.Skipped: random, encrypted or
// already compressed data averages below 0.08, while text scores about 0.35
// and even base64, which only entropy coding shrinks, above 0.2. The mean
// rather than the maximum, so that a block of mostly compressed data behind
// a short header (an HTTP response with a gzip body) is skipped too:
// compressing it would gain a few bytes for the cost of the whole block.
// Sampling costs a few microseconds; compressing a 64 KiB incompressible
// block costs tens. Blocks shorter than 64 bytes are always sent as None.
//
// With Adaptive false every block is compressed with Codecs[0], without the
// compressibility test, and falls back to None only when it does not shrink.
package codec
