package lbsp

import "fmt"

// Action is what a node that does not recognise an option must do, encoded
// in the two high-order bits of the option type (RFC 8200 §4.2).
type Action uint8

const (
	ActionSkip               Action = 0 // 00: skip the option, go on
	ActionDiscard            Action = 1 // 01: discard the packet silently
	ActionDiscardICMP        Action = 2 // 10: discard, send ICMP Parameter Problem code 2
	ActionDiscardICMPUnicast Action = 3 // 11: as 10, but only if the destination was not multicast
)

func (a Action) String() string {
	switch a {
	case ActionSkip:
		return "skip"
	case ActionDiscard:
		return "discard"
	case ActionDiscardICMP:
		return "discard+icmp"
	case ActionDiscardICMPUnicast:
		return "discard+icmp-if-unicast"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ActionOf returns the action bits of option type t.
func ActionOf(t byte) Action { return Action(t >> 6) }

// MayChange reports whether option type t has the third-highest bit set:
// its data may change en route (AH then treats it as zeros).
func MayChange(t byte) bool { return t&0x20 != 0 }

// maxPadRun is the most consecutive octets of padding a header may hold.
// Padding only ever needs to reach the next multiple of 8, so 7 is the
// most that can be useful; RFC 4942 §2.1.9.5 recommends refusing more and
// Linux's ip6_parse_tlv drops the packet beyond it. It follows that a
// single PadN carries at most 5 octets of data (7 in all).
const maxPadRun = 7

// maxHeaderLen is the largest Destination Options header: Hdr Ext Len 255.
const maxHeaderLen = (255 + 1) * 8

// TLV is one option in a Destination Options header, as Walk reports it.
type TLV struct {
	// Offset of the Option Type octet from the first octet of the header.
	Offset int
	Type   byte
	// Data is the Option Data, aliasing the header (nil for Pad1, empty
	// for a PadN of two octets).
	Data []byte
}

// ExtHeaderLen returns the length in octets of the extension header that
// starts at b[0], read from its Hdr Ext Len octet (8-octet units, not
// counting the first 8). It is how to cut a Destination Options header out
// of a packet before calling Walk or Parser.Parse. It fails only if b has
// fewer than 2 octets; it does not check that b holds the whole header.
func ExtHeaderLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, &Error{Kind: ErrTruncated, Offset: len(b), Detail: "no Hdr Ext Len octet"}
	}
	return (int(b[1]) + 1) * 8, nil
}

// Walk checks that hdr is exactly one well-formed Destination Options
// header (RFC 8200 §4.2, §4.6: Next Header, Hdr Ext Len, then TLVs filling
// the header to its declared length) and calls fn for every option in
// order, padding included. It stops at the first error, which is an
// *Error (of a Malformed Kind), or whatever fn returned.
//
// Besides the lengths, Walk applies the padding rules Linux applies on
// receive (net/ipv6/exthdrs.c ip6_parse_tlv, after RFC 4942 §2.1.9.5):
// PadN data must be zero, and no more than 7 consecutive octets may be
// padding (Pad1 and PadN together). So a single PadN longer than 7 octets
// in all (5 of data) is refused, as is a header that is all padding beyond
// its first 8 octets. What fn does with unknown options is up to fn: Walk
// does not look at action bits (Parser.Parse does).
//
// fn may be called for some options before Walk finds an error further on;
// callers that act on options must wait for Walk to return nil.
func Walk(hdr []byte, fn func(TLV) error) error {
	n, err := ExtHeaderLen(hdr)
	if err != nil {
		return err
	}
	switch {
	case len(hdr) < n:
		return &Error{Kind: ErrTruncated, Offset: len(hdr),
			Detail: fmt.Sprintf("%d octets, Hdr Ext Len %d says %d", len(hdr), hdr[1], n)}
	case len(hdr) > n:
		return &Error{Kind: ErrHeaderLength, Offset: n,
			Detail: fmt.Sprintf("%d octets, Hdr Ext Len %d says %d", len(hdr), hdr[1], n)}
	}
	pad := 0 // octets of padding since the last non-padding option
	for off := 2; off < n; {
		t := hdr[off]
		if t == TypePad1 {
			pad++
			if pad > maxPadRun {
				return &Error{Kind: ErrPadding, Offset: off, Type: t,
					Detail: fmt.Sprintf("more than %d consecutive octets of padding", maxPadRun)}
			}
			if fn != nil {
				if err := fn(TLV{Offset: off, Type: t}); err != nil {
					return err
				}
			}
			off++
			continue
		}
		if off+2 > n {
			return &Error{Kind: ErrOptionLength, Offset: off, Type: t,
				Detail: fmt.Sprintf("option type 0x%02x has no length octet", t)}
		}
		end := off + 2 + int(hdr[off+1])
		if end > n {
			return &Error{Kind: ErrOptionLength, Offset: off, Type: t,
				Detail: fmt.Sprintf("option type 0x%02x, %d octets of data, runs %d octets past the end of the header",
					t, hdr[off+1], end-n)}
		}
		data := hdr[off+2 : end]
		if t == TypePadN {
			if !allZero(data) {
				if isLegacy(hdr, off) {
					return &Error{Kind: ErrLegacy, Offset: off, Type: t,
						Detail: "seed's literal LBSP encoding (type 1 is PadN); not accepted"}
				}
				return &Error{Kind: ErrPadding, Offset: off, Type: t, Detail: "PadN with non-zero data"}
			}
			pad += end - off
			if pad > maxPadRun {
				return &Error{Kind: ErrPadding, Offset: off, Type: t,
					Detail: fmt.Sprintf("more than %d consecutive octets of padding", maxPadRun)}
			}
		} else {
			pad = 0
		}
		if fn != nil {
			if err := fn(TLV{Offset: off, Type: t, Data: data}); err != nil {
				return err
			}
		}
		off = end
	}
	return nil
}

