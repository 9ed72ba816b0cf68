package dedup

import "sync/atomic"

// Stats is a snapshot of one Encoder's or Decoder's counters.
type Stats struct {
	// BytesIn and BytesOut are what went in and came out: for an Encoder
	// raw bytes consumed and encoded bytes produced, for a Decoder encoded
	// bytes accepted and raw bytes delivered. A payload that fails to
	// decode counts in neither.
	BytesIn, BytesOut uint64
	Chunks            uint64 // chunks encoded or decoded: Refs + Literals
	Refs              uint64 // chunks sent or received as references
	Literals          uint64 // chunks sent or received whole
	CacheEntries      int64  // chunks in the cache now
	CacheBytes        int64  // their cost now: lengths plus 64 bytes each
	Resets            uint64 // cache clears (Encoder.Reset; a Decoder's resets)
}

// counters are updated by the Encoder's or Decoder's goroutine, once per
// call, and read atomically by Stats from any goroutine.
type counters struct {
	in, out, refs, literals, resets atomic.Uint64
	entries, bytes                  atomic.Int64
}

func (c *counters) add(in, out, refs, literals int) {
	c.in.Add(uint64(in))
	c.out.Add(uint64(out))
	c.refs.Add(uint64(refs))
	c.literals.Add(uint64(literals))
}

// cache publishes the cache's size.
func (c *counters) cache(l *cache) {
	c.entries.Store(int64(len(l.m)))
	c.bytes.Store(l.used)
}

func (c *counters) snapshot() Stats {
	s := Stats{
		BytesIn:      c.in.Load(),
		BytesOut:     c.out.Load(),
		Refs:         c.refs.Load(),
		Literals:     c.literals.Load(),
		CacheEntries: c.entries.Load(),
		CacheBytes:   c.bytes.Load(),
		Resets:       c.resets.Load(),
	}
	s.Chunks = s.Refs + s.Literals
	return s
}
