package codec

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Options configures a Compressor.
type Options struct {
	// Codecs are the codecs this side may send: the intersection negotiated
	// with the peer. None is always allowed and need not be listed.
	Codecs []Codec
	// Adaptive picks a codec per block among Codecs (and None), see the
	// package documentation. When false every block uses Codecs[0], or None
	// when Codecs is empty.
	Adaptive bool
	// DeflateLevel is the flate level, 1 (fastest, the default) to 9.
	DeflateLevel int
	// ZstdLevel is 1 (zstd.SpeedFastest, the default) to 4
	// (zstd.SpeedBestCompression).
	ZstdLevel int
}

// Tuning of adaptive mode; the package documentation explains each.
const (
	minAdaptive     = 64      // adaptive mode sends shorter blocks raw
	sampleChunk     = 512     // bytes per entropy sample chunk
	sampleChunks    = 8       // chunks sampled per block
	incompressible  = 0.10    // compress.Estimate below this: will not compress
	exploreEvery    = 16      // base interval, in blocks, between measurements of a codec not chosen
	maxExploreEvery = 1 << 16 // cap of that interval
	ewmaAlpha       = 0.25    // EWMA weight of one full-size measurement
	ewmaFullSize    = 64 << 10
	compressesBelow = 0.9 // with the link rate unknown, a codec "compresses" below this ratio
	minCPU          = 1e-12
)

// estimate is adaptive mode's model of one codec on the current traffic.
type estimate struct {
	ratio float64 // EWMA of compressed body / raw length, capped at 1
	cpu   float64 // EWMA of seconds of compression per raw byte
	last  uint64  // block number of the last measurement
}

// A Compressor compresses blocks for one direction of a tunnel. It reuses its
// encoders from block to block and must be used by one goroutine at a time;
// SetLinkRate and Stats may be called from any goroutine.
type Compressor struct {
	codecs   []Codec // allowed codecs other than None, without duplicates
	adaptive bool
	link     atomic.Uint64 // float64 bits: delivery rate in bytes/s, 0 unknown
	est      [numCodecs]estimate
	blocks   uint64 // blocks adaptive mode has chosen a codec for

	fw    *flate.Writer
	fout  appendWriter
	zw    *zstd.Encoder
	stats Stats
}

// NewCompressor returns a Compressor for o. It fails on an unknown codec or a
// level out of range.
func NewCompressor(o Options) (*Compressor, error) {
	c := &Compressor{adaptive: o.Adaptive}
	for _, k := range o.Codecs {
		if !k.valid() {
			return nil, fmt.Errorf("codec: unknown codec %d", k)
		}
		if k != None && !slices.Contains(c.codecs, k) {
			c.codecs = append(c.codecs, k)
		}
	}
	if !o.Adaptive && len(o.Codecs) > 0 && o.Codecs[0] == None {
		c.codecs = nil // fixed None
	}
	dl, zl := o.DeflateLevel, o.ZstdLevel
	if dl == 0 {
		dl = 1
	}
	if zl == 0 {
		zl = 1
	}
	if dl < 1 || dl > 9 {
		return nil, fmt.Errorf("codec: deflate level %d out of range 1..9", o.DeflateLevel)
	}
	if zl < 1 || zl > 4 {
		return nil, fmt.Errorf("codec: zstd level %d out of range 1..4", o.ZstdLevel)
	}
	c.est[None] = estimate{ratio: 1}
	for _, k := range c.codecs {
		var err error
		switch k {
		case Deflate:
			c.fw, err = flate.NewWriter(nil, dl)
			c.est[k] = estimate{ratio: 0.43 - 0.01*float64(dl-1), cpu: float64(dl) / 200e6}
		case Zstd:
			c.zw, err = zstd.NewWriter(nil,
				zstd.WithEncoderLevel([...]zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault,
					zstd.SpeedBetterCompression, zstd.SpeedBestCompression}[zl-1]),
				zstd.WithEncoderConcurrency(1),
				zstd.WithEncoderCRC(false)) // integrity is the transport's job
			c.est[k] = estimate{ratio: 0.40 - 0.03*float64(zl-1), cpu: [...]float64{2.5e-9, 5e-9, 1.5e-8, 5e-8}[zl-1]}
		case S2:
			c.est[k] = estimate{ratio: 0.55, cpu: 1e-9}
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("codec: %v: %w", k, err)
		}
	}
	return c, nil
}

// SetLinkRate tells adaptive mode the tunnel's current delivery rate in bytes
// per second (from TCP_INFO); 0 means unknown. Safe from any goroutine.
func (c *Compressor) SetLinkRate(bytesPerSecond float64) {
	if !(bytesPerSecond > 0) || math.IsInf(bytesPerSecond, 0) {
		bytesPerSecond = 0
	}
	c.link.Store(math.Float64bits(bytesPerSecond))
}

// Stats returns the Compressor's counters.
func (c *Compressor) Stats() *Stats { return &c.stats }

// Close releases the encoders. The Compressor must not be used afterwards.
func (c *Compressor) Close() {
	if c.zw != nil {
		_ = c.zw.Close()
		c.zw = nil
	}
	c.fw = nil
}

