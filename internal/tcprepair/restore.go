package tcprepair

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Buffer sizing for the restored queues (see sizeBuffers).
const (
	bufSlack     = 256 << 10
	minChunk     = 1 << 10 // smallest repair-mode send before giving up for lack of memory
	maxSendCalls = 1 << 20 // bound on send calls per queue
)

// Restore creates a socket in the calling thread's network namespace with
// s's state and returns it as an established connection usable with Go's
// netpoller. The order of operations is CRIU's (soccr/soccr.c):
//
//  1. socket of s.Local's family (AF_INET6 for IPv4-mapped addresses),
//     TCP_REPAIR on, SO_REUSEADDR, IP(V6)_FREEBIND (the address may not be
//     configured here yet), SO_MARK, SO_SNDBUF if the send queue needs
//     more;
//  2. bind to s.Local; set both queues' TCP_QUEUE_SEQ (only possible
//     before connect);
//  3. connect to s.Remote: in repair mode it goes straight to ESTABLISHED
//     and sends nothing (IP(V6)_TRANSPARENT is on for the connect only, as
//     IPv4 routing refuses a source address that is not local);
//  4. TCP_REPAIR_OPTIONS (MSS, window scales, SACK, timestamps: only
//     possible once established) and TCP_TIMESTAMP;
//  5. the receive queue (RecvQueue, as if received and acknowledged), then
//     the sent part of the send queue (as if sent and not yet acknowledged);
//  6. TCP_REPAIR_WINDOW when s.HasWindow (after the receive queue: the
//     kernel refuses an RcvWup beyond rcv_nxt, which the queue advances);
//  7. TCP_REPAIR off, with a window probe unless o.NoWindowProbe;
//  8. the Unsent bytes, written normally: the kernel sends them when the
//     window allows.
//
// Restored segments count as retransmitted (the kernel takes no RTT
// sample from them), and the socket has no SACK scoreboard, congestion
// state or RTT estimate: it starts with the initial congestion window (10
// segments) and a 1 s retransmission timeout, as a new connection would.
// The restored sent-but-unacknowledged bytes all count as in flight, so
// nothing new (the Unsent bytes included) goes out before the peer's first
// ACK frees the congestion window: a window probe (Restore's, or Probe
// once the peer's packets reach this host) makes that ACK come at once.
//
// If the send queue is larger than the default send buffer holds (or the
// receive queue larger than the kernel grows the receive buffer for,
// tcp_rmem[2]), Restore sets SO_SNDBUFFORCE (SO_RCVBUFFORCE) to fit, which
// turns off the kernel's autotuning of that buffer for the connection.
//
// # Building a State by hand
//
// A State need not come from Dump. A standby that mirrored a connection
// (a Snapshot when it was set up, then the traffic since) builds one; the
// fields must agree with what the peer has seen:
//
//   - SendSeq + len(SendQueue) is the sequence number of the next new byte
//     (snap.SendSeq + bytes written since). SendQueue must include every
//     byte the peer may not have acknowledged (from snap.SendSeq, if the
//     standby does not know what was acknowledged); bytes the peer already
//     has are harmless (resent and dropped as duplicates), missing ones
//     corrupt the stream. Keep them as sent (Unsent 0): bytes the peer
//     has, restored as unsent, would make its ACKs acknowledge data the
//     socket has not sent, which the kernel discards.
//   - RecvSeq is the sequence number of the next byte the application will
//     read (snap.RecvSeq + bytes read since); RecvQueue the bytes received
//     after that. If the old socket acknowledged bytes the State lacks, the
//     connection hangs: the peer never resends them.
//   - Timestamp must be at or just above the last TSval the peer saw:
//     snap.Timestamp advanced (AdvanceTimestamp) by the time from the
//     snapshot to when the old host last sent, plus a few milliseconds.
//     Behind it, the peer's PAWS check drops the restored socket's
//     segments; far ahead of it, the first RTT sample, which comes from
//     the peer echoing its last TSval from the old host, is that far too
//     long, and so is the retransmission timeout (a 1 s margin cost 2-4 s
//     of stall in the tests, 5 ms about 0.3 s).
//   - Window: either HasWindow false (the kernel's defaults from connect:
//     snd_wnd, snd_wl1 and max_window 0, a fresh receive window) together
//     with a window probe, whose answer sets the send window; or HasWindow
//     true with the snapshot's window and SndWl1 and RcvWup moved to the
//     new rcv_nxt (RecvSeq + len(RecvQueue)). The snapshot's SndWl1 and
//     RcvWup as they are work only while the peer has sent less than 2 GiB
//     since: the kernel refuses an RcvWup after rcv_nxt, and sequence
//     comparisons wrap. Without a probe, a restored socket with the kernel's
//     window and nothing in flight waits for zero-window probing before it
//     sends (3 s in the tests).
//
// Bytes of SendQueue the peer never got are resent only when the
// retransmission timer fires (0.2-0.4 s after the restore in the tests),
// since no later segment can reach the peer and draw a SACK. To send them
// at once: after the peer's first ACK (SIOCOUTQ drops), hold the flow,
// Dump the restored socket (its SendQueue now starts at what the peer
// acknowledged), CloseSilently it, set Unsent = len(SendQueue), Restore
// again, release and Probe (about 3 ms in the tests).
func Restore(s *State, o RestoreOptions) (*net.TCPConn, error) {
	if err := validate(s); err != nil {
		return nil, err
	}
	v6 := !s.Local.Addr().Is4()
	local, err := sockaddr(s.Local, v6)
	if err != nil {
		return nil, &Error{Op: "local address", Err: err}
	}
	remote, err := sockaddr(s.Remote, v6)
	if err != nil {
		return nil, &Error{Op: "remote address", Err: err}
	}
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, opErr("socket", err)
	}
	// A failure closes the socket in repair mode, which sends nothing:
	// repair mode is on from the first step until after the handover to
	// the netpoller, and turned on again if the failure comes later.
	fdOpen := true
	var conn *net.TCPConn
	fail := func(err error) (*net.TCPConn, error) {
		if fdOpen {
			_ = unix.Close(fd)
		}
		if conn != nil {
			_ = withFD(conn, repairOn)
			_ = conn.Close()
		}
		return nil, err
	}

	// Repair mode makes bind ignore every conflict (SK_FORCE_REUSE), a
	// listener on the same address and port included; SO_REUSEADDR after
	// it would undo that. It is set once repair mode is off instead.
	if err := repairOn(fd); err != nil {
		return fail(err)
	}
	if v6 {
		if s.Local.Addr().Is4In6() {
			if err := setInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0, "IPV6_V6ONLY"); err != nil {
				return fail(err)
			}
		}
		if err := setInt(fd, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1, "IPV6_FREEBIND"); err != nil {
			return fail(err)
		}
	} else if err := setInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1, "IP_FREEBIND"); err != nil {
		return fail(err)
	}
	if o.Mark != 0 {
		if err := setInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark), "SO_MARK"); err != nil {
			return fail(err)
		}
	}
	if err := sizeBuffers(fd, s); err != nil {
		return fail(err)
	}
	if o.RecvBuffer > 0 {
		if err := setInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.RecvBuffer, "SO_RCVBUFFORCE"); err != nil {
			return fail(err)
		}
	}
	// The MSS before connect: the repaired connect computes the segment
	// size from it (set only afterwards, as an option, the socket would
	// send 536-byte segments until the path MTU changed).
	if s.MSS > 0 {
		if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, int(s.MSS), "TCP_MAXSEG"); err != nil {
			return fail(err)
		}
	}
	if err := unix.Bind(fd, local); err != nil {
		return fail(opErr(fmt.Sprintf("bind %v", s.Local), err))
	}
	if err := setQueueSeq(fd, tcpRecvQueue, s.RecvSeq); err != nil {
		return fail(err)
	}
	if err := setQueueSeq(fd, tcpSendQueue, s.SendSeq); err != nil {
		return fail(err)
	}
	// IP_FREEBIND lets bind take an address this host does not have
	// (yet), but IPv4's route lookup at connect still refuses a non-local
	// source unless the socket is transparent; so it is, for the connect
	// only. Packets the socket sends later are routed again once the
	// address is added.
	transparentLevel, transparentOpt, transparentName := unix.IPPROTO_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
	if v6 {
		transparentLevel, transparentOpt, transparentName = unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
	}
	if err := setInt(fd, transparentLevel, transparentOpt, 1, transparentName); err != nil {
		return fail(err)
	}
	if err := unix.Connect(fd, remote); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return fail(opErr(fmt.Sprintf("connect %v", s.Remote), err))
	}
	if err := setInt(fd, transparentLevel, transparentOpt, 0, transparentName); err != nil {
		return fail(err)
	}
	if err := setOptions(fd, s); err != nil {
		return fail(err)
	}
	if err := restoreQueues(fd, s); err != nil {
		return fail(err)
	}
	if s.HasWindow {
		if err := setWindow(fd, s.Window); err != nil {
			return fail(err)
		}
	}
	if err := selectQueue(fd, tcpNoQueue); err != nil {
		return fail(err)
	}

	// Hand the socket to the netpoller: FileConn duplicates the
	// descriptor; the original is closed (the duplicate keeps the socket).
	f := os.NewFile(uintptr(fd), "tcprepair")
	fc, err := net.FileConn(f)
	_ = f.Close() // closes fd
	fdOpen = false
	if err != nil {
		return fail(&Error{Op: "net.FileConn", Err: err})
	}
	tc, ok := fc.(*net.TCPConn)
	if !ok {
		_ = fc.Close()
		return fail(&Error{Op: "net.FileConn", Err: fmt.Errorf("got %T", fc)})
	}
	conn = tc

	err = withFD(conn, func(fd int) error {
		if err := repairOff(fd, !o.NoWindowProbe); err != nil {
			return err
		}
		// Leaving repair mode drops the forced reuse: the port stays
		// shareable with a listener bound later, as Go's own sockets.
		if err := setInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"); err != nil {
			return err
		}
		return writeUnsent(fd, s.SendQueue[len(s.SendQueue)-s.Unsent:])
	})
	if err != nil {
		return fail(err)
	}
	return conn, nil
}

