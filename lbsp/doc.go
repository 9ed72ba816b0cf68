// Package lbsp is the codec of the LBSP ("load
// balancing and session persistence") IPv6 Destination Option: an option in
// which a client names itself, and the server that answers names itself,
// so that a load balancer can keep a client on one server across
// connections, protocols (HTTP then HTTPS) and megaproxies that change the
// source address, without delayed binding or cookies. The idea comes from
// C. J. Liu's "Single Pass Load Balancing with Session Persistence in IPv6
// Network" (seed 002); the wire format is DESIGN.md §6.
//
// # Patents: off by default
//
// The method is covered by active patents assigned to Comcast, inventor
// Chia J. Liu: US 8,819,275 ("Load Balancing and Session Persistence in
// Packet Networks") and US 9,553,899 ("Single pass load balancing and
// session persistence in packet networks"), with continuations and foreign
// counterparts (see research/packet_anchors.md §4.1). Fulcrum ships the
// feature disabled: nothing in Fulcrum uses this package unless a virtual
// server opts in, and whoever enables it should have had a legal review.
// This package only encodes and decodes the option; it makes no
// load-balancing decision.
//
// # Wire format
//
// The seed's literal encoding (option type 1, Opt Data Len "4 in 8-octet
// units") is not valid RFC 8200: type 1 is PadN, Opt Data Len counts
// octets, and Linux drops such packets as malformed padding (counted in
// Ip6InHdrErrors). This package never emits it; Walk reports it as
// ErrLegacy so it can be counted. Instead:
//
//	offset 0   Next Header | Hdr Ext Len = 4
//	       2   PadN(2): 01 02 00 00
//	       6   Option Type (default 0x1E) | Opt Data Len = 0x20 (32)
//	       8   Client identity, 16 octets: client IPv6 address or random
//	      24   Responding server address, 16 octets, or all zero (not set)
//	      40   (end; the header is 5 × 8 octets)
//
// The option type is configurable (Parser.Type, the optType argument of
// Option.Append) and defaults to DefaultType, 0x1E, an RFC 4727
// experimental value with action "skip if unknown" and "does not change en
// route", so a destination that does not know LBSP delivers the packet. The
// option's alignment requirement is 8n+6 (both addresses 8-octet aligned);
// BuildDestOpts places every option there.
//
// Parsing is strict, per RFC 8200 and as Linux receives (Walk, Parser): the
// header must be exactly as long as its Hdr Ext Len says, no option may run
// past it, PadN data must be zero, no more than 7 octets of padding in a
// row, unknown options are skipped or refused by their action bits, and the
// LBSP option is found wherever it is in the header. Refusals are *Error
// values whose Kind is a label for a counter.
//
// # Caveat: networks drop destination options
//
// Measurements (RFC 7872; the 2022 JAMES study) show that paths across the
// Internet drop a noticeable share of packets with Destination Options, and
// more as the header grows (about 93 % of 32-octet headers delivered, 42 %
// of 64-octet ones). The 40-octet header belongs on networks whose path is
// known to carry it; a load balancer must always fall back to ordinary
// persistence when the option is absent.
package lbsp