// Compress appends one block holding src to dst and returns the extended
// slice: a header (the codec byte, then the raw length as a uvarint) and the
// body. It sends None whenever the compressed body would not be smaller than
// src.
func (c *Compressor) Compress(dst, src []byte) []byte {
	start := len(dst)
	dst = slices.Grow(dst, maxHeader+len(src))
	k := c.choose(src)
	if k != None {
		t := time.Now()
		out, body, ok := c.encode(k, dst, src)
		if c.adaptive {
			c.observe(k, body, len(src), time.Since(t))
		}
		if ok {
			c.stats.add(k, len(src), len(out)-start)
			return out
		}
		c.stats.fallbacks.Add(1)
		dst = out[:start]
	}
	dst = append(appendHeader(dst, None, len(src)), src...)
	c.stats.add(None, len(src), len(dst)-start)
	return dst
}

// encode appends a block of src compressed with k to dst. body is the length
// of the compressed body (len(src) or more when it did not shrink), ok
// whether it is shorter than src; when !ok, out[:len(dst)] is still dst.
func (c *Compressor) encode(k Codec, dst, src []byte) (out []byte, body int, ok bool) {
	if k == S2 {
		// An S2 block starts with the raw length as a uvarint: it is the
		// uvarint of our header, so the block follows the codec byte.
		n := s2.MaxEncodedLen(len(src))
		if n < 0 {
			return dst, len(src), false
		}
		out = slices.Grow(append(dst, byte(S2)), n)
		h := len(out)
		out = out[:h+len(s2.Encode(out[h:h+n], src))]
		body = len(out) - len(appendHeader(dst, S2, len(src)))
		return out, body, body < len(src)
	}
	out = appendHeader(dst, k, len(src))
	h := len(out)
	switch k {
	case Deflate:
		c.fout = appendWriter{b: out, limit: h + len(src) - 1}
		c.fw.Reset(&c.fout)
		_, err := c.fw.Write(src)
		if err == nil {
			err = c.fw.Close()
		}
		out, c.fout.b = c.fout.b, nil
		if err != nil { // over the limit: not smaller
			return out, len(src), false
		}
	case Zstd:
		out = c.zw.EncodeAll(src, out)
	}
	body = len(out) - h
	return out, body, body < len(src)
}

// appendWriter is the flate writer's destination: it appends to b and fails
// once b would exceed limit bytes, which ends a block that does not shrink.
type appendWriter struct {
	b     []byte
	limit int
}

const errNoGain Error = "codec: compressed block not smaller"

func (w *appendWriter) Write(p []byte) (int, error) {
	if len(w.b)+len(p) > w.limit {
		return 0, errNoGain
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// choose returns the codec for the next block.
func (c *Compressor) choose(src []byte) Codec {
	if !c.adaptive {
		if len(c.codecs) == 0 {
			return None
		}
		return c.codecs[0]
	}
	if len(c.codecs) == 0 || len(src) < minAdaptive {
		return None
	}
	if !compressible(src) {
		c.stats.skipped.Add(1)
		return None
	}
	c.blocks++
	best, bestCost := c.best()
	// Measure a codec that was not chosen once it is due: every exploreEvery
	// blocks, stretched by how much slower than the best it is expected to
	// be, so that measuring costs at most about 1/exploreEvery of the time.
	explore, overdue := None, 1.0
	for _, k := range c.codecs {
		if k == best {
			continue
		}
		every := min(exploreEvery*c.cost(k)/bestCost, maxExploreEvery)
		if c.est[k].last == 0 {
			every = exploreEvery // calibrate the starting constants once
		}
		if d := float64(c.blocks-c.est[k].last) / every; d >= overdue {
			explore, overdue = k, d
		}
	}
	if explore != None {
		return explore
	}
	return best
}

// best returns the codec with the lowest expected cost and that cost.
func (c *Compressor) best() (Codec, float64) {
	best, bestCost := None, c.cost(None)
	for _, k := range c.codecs {
		if cost := c.cost(k); cost < bestCost {
			best, bestCost = k, cost
		}
	}
	return best, bestCost
}

// cost returns the expected seconds per raw byte of sending with k: the
// slower of compressing and transmitting, which overlap. With the link rate
// unknown it is the compression time alone, and codecs that barely compress
// rank behind None, which ranks behind every codec that compresses.
func (c *Compressor) cost(k Codec) float64 {
	e := &c.est[k]
	cpu := max(e.cpu, minCPU)
	link := math.Float64frombits(c.link.Load())
	switch {
	case link > 0:
		return max(e.ratio/link, cpu)
	case k == None:
		return 1
	case e.ratio < compressesBelow:
		return cpu
	}
	return 1 + cpu
}

// observe folds one measurement of codec k into its estimate: body bytes out
// of raw bytes in, in d of compression time.
func (c *Compressor) observe(k Codec, body, raw int, d time.Duration) {
	if raw == 0 {
		return
	}
	e := &c.est[k]
	a := ewmaAlpha * min(1, float64(raw)/ewmaFullSize)
	e.ratio += a * (min(float64(body)/float64(raw), 1) - e.ratio)
	e.cpu += a * (max(d.Seconds(), 0)/float64(raw) - e.cpu)
	e.last = c.blocks
}

// compressible reports whether a sample of src looks compressible: the mean
// compress.Estimate of sampleChunks evenly spaced chunks of sampleChunk bytes
// (of the whole of a short src) is at least incompressible.
func compressible(src []byte) bool {
	if len(src) <= sampleChunks*sampleChunk {
		return compress.Estimate(src) >= incompressible
	}
	step, sum := (len(src)-sampleChunk)/(sampleChunks-1), 0.0
	for i := range sampleChunks {
		sum += compress.Estimate(src[i*step : i*step+sampleChunk])
	}
	return sum >= incompressible*sampleChunks
}
