package lbsp_test

import (
	"fmt"
	"net/netip"

	"github.com/fulcrum-adc/fulcrum/lbsp"
)

// A client's first packet: its own address as identity, no server yet,
// in a Destination Options header ready for a socket (lbsp.SetDestOpts).
func ExampleBuildDestOpts() {
	opt := lbsp.Option{Client: lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8::c1"))}
	hdr := lbsp.BuildDestOpts(6, opt.Append(nil, lbsp.DefaultType))
	for i := 0; i < len(hdr); i += 8 {
		fmt.Printf("% x\n", hdr[i:i+8])
	}
	// Output:
	// 06 04 01 02 00 00 1e 20
	// 20 01 0d b8 00 00 00 00
	// 00 00 00 00 00 00 00 c1
	// 00 00 00 00 00 00 00 00
	// 00 00 00 00 00 00 00 00
}

// The TLV alone, e.g. to combine with other options in one header.
func ExampleOption_Append() {
	opt := lbsp.Option{
		Client: lbsp.RandomClient(), // anonymous client
		Server: netip.MustParseAddr("2001:db8::5"),
	}
	tlv := opt.Append(nil, 0x3E) // a configured type instead of the default
	fmt.Printf("type 0x%02x, data %d octets, server % x\n", tlv[0], tlv[1], tlv[18:])
	// Output:
	// type 0x3e, data 32 octets, server 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 05
}

// A server reads the client's option and answers with its own address
// filled in, never changing the client's identity.
func ExampleParser_Parse() {
	syn := lbsp.BuildDestOpts(6, lbsp.Option{
		Client: lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8::c1")),
	}.Append(nil, lbsp.DefaultType))

	var p lbsp.Parser // DefaultType, at most 8 options, action bits enforced
	r, err := p.Parse(syn)
	if err != nil {
		fmt.Println("refused:", lbsp.KindOf(err))
		return
	}
	fmt.Println("found:", r.Found, "at offset", r.Offset, "-", r.Option)

	reply := lbsp.Option{Client: r.Option.Client, Server: netip.MustParseAddr("2001:db8::5")}
	r, _ = p.Parse(lbsp.BuildDestOpts(6, reply.Append(nil, lbsp.DefaultType)))
	fmt.Println("reply:", r.Option)
	// Output:
	// found: true at offset 6 - client=2001:db8::c1 server=-
	// reply: client=2001:db8::c1 server=2001:db8::5
}

// The option data alone (as Walk reports it) decodes with ParseOption.
func ExampleParseOption() {
	hdr := lbsp.BuildDestOpts(17, lbsp.Option{
		Client: lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8::c1")),
		Server: netip.MustParseAddr("2001:db8::5"),
	}.Append(nil, lbsp.DefaultType))
	lbsp.Walk(hdr, func(o lbsp.TLV) error {
		if o.Type != lbsp.DefaultType {
			fmt.Printf("offset %d: padding type 0x%02x\n", o.Offset, o.Type)
			return nil
		}
		opt, err := lbsp.ParseOption(o.Data)
		fmt.Printf("offset %d: %v %v\n", o.Offset, opt, err)
		return nil
	})
	// Output:
	// offset 2: padding type 0x01
	// offset 6: client=2001:db8::c1 server=2001:db8::5 <nil>
}

// Refusals carry a Kind to count them by.
func ExampleKindOf() {
	seed := []byte{6, 4, 0x01, 0x04} // the seed's literal bytes: type 1 is PadN
	seed = append(seed, netip.MustParseAddr("2001:db8::c1").AsSlice()...)
	seed = append(seed, make([]byte, 16)...)
	seed = append(seed, 0x01, 0x02, 0x00, 0x00)

	counters := map[string]int{}
	for _, hdr := range [][]byte{
		seed,
		{6, 0, 0x51, 4, 0, 0, 0, 0}, // unknown option, action "discard"
		{6, 1, 1, 4, 0, 0, 0, 0},    // Hdr Ext Len says 16 octets
		lbsp.BuildDestOpts(6),       // no option: not an error
	} {
		_, err := lbsp.Parser{}.Parse(hdr)
		k := lbsp.KindOf(err)
		counters[k.String()]++
		fmt.Printf("%-22s malformed=%v  %v\n", k.String(), k.Malformed(), err)
	}
	fmt.Println(counters)
	// Output:
	// legacy_encoding        malformed=true  lbsp: legacy_encoding at offset 2: seed's literal LBSP encoding (type 1 is PadN); not accepted
	// unknown_option_discard malformed=false  lbsp: unknown_option_discard at offset 2: unknown option type 0x51, action discard
	// truncated              malformed=true  lbsp: truncated at offset 8: 8 octets, Hdr Ext Len 1 says 16
	// ok                     malformed=false  <nil>
	// map[legacy_encoding:1 ok:1 truncated:1 unknown_option_discard:1]
}
