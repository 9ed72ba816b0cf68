package lbsp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

// lbspTLV is an LBSP option (client 2001:db8::c1, server 2001:db8::5) of
// type typ.
func lbspTLV(typ byte) []byte {
	return Option{
		Client: ClientFromAddr(netip.MustParseAddr("2001:db8::c1")),
		Server: netip.MustParseAddr("2001:db8::5"),
	}.Append(nil, typ)
}

// hdr assembles a Destination Options header: Next Header 6, then body,
// with Hdr Ext Len computed. It panics unless the total is a multiple of 8
// (tests of bad lengths write their bytes out).
func hdr(body ...[]byte) []byte {
	h := []byte{6, 0}
	for _, b := range body {
		h = append(h, b...)
	}
	if len(h)%8 != 0 {
		panic(fmt.Sprintf("test header of %d octets", len(h)))
	}
	h[1] = byte(len(h)/8 - 1)
	return h
}

func pad1(n int) []byte { return make([]byte, n) }

// padN is one PadN option of n octets in all (n >= 2).
func padN(n int) []byte { return append([]byte{TypePadN, byte(n - 2)}, make([]byte, n-2)...) }

// opt is an option of type t with n octets of data (0xAA).
func opt(t byte, n int) []byte { return append([]byte{t, byte(n)}, bytes.Repeat([]byte{0xAA}, n)...) }

func TestBuildDestOptsLBSPLayout(t *testing.T) {
	o := Option{
		Client: ClientFromAddr(netip.MustParseAddr("fd00:1::1")),
	}
	got := BuildDestOpts(6, o.Append(nil, DefaultType))
	// The lab SYN of research/packet_anchors.md §2.3 (Linux sent exactly this).
	want := []byte{0x06, 0x04, 0x01, 0x02, 0x00, 0x00, 0x1e, 0x20,
		0xfd, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  %x\nwant %x", got, want)
	}
	if len(got) != HeaderLen {
		t.Fatalf("len %d, want HeaderLen %d", len(got), HeaderLen)
	}
	if e := BuildDestOpts(59); !bytes.Equal(e, []byte{59, 0, 1, 4, 0, 0, 0, 0}) {
		t.Fatalf("empty header %x", e)
	}
}

// TestBuildDestOptsAlignment builds headers with options of every data
// length up to 255, alone and after a first option of every small length,
// so that every size of padding (0 to 7) occurs in the gaps and the tail,
// and checks alignment, length and that Walk accepts them.
func TestBuildDestOptsAlignment(t *testing.T) {
	gaps := map[int]bool{}
	for first := -1; first <= 9; first++ {
		for n := 0; n <= 255; n++ {
			var opts [][]byte
			if first >= 0 {
				opts = append(opts, opt(0x11, first))
			}
			opts = append(opts, opt(0x12, n))
			h := BuildDestOpts(17, opts...)
			if len(h)%8 != 0 || int(h[1]) != len(h)/8-1 || h[0] != 17 {
				t.Fatalf("first %d, n %d: bad length/header %x", first, n, h[:2])
			}
			var seen []TLV
			err := Walk(h, func(o TLV) error { seen = append(seen, o); return nil })
			if err != nil {
				t.Fatalf("first %d, n %d: %v\n%x", first, n, err, h)
			}
			next, i := 2, 0
			for _, o := range seen {
				size := 1
				if o.Type != TypePad1 {
					size = 2 + len(o.Data)
				}
				if o.Offset != next {
					t.Fatalf("option at %d, want %d", o.Offset, next)
				}
				next += size
				if o.Type == TypePad1 || o.Type == TypePadN {
					continue
				}
				if o.Offset%8 != 6 {
					t.Fatalf("first %d, n %d: option 0x%02x at %d, not 8n+6", first, n, o.Type, o.Offset)
				}
				if !bytes.Equal(append([]byte{o.Type, byte(len(o.Data))}, o.Data...), opts[i]) {
					t.Fatalf("option %d changed", i)
				}
				i++
			}
			if i != len(opts) || next != len(h) {
				t.Fatalf("first %d, n %d: saw %d options ending at %d", first, n, i, next)
			}
			// Record the padding sizes used between/after options.
			run := 0
			for _, o := range seen {
				switch o.Type {
				case TypePad1:
					run++
				case TypePadN:
					run += 2 + len(o.Data)
				default:
					gaps[run] = true
					run = 0
				}
			}
			gaps[run] = true
		}
	}
	for n := 0; n <= 7; n++ {
		if !gaps[n] {
			t.Errorf("no header used %d octets of padding", n)
		}
	}
}

func TestBuildDestOptsPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts [][]byte
	}{
		{"short", [][]byte{{0x1e}}},
		{"length mismatch", [][]byte{{0x1e, 3, 0, 0}}},
		{"Pad1", [][]byte{{0}}},
		{"PadN", [][]byte{{1, 0}}},
		{"too big", [][]byte{opt(0x11, 255), opt(0x11, 255), opt(0x11, 255), opt(0x11, 255),
			opt(0x11, 255), opt(0x11, 255), opt(0x11, 255), opt(0x11, 255)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			BuildDestOpts(6, tc.opts...)
		})
	}
	// The largest header that fits: 2048 octets.
	h := BuildDestOpts(6, opt(0x11, 255), opt(0x11, 255), opt(0x11, 255), opt(0x11, 255),
		opt(0x11, 255), opt(0x11, 255), opt(0x11, 255), opt(0x11, 192))
	if len(h) != 2048 || h[1] != 255 {
		t.Fatalf("len %d, Hdr Ext Len %d", len(h), h[1])
	}
	if _, err := (Parser{}).Parse(h); err != nil {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	l := lbspTLV(DefaultType)
	want := Option{
		Client: ClientFromAddr(netip.MustParseAddr("2001:db8::c1")),
		Server: netip.MustParseAddr("2001:db8::5"),
	}
	for _, tc := range []struct {
		name    string
		p       Parser
		h       []byte
		kind    Kind // 0: no error
		offset  int  // of the LBSP option, or of the error
		found   bool
		skipped int
		action  Action // for ErrUnknownOption
	}{
		{name: "built", h: BuildDestOpts(6, l), found: true, offset: 6},
		{name: "at start, misaligned", h: hdr(l, padN(4)), found: true, offset: 2},
		{name: "in the middle", h: hdr(opt(0x11, 2), l, opt(0x12, 4), padN(2)), found: true, offset: 6, skipped: 2},
		{name: "at the end", h: hdr(opt(0x11, 10), l), found: true, offset: 14, skipped: 1},
		{name: "after Pad1s", h: hdr(pad1(4), l), found: true, offset: 6},
		{name: "Pad1 then PadN", h: hdr(pad1(1), padN(3), l), found: true, offset: 6},

		// Padding of every size.
		{name: "no options, PadN(6)", h: hdr(padN(6)), offset: -1},
		{name: "no options, 6 Pad1", h: hdr(pad1(6)), offset: -1},
		{name: "7 Pad1", h: hdr(pad1(7), opt(0x11, 5)), offset: -1, skipped: 1},
		{name: "PadN(7)", h: hdr(padN(7), opt(0x11, 5)), offset: -1, skipped: 1},
		{name: "PadN(2)+Pad1+PadN(4)", h: hdr(padN(2), pad1(1), padN(4), opt(0x11, 5)), offset: -1, skipped: 1},
		{name: "8 Pad1", h: hdr(pad1(8), opt(0x11, 4)), kind: ErrPadding, offset: 9},
		{name: "PadN(8)", h: hdr(padN(8), opt(0x11, 4)), kind: ErrPadding, offset: 2},
		{name: "PadN(7)+Pad1", h: hdr(padN(7), pad1(1), opt(0x11, 4)), kind: ErrPadding, offset: 9},
		{name: "Pad1+PadN(7)", h: hdr(pad1(1), padN(7), opt(0x11, 4)), kind: ErrPadding, offset: 3},
		{name: "padding runs reset by an option", h: hdr(padN(6), opt(0x11, 0), padN(6)), offset: -1, skipped: 1},
		{name: "PadN with data", h: hdr([]byte{1, 4, 0, 0, 1, 0}), kind: ErrPadding, offset: 2},
		{name: "trailing padding too long", h: hdr(l, padN(6), padN(6)), kind: ErrPadding, offset: 42},

		// Unknown options, by action bits.
		{name: "unknown skip", h: hdr(opt(0x11, 4)), offset: -1, skipped: 1},
		{name: "unknown skip, may change", h: hdr(opt(0x31, 4)), offset: -1, skipped: 1},
		{name: "unknown discard", h: hdr(opt(0x51, 4)), kind: ErrUnknownOption, offset: 2, action: ActionDiscard},
		{name: "unknown discard+icmp", h: hdr(padN(2), opt(0x91, 2)), kind: ErrUnknownOption, offset: 4, action: ActionDiscardICMP},
		{name: "unknown discard+icmp unicast", h: hdr(opt(0xD1, 4)), kind: ErrUnknownOption, offset: 2, action: ActionDiscardICMPUnicast},
		{name: "Home Address is unknown here", h: hdr(padN(4), opt(0xC9, 16)), kind: ErrUnknownOption, offset: 6, action: ActionDiscardICMPUnicast},
		{name: "unknown discard after LBSP", h: hdr(l, opt(0x51, 2)), kind: ErrUnknownOption, offset: 36, action: ActionDiscard},
		{name: "kernel-checked skips all", p: Parser{KernelChecked: true},
			h: hdr(opt(0x51, 2), l, opt(0x91, 0), opt(0xD1, 0), pad1(4)), found: true, offset: 6, skipped: 3},

		// The configured type.
		{name: "other type configured", p: Parser{Type: 0xDE}, h: hdr(lbspTLV(0xDE), padN(4)), found: true, offset: 2},
		{name: "default type is unknown then", p: Parser{Type: 0x5E}, h: BuildDestOpts(6, l), offset: -1, skipped: 1},
		{name: "0xDE with action 11, unconfigured", h: hdr(lbspTLV(0xDE), padN(4)), kind: ErrUnknownOption, offset: 2, action: ActionDiscardICMPUnicast},

		// Bad lengths.
		{name: "zero-length header", h: []byte{}, kind: ErrTruncated, offset: 0},
		{name: "one octet", h: []byte{6}, kind: ErrTruncated, offset: 1},
		{name: "fixed part only", h: []byte{6, 0}, kind: ErrTruncated, offset: 2},
		{name: "Hdr Ext Len says 16", h: []byte{6, 1, 1, 4, 0, 0, 0, 0}, kind: ErrTruncated, offset: 8},
		{name: "truncated LBSP header", h: BuildDestOpts(6, l)[:36], kind: ErrTruncated, offset: 36},
		{name: "not a multiple of 8", h: []byte{6, 0, 1, 4, 0, 0, 0, 0, 0}, kind: ErrHeaderLength, offset: 8},
		{name: "longer than Hdr Ext Len", h: append(hdr(padN(6)), hdr(padN(6))...), kind: ErrHeaderLength, offset: 8},
		{name: "option past the end", h: []byte{6, 0, 0x11, 5, 0, 0, 0, 0}, kind: ErrOptionLength, offset: 2},
		{name: "LBSP past the end", h: append([]byte{6, 4, 1, 2, 0, 0, 0x1e, 0x21}, make([]byte, 32)...), kind: ErrOptionLength, offset: 6},
		{name: "type without length", h: []byte{6, 0, 1, 3, 0, 0, 0, 0x11}, kind: ErrOptionLength, offset: 7},
		{name: "LBSP data 16 octets", h: hdr(padN(4), opt(DefaultType, 16)), kind: ErrOptionData, offset: 6},
		{name: "LBSP data 0 octets", h: hdr(opt(DefaultType, 0), padN(4)), kind: ErrOptionData, offset: 2},
		{name: "duplicate LBSP", h: hdr(padN(4), l, l, padN(6)), kind: ErrDuplicate, offset: 40},
		{name: "seed's literal encoding", h: legacyHeader(), kind: ErrLegacy, offset: 2},

		// Option count.
		{name: "8 options", h: hdr(opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0),
			opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), pad1(6)), offset: -1, skipped: 8},
		{name: "9 options", h: hdr(opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0),
			opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), pad1(4)), kind: ErrTooManyOptions, offset: 18},
		{name: "9 options, no limit", p: Parser{MaxOptions: -1}, h: hdr(opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0),
			opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), opt(0x11, 0), pad1(4)), offset: -1, skipped: 9},
		{name: "LBSP counts", p: Parser{MaxOptions: 1}, h: hdr(l, opt(0x11, 2)), kind: ErrTooManyOptions, offset: 36},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.p.Parse(tc.h)
			if tc.kind != 0 {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("got %v, %+v; want an *Error of kind %v", err, r, tc.kind)
				}
				if e.Kind != tc.kind || e.Offset != tc.offset || !errors.Is(err, tc.kind) || KindOf(err) != tc.kind {
					t.Fatalf("got %v (kind %v, offset %d); want kind %v at %d", err, e.Kind, e.Offset, tc.kind, tc.offset)
				}
				if tc.kind == ErrUnknownOption && e.Action() != tc.action {
					t.Fatalf("action %v, want %v", e.Action(), tc.action)
				}
				if r != (Result{}) {
					t.Fatalf("Result %+v on error", r)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%x", err, tc.h)
			}
			if r.Found != tc.found || r.Offset != tc.offset || r.Skipped != tc.skipped || r.NextHeader != 6 {
				t.Fatalf("got %+v; want found %v at %d, %d skipped", r, tc.found, tc.offset, tc.skipped)
			}
			if r.Found && r.Option != want {
				t.Fatalf("option %v, want %v", r.Option, want)
			}
		})
	}
}