// isLegacy reports whether hdr, found to hold a non-zero PadN at off, is the
// seed's literal encoding: Hdr Ext Len 4, then 01 04 and the addresses.
func isLegacy(hdr []byte, off int) bool {
	return off == 2 && len(hdr) == HeaderLen && hdr[1] == 4 && hdr[2] == TypePadN && hdr[3] == 4
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// DefaultMaxOptions is the default of Parser.MaxOptions, Linux's default
// net.ipv6.max_dst_opts_number.
const DefaultMaxOptions = 8

// Parser finds the LBSP option in a Destination Options header. The zero
// Parser uses DefaultType, DefaultMaxOptions, and enforces action bits.
type Parser struct {
	// Type is the LBSP option type; 0 means DefaultType. Pad1 and PadN
	// cannot be used (see CheckType).
	Type byte

	// MaxOptions is the most non-padding options (LBSP included) a header
	// may carry; 0 means DefaultMaxOptions, a negative value no limit.
	MaxOptions int

	// KernelChecked says the header came from the kernel (a control
	// message or IPV6_2292PKTOPTIONS) rather than from a raw packet. The
	// kernel has already applied the action bits of every option it does
	// not know, and delivered only packets it accepted, so an unknown
	// option is then skipped whatever its action bits: it is one the
	// kernel knows (for instance Home Address, 0xC9, with MIPv6).
	KernelChecked bool
}

// Result is what Parser.Parse found.
type Result struct {
	// NextHeader is the header's Next Header octet. (In a header read
	// from a socket it is whatever the kernel delivered: the real value.)
	NextHeader byte
	// Found reports whether the header carries the LBSP option; if so,
	// Option is its value and Offset the offset of its type octet from the
	// start of the header (-1 when not found).
	Found  bool
	Option Option
	Offset int
	// Skipped counts the options that were neither padding nor LBSP and
	// were skipped (their action bits were ActionSkip, or KernelChecked).
	Skipped int
}

// Parse walks hdr (one whole Destination Options header, see Walk) as the
// final destination would, and returns the LBSP option if it is there, in
// any position. It refuses, with an *Error:
//   - every framing error Walk refuses;
//   - an option of unknown type whose action bits are not ActionSkip
//     (ErrUnknownOption; unless KernelChecked);
//   - more than MaxOptions non-padding options (ErrTooManyOptions);
//   - an LBSP option whose data is not 32 octets (ErrOptionData);
//   - a second LBSP option (ErrDuplicate).
//
// Options are processed in order, as RFC 8200 §4.2 and Linux do: the first
// problem met is the one reported, so an unknown option that says
// "discard" is reported even if the header is malformed further on.
//
// A well-formed header without the option is not an error: Found is false.
// On error the Result is the zero Result (Offset 0).
func (p Parser) Parse(hdr []byte) (Result, error) {
	typ := p.Type
	if typ == 0 {
		typ = DefaultType
	}
	if err := CheckType(typ); err != nil {
		return Result{}, fmt.Errorf("lbsp: Parser.Type: %w", err)
	}
	maxOpts := p.MaxOptions
	if maxOpts == 0 {
		maxOpts = DefaultMaxOptions
	}
	r := Result{Offset: -1}
	count := 0
	err := Walk(hdr, func(o TLV) error {
		if o.Type == TypePad1 || o.Type == TypePadN {
			return nil
		}
		count++
		if maxOpts > 0 && count > maxOpts {
			return &Error{Kind: ErrTooManyOptions, Offset: o.Offset, Type: o.Type,
				Detail: fmt.Sprintf("more than %d options", maxOpts)}
		}
		if o.Type != typ {
			if a := ActionOf(o.Type); a != ActionSkip && !p.KernelChecked {
				return &Error{Kind: ErrUnknownOption, Offset: o.Offset, Type: o.Type,
					Detail: fmt.Sprintf("unknown option type 0x%02x, action %s", o.Type, a)}
			}
			r.Skipped++
			return nil
		}
		if r.Found {
			return &Error{Kind: ErrDuplicate, Offset: o.Offset, Type: o.Type,
				Detail: fmt.Sprintf("LBSP option also at offset %d", r.Offset)}
		}
		opt, err := ParseOption(o.Data)
		if err != nil {
			return &Error{Kind: ErrOptionData, Offset: o.Offset, Type: o.Type,
				Detail: fmt.Sprintf("LBSP option (type 0x%02x) has %d octets of data, want %d", o.Type, len(o.Data), DataLen)}
		}
		r.Found, r.Option, r.Offset = true, opt, o.Offset
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	r.NextHeader = hdr[0]
	return r, nil
}

// BuildDestOpts returns a Destination Options header with Next Header
// nextHeader that carries opts, each one complete option TLV (as
// Option.Append makes), in order.
//
// Alignment: every option is placed at 8n+6, so that its data starts on an
// 8-octet boundary (the header itself always starts on one). This is the
// alignment requirement of the LBSP option, chosen so that both 16-octet
// addresses are 8-octet aligned, as for Home Address (RFC 6275 §6.3). 8n+6
// also satisfies 2n, 4n+2 and 8n+6 requirements, which cover the options
// in the IANA registry that have one. The gaps, and the tail up to a
// multiple of 8 octets, are filled with Pad1 (one octet) or PadN (two or
// more, zero data); no run of padding exceeds 7 octets. A lone LBSP option
// gives the 40-octet layout of DESIGN.md §6:
//
//	NH 04 | 01 02 00 00 | 1E 20 | client (16) | server (16)
//
// With no opts the result is an 8-octet header of padding.
//
// When the header is set on a socket (SetDestOpts) the kernel overwrites
// nextHeader with the real value.
//
// BuildDestOpts panics if an element of opts is not one well-formed
// non-padding TLV (at least 2 octets, Opt Data Len equal to the rest, type
// not Pad1 or PadN), or if the header would exceed 2048 octets (Hdr Ext Len
// 255).
func BuildDestOpts(nextHeader byte, opts ...[]byte) []byte {
	size := 2
	for i, o := range opts {
		if len(o) < 2 || int(o[1]) != len(o)-2 || o[0] == TypePad1 || o[0] == TypePadN {
			panic(fmt.Sprintf("lbsp: BuildDestOpts: opts[%d] is not one non-padding option TLV", i))
		}
		size += 7 + len(o)
	}
	b := make([]byte, 2, size+7)
	b[0] = nextHeader
	for _, o := range opts {
		b = appendPad(b, (6-len(b)%8+8)%8)
		b = append(b, o...)
	}
	b = appendPad(b, (8-len(b)%8)%8)
	if len(b) > maxHeaderLen {
		panic(fmt.Sprintf("lbsp: BuildDestOpts: header of %d octets exceeds %d", len(b), maxHeaderLen))
	}
	b[1] = byte(len(b)/8 - 1)
	return b
}

// appendPad appends n octets of padding: nothing, Pad1, or one PadN.
func appendPad(b []byte, n int) []byte {
	switch n {
	case 0:
		return b
	case 1:
		return append(b, TypePad1)
	}
	b = append(b, TypePadN, byte(n-2))
	for range n - 2 {
		b = append(b, 0)
	}
	return b
}