func validate(s *State) error {
	bad := func(format string, args ...any) error {
		return &Error{Op: "check state", Err: fmt.Errorf(format, args...)}
	}
	switch {
	case s == nil:
		return bad("nil State")
	case !s.Local.IsValid() || s.Local.Port() == 0:
		return bad("invalid local address %v", s.Local)
	case !s.Remote.IsValid() || s.Remote.Port() == 0:
		return bad("invalid remote address %v", s.Remote)
	case s.Local.Addr().Unmap().Is4() != s.Remote.Addr().Unmap().Is4():
		return bad("local %v and remote %v are of different IP versions", s.Local, s.Remote)
	case s.Unsent < 0 || s.Unsent > len(s.SendQueue):
		return bad("Unsent %d outside the send queue's %d bytes", s.Unsent, len(s.SendQueue))
	case s.MSS == 0:
		return bad("MSS 0")
	case s.WindowScaling && (s.SndWscale > 14 || s.RcvWscale > 14):
		return bad("window scale %d/%d above 14", s.SndWscale, s.RcvWscale)
	case s.HasWindow && s.Window.MaxWindow < s.Window.SndWnd:
		return bad("Window.MaxWindow %d below SndWnd %d", s.Window.MaxWindow, s.Window.SndWnd)
	}
	return nil
}

