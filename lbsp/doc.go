// Package lbsp is the codec and socket plumbing of the LBSP ("load
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
// This package only encodes, decodes and sets socket options; it makes no
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
// # Sockets (Linux)
//
// The kernel carries the header; these helpers set and read it. What
// follows was verified on this project's kernel (Linux 6.18, Go 1.26, over
// ::1) by the tests in sockopt_linux_test.go, which are its executable
// record.
//
// Sending. setsockopt(IPPROTO_IPV6, IPV6_DSTOPTS, hdr) makes hdr a sticky
// header (SetDestOpts; DialerControl in net.Dialer.Control). The kernel
// sends it on every packet of the socket, byte for byte, with the real Next
// Header written in. Set before connect, it is on the TCP SYN and every
// later segment; set on a connected socket, it applies from the next
// segment; an empty value removes it. It needs CAP_NET_RAW, checked
// against the calling thread (EPERM otherwise; SetDestOpts then says so and
// its error matches os.ErrPermission): ordinary applications cannot send
// LBSP, only privileged agents and the ADC itself. The per-datagram form,
// an IPV6_DSTOPTS control message on sendmsg (AppendDestOptsCmsg with
// WriteMsgUDP), needs it as well. The kernel checks only the header's
// length, not its options, so SetDestOpts runs Walk first.
//
// UDP receive. setsockopt(IPV6_RECVDSTOPTS, 1) (EnableRecvDestOpts; no
// privilege) makes recvmsg deliver each Destination Options header as a
// control message of level IPPROTO_IPV6, type IPV6_DSTOPTS (59), holding the
// whole header with Next Header 17: ReadMsgUDP's oob goes to
// DestOptsFromCmsg. The RFC 2292 spelling, setsockopt(IPV6_2292DSTOPTS, 1),
// works too and delivers type IPV6_2292DSTOPTS (4); DestOptsFromCmsg takes
// both. An unconnected server answers each client with its own option as a
// per-datagram control message.
//
// TCP, the server reading the SYN. IPV6_RECVDSTOPTS (or IPV6_2292DSTOPTS)
// must be set on the listening socket before the SYN arrives. The kernel
// then keeps the SYN and hands it to the accepted socket, which inherits
// the setting; after accept, getsockopt(IPPROTO_IPV6, IPV6_2292PKTOPTIONS)
// (TCPDestOpts) returns control messages holding the SYN's header (type 59
// or 4, after the option that was set). Setting it on the accepted socket
// only is too late for the SYN (nothing is returned), though it catches
// later segments. What the kernel keeps is the header of the last in-order
// segment received: one carrying a header replaces it, one without clears
// it. A client with a sticky option sends it on every segment, so it stays
// readable; but read it right after accept. IPV6_2292PKTOPTIONS is Linux
// only (RFC 3542 dropped it; the BSDs cannot read a TCP peer's options).
//
// TCP, the server answering. The SYN-ACK carries the listener's sticky
// header, the same for every client, never a per-connection one: with none
// on the listener, the SYN-ACK has none. An accepted socket starts with a
// copy of the listener's sticky header. setsockopt(IPV6_DSTOPTS) on the
// accepted socket applies from the next segment it sends, so the server
// names itself on its first data segment, not on the SYN-ACK.
//
// TCP, the client reading the answer. With IPV6_RECVDSTOPTS set on the
// client socket before connect (DialerControl does), TCPDestOpts on the
// client returns the header of the server's last in-order segment: after
// reading the server's first data, its (client, server) option; right after
// connect, the SYN-ACK's (the listener's sticky header, if any).
//
// None of this applies to a dual-stack socket talking IPv4: there is no
// IPv4 Destination Options header.
//
// # Caveat: networks drop destination options
//
// Measurements (RFC 7872; the 2022 JAMES study) show that paths across the
// Internet drop a noticeable share of packets with Destination Options, and
// more as the header grows (about 93 % of 32-octet headers delivered, 42 %
// of 64-octet ones). The 40-octet header belongs on networks whose path is
// known to carry it; a load balancer must always fall back to ordinary
// persistence when the option is absent.
// # Helpers for applications (Linux)
//
// A client that names itself, learns the server that answered and names it
// in its next connections (Client; Direct sends them straight to that
// server, off by default):
//
//	c := &lbsp.Client{Identity: lbsp.ClientFromAddr(myAddr)}
//	conn, err := c.DialContext(ctx, "[2001:db8::80]:443")
//	// ... read the response ...
//	srv, ok := conn.Learn() // the server named in the reply
//
// A server that reads the client's option and names itself in reply:
//
//	ln, err := lbsp.Listen(ctx, "[::]:443", myAddr, 0)
//	c, err := ln.Accept()
//	opt, ok := c.Option()
//
// A forward proxy passing the client's option on unchanged (its listener
// needs EnableRecvDestOpts before clients connect):
//
//	ctl, err := lbsp.ForwardControl(in, 0)
//	out, err := (&net.Dialer{Control: ctl}).Dial("tcp6", upstream)
//
// All three send the option, so they need CAP_NET_RAW; without it they
// fail with an error that says so. Tests on ::1 (helpers_linux_test.go)
// run them.
package lbsp
