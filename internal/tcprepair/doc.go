// Package tcprepair moves established TCP connections between hosts with
// Linux's TCP repair mode (TCP_REPAIR, Linux ≥ 3.5; TCP_REPAIR_WINDOW ≥
// 4.8): the building block of connection mirroring for HA failover.
//
// # What it does
//
// Dump reads an established socket's whole state: both sequence numbers,
// the bytes written and not yet acknowledged (sent or not), the bytes
// received and not yet read, the options negotiated in the handshake (MSS,
// window scales, SACK, timestamps), the timestamp clock and the windows.
// Restore creates, on another host (or in another namespace, or process),
// a socket with that state: bound to the same local address even if this
// host does not have it yet, connected to the same peer without a
// handshake, its queues refilled. The peer notices nothing but a pause.
// CloseSilently closes the old socket without a FIN, RST or TIME_WAIT, and
// Resume calls a move off.
//
// Snapshot is the cheap, live variant for mirroring: taken once when a
// connection is set up, it records the sequence numbers, options and
// timestamp without the queues and without disturbing the connection
// (about 20 µs, 12 system calls, BenchmarkSnapshot). A standby that also
// learns what the active wrote and read since can build a State by hand
// and Restore it after the active died (see Restore for the rules).
//
// # A planned move
//
// The order of operations follows CRIU's libsoccr (soccr/soccr.c), the
// reference implementation; passt does the same for VM migration:
//
//	old host:  hold the flow (internal/flowhold)   no peer packet reaches the socket, no RST leaves
//	           Dump                                  the socket stays in repair mode
//	           CloseSilently; remove the address
//	new host:  Restore (NoWindowProbe)              before the address is added, or under a hold
//	           add the address, announce it (gratuitous ARP / unsolicited NA)
//	           release any hold; Probe              the peer answers at once with its ACK and window
//
// A restored socket may exist before its address does (IP_FREEBIND, and
// IP_TRANSPARENT for the connect): then nothing can draw a RST from the
// new host and it needs no hold. The tests move busy connections (4 MB
// each way, unread and unacknowledged bytes in the queues) between network
// namespaces over a bridge for IPv4, IPv6 and IPv4-mapped sockets, and
// check every byte.
//
// # Limits
//
// Only ESTABLISHED sockets (half-closed ones, which CRIU restores with
// forged FIN packets, are refused), without pending urgent data. The SACK
// scoreboard, congestion state, RTT estimate and out-of-order queue are
// not moved: the restored socket starts with the initial congestion window
// and retransmission timeout, and the peer resends what only the old
// socket's out-of-order queue held. Nothing else may use a connection
// while it is in repair mode: the kernel refuses reads and writes then.
//
// # Privileges
//
// Repair mode needs CAP_NET_ADMIN (in the user namespace owning the
// socket's network namespace); errors for EPERM say so.
package tcprepair