// sizeBuffers makes room for the send queue. A repair-mode write to the
// send queue waits for memory that, with nothing acknowledged, never
// comes (EAGAIN here, the socket being non-blocking), and the Unsent bytes
// need room too; the kernel's default buffer (tcp_wmem[1], grown at
// connect for the initial congestion window) is left alone when it
// suffices, so autotuning stays on for the usual small queues. The
// receive side needs nothing up front: the kernel grows SO_RCVBUF up to
// tcp_rmem[2] as repair-mode writes fill it (restoreQueues raises it
// beyond that only when a write fails).
func sizeBuffers(fd int, s *State) error {
	if len(s.SendQueue) == 0 {
		return nil
	}
	// Memory is charged by skb truesize: payload plus per-skb overhead,
	// a fraction for full-sized skbs; count twice the payload.
	need := 2*len(s.SendQueue) + bufSlack
	cur, err := getInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, "SO_SNDBUF")
	if err != nil {
		return err
	}
	if cur < need {
		// The kernel doubles the value set.
		return setInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, need/2+1, "SO_SNDBUFFORCE")
	}
	return nil
}

func setOptions(fd int, s *State) error {
	opts := []unix.TCPRepairOpt{{Code: unix.TCPOPT_MAXSEG, Val: uint32(s.MSS)}}
	if s.WindowScaling {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_WINDOW, Val: uint32(s.SndWscale) | uint32(s.RcvWscale)<<16})
	}
	if s.SACK {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_SACK_PERMITTED})
	}
	if s.Timestamps {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_TIMESTAMP})
	}
	if err := unix.SetsockoptTCPRepairOpt(fd, unix.SOL_TCP, unix.TCP_REPAIR_OPTIONS, opts); err != nil {
		return opErr("set TCP_REPAIR_OPTIONS", err)
	}
	if s.Timestamps {
		return setInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP, int(int32(s.Timestamp)), "TCP_TIMESTAMP")
	}
	return nil
}

