package lbsp

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzWalk feeds arbitrary headers to Walk and Parser.Parse. Neither may
// panic; every refusal must be an *Error with a Kind; what Walk accepts
// must tile the header exactly and obey the padding rules; an LBSP option
// that Parse finds must re-encode (Append, BuildDestOpts) to data that
// parses to the same option. Seed corpus: testdata/fuzz/FuzzWalk.
func FuzzWalk(f *testing.F) {
	f.Add(BuildDestOpts(6, lbspTLV(DefaultType)))
	f.Add(legacyHeader())
	f.Add(BuildDestOpts(17))
	f.Add([]byte{6, 0, 0x51, 4, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, h []byte) {
		next := 2
		pad := 0
		werr := Walk(h, func(o TLV) error {
			if o.Offset != next {
				t.Fatalf("option at %d, expected %d", o.Offset, next)
			}
			if o.Type == TypePad1 {
				next++
				pad++
				return nil
			}
			if len(o.Data) > 0 && &h[o.Offset+2] != &o.Data[0] {
				t.Fatalf("Data does not alias the header")
			}
			next += 2 + len(o.Data)
			if o.Type == TypePadN {
				pad += 2 + len(o.Data)
				if !allZero(o.Data) {
					t.Fatalf("non-zero PadN accepted")
				}
			} else {
				pad = 0
			}
			if pad > 7 {
				t.Fatalf("padding run of %d accepted", pad)
			}
			return nil
		})
		if werr == nil {
			if next != len(h) || len(h)%8 != 0 || len(h) != (int(h[1])+1)*8 {
				t.Fatalf("accepted %d octets, options end at %d", len(h), next)
			}
		} else if k := KindOf(werr); !k.Malformed() {
			t.Fatalf("Walk error %v has kind %v", werr, k)
		}

		for _, p := range []Parser{{}, {KernelChecked: true, MaxOptions: -1}, {Type: 0xDE}} {
			r, err := p.Parse(h)
			if err != nil {
				if KindOf(err) == 0 {
					t.Fatalf("Parse error without a Kind: %v", err)
				}
				// Options are processed in order: Parse may stop at
				// an option before the framing error Walk found.
				var pe, we *Error
				if werr != nil && errors.As(err, &pe) && errors.As(werr, &we) {
					if pe.Kind.Malformed() && *pe != *we || !pe.Kind.Malformed() && pe.Offset >= we.Offset {
						t.Fatalf("Parse %v, Walk %v", err, werr)
					}
				}
				continue
			}
			if werr != nil {
				t.Fatalf("Parse accepted what Walk refused: %v", werr)
			}
			if !r.Found {
				if r.Offset != -1 {
					t.Fatalf("not found, offset %d", r.Offset)
				}
				continue
			}
			typ := p.Type
			if typ == 0 {
				typ = DefaultType
			}
			if h[r.Offset] != typ || h[r.Offset+1] != DataLen {
				t.Fatalf("found at %d: %x", r.Offset, h[r.Offset:r.Offset+2])
			}
			tlv := r.Option.Append(nil, typ)
			if !bytes.Equal(tlv, h[r.Offset:r.Offset+TLVLen]) {
				t.Fatalf("re-encoded %x, header has %x", tlv, h[r.Offset:r.Offset+TLVLen])
			}
			r2, err := p.Parse(BuildDestOpts(h[0], tlv))
			if err != nil || !r2.Found || r2.Option != r.Option || r2.Offset != 6 {
				t.Fatalf("rebuilt: %+v, %v", r2, err)
			}
		}
	})
}

// FuzzParseOption checks that ParseOption never panics, refuses every
// length but 32 with ErrOptionData, and that Append and ParseOption are
// inverse: 32 octets round-trip exactly, in and out of a header. Seed
// corpus: testdata/fuzz/FuzzParseOption.
func FuzzParseOption(f *testing.F) {
	f.Add(lbspTLV(DefaultType)[2:], DefaultType)
	f.Add(make([]byte, DataLen), byte(0x3E))
	f.Add(make([]byte, TLVLen), byte(0x01))
	f.Fuzz(func(t *testing.T, data []byte, typ byte) {
		o, err := ParseOption(data)
		if len(data) != DataLen {
			if KindOf(err) != ErrOptionData {
				t.Fatalf("%d octets: %v", len(data), err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if CheckType(typ) != nil {
			typ = DefaultType
		}
		tlv := o.Append(nil, typ)
		if tlv[0] != typ || tlv[1] != DataLen || !bytes.Equal(tlv[2:], data) {
			t.Fatalf("Append(ParseOption(%x)) = %x", data, tlv)
		}
		o2, err := ParseOption(tlv[2:])
		if err != nil || o2 != o {
			t.Fatalf("second round: %v, %v", o2, err)
		}
		r, err := Parser{Type: typ, KernelChecked: true}.Parse(BuildDestOpts(6, tlv))
		if err != nil || !r.Found || r.Option != o {
			t.Fatalf("in a header: %+v, %v", r, err)
		}
	})
}

// FuzzBuildDestOpts builds headers from arbitrary option lengths and checks
// that Walk accepts them with every option at 8n+6.
func FuzzBuildDestOpts(f *testing.F) {
	f.Add([]byte{32})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7})
	f.Fuzz(func(t *testing.T, lens []byte) {
		var opts [][]byte
		size := 2
		for i, n := range lens {
			size += 7 + 2 + int(n)
			if size > maxHeaderLen {
				break
			}
			opts = append(opts, append([]byte{0x02 + byte(i%8), n}, make([]byte, n)...))
		}
		h := BuildDestOpts(59, opts...)
		i := 0
		err := Walk(h, func(o TLV) error {
			if o.Type == TypePad1 || o.Type == TypePadN {
				return nil
			}
			if o.Offset%8 != 6 || len(o.Data) != len(opts[i])-2 {
				t.Fatalf("option %d at %d with %d octets", i, o.Offset, len(o.Data))
			}
			i++
			return nil
		})
		if err != nil || i != len(opts) {
			t.Fatalf("%v after %d of %d options\n%x", err, i, len(opts), h)
		}
	})
}
