// Package sockmap moves a proxied connection's bytes socket to socket in
// the kernel: an eBPF SK_SKB verdict program on a SOCKHASH redirects every
// skb one socket of a pair receives to the other socket's egress, so no
// byte crosses into user space. It is the data path of the fastl4 virtual
// (F5: the FastL4 profile's ePVA-less software fast path).
//
// The program is written with cilium/ebpf's asm package: nothing is
// generated, nothing needs clang. A Relay (New) owns three maps and the
// program, attached as BPF_SK_SKB_VERDICT (Linux ≥ 5.13):
//
//   - socks: SOCKHASH, socket cookie → socket;
//   - state: per socket, the peer's cookie and two counters the program
//     keeps: bytes redirected, and bytes "passed" (left on the socket);
//   - ctl: per socket, written by user space: bytes it has copied itself
//     (consumed) and the credit (redirect only while redirected ≤ limit).
//
// The program redirects a skb only when no byte of that socket waits in
// user space (passed == consumed, so order is kept) and the credit allows;
// otherwise it passes the skb to the socket's own queue, where user space
// reads it, waits until the destination has taken every redirected byte,
// writes it, and reopens the credit. Flow.Run does that per direction, and
// forwards FINs.
//
// What the kernel does, found by experiment on Linux 6.18 (tests in this
// package keep checking it):
//
//   - Backpressure: an egress redirect does not look at the destination's
//     send buffer. The skb goes onto the destination psock's queue, a
//     workqueue writes it into the socket and retries (every jiffy, or on
//     write space) while the buffer is full. The source socket's receive
//     memory is released as soon as the skb is taken off its queue, so its
//     TCP window stays open: toward a slow reader the queue grows without
//     bound (TestRedirectIgnoresBackpressure: 60-70 MiB within 100 ms; in
//     a longer run MemAvailable fell by 1.3 GiB in 3 s while TCP's own
//     accounting in /proc/net/sockstat stayed at a few MiB). Hence the
//     credit (Options.Window, default 4 MiB): once a direction has that
//     much redirected and not yet taken by the destination, the program
//     passes skbs instead; passed skbs are charged to the source's receive
//     buffer, so the source's window closes and the sender is held back
//     (TestSlowReaderBounded).
//   - Data that was already in a socket's receive queue when the socket
//     joined the map is run through the verdict at once (TestEarlyData):
//     nothing is stranded, nothing has to be read first.
//   - A FIN reaches the program as an empty skb (tcp_read_skb hands it to
//     the verdict), and only a drop is safe for it. Redirected, it goes
//     onto the peer psock's queue; passed, it goes onto this socket's own
//     psock queue whenever that queue holds bytes redirected toward this
//     socket (the other direction) still waiting for send-buffer room.
//     Either way the psock's backlog worker (sk_psock_backlog) later takes
//     the 0-byte result for a hard error: it sets EPIPE on that socket and
//     stops its transmit side, so every later redirect toward it is
//     dropped. That was the reset "at the credit boundary": a side that
//     has sent everything half-closes while the other direction is
//     stalled on it (TestCreditBoundaryBothWays). The program drops empty
//     skbs: the socket has its end of stream (RCV_SHUTDOWN) all the same
//     and reads 0 once the bytes before the FIN are read. The FIN is not
//     forwarded by the kernel: user space sees end of stream (or
//     EPOLLRDHUP), waits until every byte the source received went through
//     the program (tcpi_bytes_received since the hand-off = redirected +
//     passed, plus one for the FIN) and until the destination has taken
//     them all (tcpi_bytes_acked + SIOCOUTQ since the hand-off), and only
//     then shuts the destination down for writing.
//   - A redirect toward a socket that has left the map fails; the program
//     passes the skb (counted), so bytes are never dropped by the program.
//   - Open: both directions at full speed at once with a window that lets
//     the kernel redirect (TestByteExactBothWays, TestCreditBoundaryBothWays)
//     fail now and then (about 1 run in 20-40 here) with bytes from about
//     128 KiB earlier in the stream delivered again. Copying every byte in
//     user space (a window of 1) never does. The runs show receive-queue
//     pruning, retransmissions and DSACKs on loopback; a likely cause, not
//     confirmed, is tcp_read_skb handing the verdict a whole skb whose
//     start overlaps bytes already received (a partial retransmission),
//     which tcp_recvmsg would skip by offset.
//   - A reset arrives as ECONNRESET on the source's read; Run reports it
//     (Result.Reset) and the caller resets the other side.
//
// Nothing here is a package-level variable: every map and program belongs
// to one Relay, closed by its owner.
package sockmap