// restoreQueues writes the receive queue and the sent part of the send
// queue in repair mode, and checks the kernel took them as such.
func restoreQueues(fd int, s *State) error {
	if len(s.RecvQueue) > 0 {
		if err := selectQueue(fd, tcpRecvQueue); err != nil {
			return err
		}
		// Beyond tcp_rmem[2] the kernel stops growing the receive
		// buffer and a write fails with ENOBUFS: then make room for
		// the rest, once.
		raised := false
		grow := func(left int) bool {
			if raised {
				return false
			}
			raised = true
			cur, err := getInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, "SO_RCVBUF")
			if err != nil {
				return false
			}
			return setInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, (cur+2*left+bufSlack)/2+1, "SO_RCVBUFFORCE") == nil
		}
		if err := sendRepair(fd, s.RecvQueue, "receive", grow); err != nil {
			return err
		}
	}
	inq, err := ioctlInt(fd, unix.SIOCINQ, "SIOCINQ")
	if err != nil {
		return err
	}
	if inq != len(s.RecvQueue) {
		return &Error{Op: "restore receive queue", Err: fmt.Errorf("the kernel holds %d bytes, want %d", inq, len(s.RecvQueue))}
	}
	sent := s.SendQueue[:len(s.SendQueue)-s.Unsent]
	if len(sent) > 0 {
		if err := selectQueue(fd, tcpSendQueue); err != nil {
			return err
		}
		if err := sendRepair(fd, sent, "send", nil); err != nil {
			return err
		}
	}
	outq, err := ioctlInt(fd, unix.SIOCOUTQ, "SIOCOUTQ")
	if err != nil {
		return err
	}
	notsent, err := ioctlInt(fd, unix.SIOCOUTQNSD, "SIOCOUTQNSD")
	if err != nil {
		return err
	}
	if outq != len(sent) || notsent != 0 {
		return &Error{Op: "restore send queue", Err: fmt.Errorf("the kernel holds %d bytes, %d of them unsent; want %d, all sent", outq, notsent, len(sent))}
	}
	return nil
}

// sendRepair writes b to the selected queue. For the receive queue the
// kernel builds one skb of up to 17 pages per call and fails (noMem) when
// the socket's receive memory is full or the allocation fails: grow
// (if not nil) may make room once, and after that, like soccr, the chunk
// is halved and retried.
func sendRepair(fd int, b []byte, name string, grow func(left int) bool) error {
	chunk := len(b)
	for calls := 0; len(b) > 0; calls++ {
		if calls == maxSendCalls {
			return &Error{Op: "restore " + name + " queue", Err: fmt.Errorf("%d bytes left after %d writes", len(b), calls)}
		}
		n, err := unix.SendmsgN(fd, b[:min(chunk, len(b))], nil, nil, unix.MSG_DONTWAIT)
		if err != nil {
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case noMem(err) && grow != nil && grow(len(b)):
				continue
			case noMem(err) && chunk > minChunk:
				chunk /= 2
				continue
			}
			return opErr("restore "+name+" queue", err)
		}
		if n <= 0 {
			return &Error{Op: "restore " + name + " queue", Err: errors.New("the kernel took no bytes")}
		}
		b = b[n:]
	}
	return nil
}

// noMem is the receive queue's "no room": ENOBUFS when the socket's receive
// memory is full (Linux 6.x), ENOMEM when the allocation fails.
func noMem(err error) bool { return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) }

// writeUnsent writes the bytes that were never sent, normally (repair mode
// off), so the kernel sends them when the window allows. sizeBuffers made
// room for them, so the non-blocking writes do not run out of buffer.
func writeUnsent(fd int, b []byte) error {
	for calls := 0; len(b) > 0; calls++ {
		if calls == maxSendCalls {
			return &Error{Op: "write unsent bytes", Err: fmt.Errorf("%d bytes left after %d writes", len(b), calls)}
		}
		n, err := unix.SendmsgN(fd, b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return opErr(fmt.Sprintf("write unsent bytes (%d left)", len(b)), err)
		}
		b = b[n:]
	}
	return nil
}