func TestParserRefusesPaddingType(t *testing.T) {
	for _, typ := range []byte{TypePadN} {
		_, err := Parser{Type: typ}.Parse(BuildDestOpts(6))
		if err == nil || KindOf(err) != 0 {
			t.Fatalf("Type 0x%02x: got %v; want a configuration error (Kind ok)", typ, err)
		}
	}
}

func TestWalkReportsEveryOption(t *testing.T) {
	h := hdr(pad1(1), opt(0x91, 1), lbspTLV(DefaultType), opt(0x11, 0), padN(6))
	var got []string
	if err := Walk(h, func(o TLV) error {
		got = append(got, fmt.Sprintf("%d:%02x/%d", o.Offset, o.Type, len(o.Data)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := "[2:00/0 3:91/1 6:1e/32 40:11/0 42:01/4]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	// An error from fn stops the walk and is returned as is.
	stop := errors.New("stop")
	n := 0
	if err := Walk(h, func(TLV) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("got %v after %d calls", err, n)
	}
}

func TestExtHeaderLen(t *testing.T) {
	if n, err := ExtHeaderLen([]byte{17, 4, 0xff}); n != 40 || err != nil {
		t.Fatalf("got %d, %v", n, err)
	}
	if _, err := ExtHeaderLen([]byte{17}); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v", err)
	}
}

func TestActionBits(t *testing.T) {
	// The RFC 4727 experimental values: low bits 11110, every action and
	// change combination.
	for i, typ := range []byte{0x1E, 0x3E, 0x5E, 0x7E, 0x9E, 0xBE, 0xDE, 0xFE} {
		if a, c := ActionOf(typ), MayChange(typ); a != Action(i/2) || c != (i%2 == 1) {
			t.Errorf("0x%02x: action %v change %v", typ, a, c)
		}
	}
	if ActionOf(DefaultType) != ActionSkip || MayChange(DefaultType) {
		t.Error("DefaultType must be skip and not changing")
	}
	for a, s := range map[Action]string{ActionSkip: "skip", ActionDiscard: "discard",
		ActionDiscardICMP: "discard+icmp", ActionDiscardICMPUnicast: "discard+icmp-if-unicast", 4: "action(4)"} {
		if a.String() != s {
			t.Errorf("%d: %q", a, a.String())
		}
	}
}

func TestKinds(t *testing.T) {
	seen := map[string]bool{}
	for k := Kind(0); k <= ErrDuplicate; k++ {
		s := k.String()
		if seen[s] {
			t.Errorf("label %q used twice", s)
		}
		seen[s] = true
		wantMalformed := k >= ErrTruncated && k <= ErrLegacy
		if k.Malformed() != wantMalformed {
			t.Errorf("%v.Malformed() = %v", k, k.Malformed())
		}
	}
	if KindOf(nil) != 0 || KindOf(errors.New("x")) != 0 || KindOf(fmt.Errorf("w: %w", ErrPadding)) != ErrPadding {
		t.Error("KindOf")
	}
	e := &Error{Kind: ErrUnknownOption, Offset: 4, Type: 0x91, Detail: "d"}
	if e.Error() != "lbsp: unknown_option_discard at offset 4: d" {
		t.Errorf("%q", e.Error())
	}
	if Kind(200).String() != "kind(200)" {
		t.Error(Kind(200).String())
	}
}
