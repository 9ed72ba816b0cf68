package isession

import (
	"fmt"

	"github.com/fulcrum-adc/fulcrum/isession/codec"
	"github.com/fulcrum-adc/fulcrum/isession/dedup"
)

// The optimization pipeline of one direction of a tunnel connection:
// de-duplication first, then compression of what is left (F5's order),
// inside TLS. The mux calls it in wire order (mux.PayloadEncoder and
// mux.PayloadDecoder).

type encoder struct {
	dd      *dedup.Encoder    // nil: de-duplication off
	comp    *codec.Compressor // nil: compression off
	scratch []byte
}

func (e *encoder) Encode(dst, data []byte, final bool) ([]byte, int) {
	if e.dd == nil {
		return e.comp.Compress(dst, data), len(data)
	}
	var n int
	e.scratch, n = e.dd.Encode(e.scratch[:0], data, final)
	if n == 0 && !final {
		return dst, 0
	}
	if e.comp == nil {
		return append(dst, e.scratch...), n
	}
	return e.comp.Compress(dst, e.scratch), n
}

func (e *encoder) Resync(epoch uint8) {
	if e.dd != nil {
		e.dd.Reset(epoch)
	}
}

type decoder struct {
	dd      *dedup.Decoder      // nil: de-duplication off
	comp    *codec.Decompressor // nil: compression off
	scratch []byte
	reset   bool
}

func (d *decoder) Decode(dst, payload []byte, maxOut int) ([]byte, error) {
	d.reset = false
	if d.comp == nil {
		return d.dd.Decode(dst, payload, maxOut)
	}
	if d.dd == nil {
		return d.comp.Decompress(dst, payload, maxOut)
	}
	// A de-duplicated payload is at most a little longer than its raw
	// bytes (a short header per chunk) and usually much shorter.
	var err error
	d.scratch, err = d.comp.Decompress(d.scratch[:0], payload, maxOut+maxOut/32+1024)
	if err != nil {
		// The peer's encoder learnt chunks from this payload that this
		// end will never see: the caches must start again.
		d.dd.Reset()
		d.reset = true
		return dst, fmt.Errorf("isession: decompress: %w", err)
	}
	if cap(d.scratch) > 8<<20 {
		defer func() { d.scratch = nil }()
	}
	return d.dd.Decode(dst, d.scratch, maxOut)
}

func (d *decoder) Resync() (uint8, bool) {
	if d.dd == nil {
		return 0, false
	}
	epoch, reset := d.dd.Resync()
	return epoch, reset || d.reset
}
