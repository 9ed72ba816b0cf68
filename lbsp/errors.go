package lbsp

import (
	"errors"
	"fmt"
)

// Kind classifies why a Destination Options header or an LBSP option was
// refused. Each Kind is itself an error, so callers can test with
// errors.Is(err, lbsp.ErrPadding), and its String is a short label meant
// for a metrics counter (KindOf(err).String()).
type Kind uint8

// The kinds of refusal. The first five (see Malformed) are framing errors:
// Linux drops such a packet and counts it in Ip6InHdrErrors.
const (
	// ErrTruncated: fewer octets than the header's own Hdr Ext Len says,
	// or not even the two fixed octets.
	ErrTruncated Kind = iota + 1
	// ErrHeaderLength: more octets than Hdr Ext Len says (which includes
	// any length that is not a multiple of 8).
	ErrHeaderLength
	// ErrOptionLength: an option's length octet is missing or its data
	// runs past the end of the header.
	ErrOptionLength
	// ErrPadding: a PadN whose data is not all zero, or more than 7
	// consecutive octets of padding (RFC 4942 §2.1.9.5; Linux enforces
	// both).
	ErrPadding
	// ErrLegacy: the seed's literal encoding (Hdr Ext Len 4, then type 1
	// length 4 and the two addresses). It is a special case of ErrPadding,
	// counted apart so an operator can see such clients; it is never
	// accepted.
	ErrLegacy
	// ErrUnknownOption: an option of a type the parser does not know whose
	// action bits (ActionOf) say the packet must be discarded. Error.Type
	// and Error.Action say which action; Error.Offset is the pointer for
	// an ICMP Parameter Problem, code 2 (relative to the header).
	ErrUnknownOption
	// ErrTooManyOptions: more non-padding options than Parser.MaxOptions.
	ErrTooManyOptions
	// ErrOptionData: an LBSP option whose Opt Data Len is not DataLen.
	ErrOptionData
	// ErrDuplicate: the LBSP option appears more than once in a header.
	ErrDuplicate
)

// String returns the counter label of k ("ok" for the zero Kind).
func (k Kind) String() string {
	switch k {
	case 0:
		return "ok"
	case ErrTruncated:
		return "truncated"
	case ErrHeaderLength:
		return "header_length"
	case ErrOptionLength:
		return "option_length"
	case ErrPadding:
		return "padding"
	case ErrLegacy:
		return "legacy_encoding"
	case ErrUnknownOption:
		return "unknown_option_discard"
	case ErrTooManyOptions:
		return "too_many_options"
	case ErrOptionData:
		return "option_data_length"
	case ErrDuplicate:
		return "duplicate_option"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) Error() string { return "lbsp: " + k.String() }

// Malformed reports whether k is a framing error of the header itself, as
// opposed to a well-formed header that is refused for what it carries.
func (k Kind) Malformed() bool {
	switch k {
	case ErrTruncated, ErrHeaderLength, ErrOptionLength, ErrPadding, ErrLegacy:
		return true
	}
	return false
}

// Error is the error returned by Walk, Parser.Parse and ParseOption for a
// header or option that is refused.
type Error struct {
	Kind Kind
	// Offset is the offset, from the first octet of the Destination
	// Options header, of the octet at fault (for an option: its type
	// octet). -1 when no single octet is at fault (e.g. ParseOption).
	Offset int
	// Type is the type of the option at Offset, when the error concerns
	// an option.
	Type   byte
	Detail string
}

func (e *Error) Error() string {
	s := "lbsp: " + e.Kind.String()
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns e.Kind, so errors.Is(err, lbsp.ErrPadding) works.
func (e *Error) Unwrap() error { return e.Kind }

// Action returns the action bits of e.Type (meaningful for
// ErrUnknownOption).
func (e *Error) Action() Action { return ActionOf(e.Type) }

// KindOf returns the Kind of an error from this package, and 0 ("ok") for
// nil or any other error.
func KindOf(err error) Kind {
	var k Kind
	if errors.As(err, &k) {
		return k
	}
	return 0
}
