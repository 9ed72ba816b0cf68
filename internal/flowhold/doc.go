// Package flowhold stops a TCP flow's packets at the kernel while the flow's
// socket is moved to another host (connection mirroring and planned HA
// failover with TCP repair, see internal/tcprepair).
//
// # Why
//
// While a socket's state is being dumped, carried and restored, nothing may
// change it and nothing may tell the peer it is gone. A peer segment that
// reaches the old socket after the dump would be acknowledged by a socket
// that no longer counts; one that reaches the new host before the restore
// would be answered with a RST by a kernel that has no socket for it; and a
// socket closed the ordinary way sends a FIN or RST. CRIU and passt solve
// this the same way: a netfilter rule drops the peer's packets and the local
// RSTs for the duration (CRIU's "network lock"). Dropped packets are not
// lost to the connection: the peer retransmits them when its retransmission
// timer fires, which is what the caller pays for a hold (the peer's RTO,
// backed off for as long as the hold lasted; tcprepair.Probe shortens it).
//
// # What it installs
//
// A Holder owns one nftables table of the inet family (both IP versions) in
// the network namespace of the thread that called New. Every Hold or
// HoldFlows call adds its own two base chains (a prerouting chain at the
// raw priority -300, before conntrack, so a held packet creates and updates
// no conntrack state; and an output chain at the same priority) and its own
// named sets, and its release function deletes exactly those, so holds that
// overlap (the same address held twice) are released independently. Per
// hold, inbound:
//
//	meta nfproto ipv4 meta l4proto tcp ip daddr @hN_a4 tcp flags & (syn|ack) != syn counter drop
//	meta nfproto ipv6 meta l4proto tcp ip6 daddr @hN_a6 tcp flags & (syn|ack) != syn counter drop
//
// (pure SYNs still pass: new connections keep reaching listeners) and
// outbound:
//
//	meta nfproto ipv4 meta l4proto tcp ip saddr @hN_a4 tcp flags & rst != 0 counter drop
//
// HoldFlows matches exact 4-tuples with one hash set per IP version whose
// key is the concatenation local address . local port . remote address .
// remote port (inbound packets load daddr . dport . saddr . sport, outbound
// ones saddr . sport . daddr . dport), so one rule per IP version and
// direction serves any number of flows; it drops every inbound packet of
// the flows, SYNs included, and their outbound RSTs.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, as a dual-stack socket
// reports them) are matched as the IPv4 packets they are on the wire.
//
// # Ownership
//
// New deletes a table of the same name left behind by a process that
// crashed, then creates it afresh; Close deletes it. So at most one Fulcrum
// process per network namespace may own a given table name. A crash
// leaves the table, and its drops, in place until the next New: a flow
// held when the process died stays frozen (the peer eventually gives up)
// rather than being reset.
//
// The Holder's netlink socket is opened in the namespace of the thread
// that called New, so its methods may be called from any goroutine.
//
// # Privileges
//
// Changing nftables needs CAP_NET_ADMIN in the namespace's user namespace.
//
// # Equivalents
//
// CRIU's network lock (nftables table "CRIU" with per-connection rules, or
// iptables), passt's migration, and F5's connection mirroring which keeps
// the standby's flows quiet until it takes over.
package flowhold
