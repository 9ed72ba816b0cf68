package tcprepair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// State is an established TCP socket's state as TCP repair mode reads and
// sets it.
type State struct {
	// Local and Remote keep the socket's family: an AF_INET6 socket
	// carrying IPv4 has IPv4-mapped addresses (::ffff:a.b.c.d) and is
	// restored as such.
	Local, Remote netip.AddrPort

	SendSeq   uint32 // sequence number of SendQueue[0] (snd_una; = write_seq - len(SendQueue))
	SendQueue []byte // bytes written by the application and not yet acknowledged by the peer (sent or not)
	Unsent    int    // how many of SendQueue's last bytes were never sent (SIOCOUTQNSD)
	RecvSeq   uint32 // sequence number of RecvQueue[0] (= rcv_nxt - len(RecvQueue))
	RecvQueue []byte // bytes received and acknowledged, not yet read by the application

	MSS                  uint16 // mss_clamp (TCP_MAXSEG read in repair mode, as CRIU does)
	SndWscale, RcvWscale uint8
	// Negotiated options (TCP_INFO tcpi_options).
	WindowScaling, SACK, Timestamps bool
	// Timestamp is TCP_TIMESTAMP, the socket's TSval clock. Its low bit is
	// a flag, not part of the clock (Linux ≥ 6.7: set when the
	// connection uses microsecond timestamps); advance it with
	// AdvanceTimestamp.
	Timestamp uint32
	Window    Window // TCP_REPAIR_WINDOW
	HasWindow bool
}

// Window is struct tcp_repair_window: the send window as the peer last
// advertised it (SndWnd, largest ever MaxWindow, and SndWl1, the sequence
// number of the segment that last updated it) and the receive window this
// side last advertised (RcvWnd, from RcvWup, the rcv_nxt it was advertised
// at).
type Window struct{ SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32 }

// RestoreOptions tune Restore.
type RestoreOptions struct {
	Mark          uint32 // SO_MARK of the new socket; 0: none
	NoWindowProbe bool   // leave repair mode without sending a window probe
	// RecvBuffer, when set, fixes the socket's receive buffer
	// (SO_RCVBUFFORCE). A restored socket starts with the default buffer
	// while its peer may have data in flight up to the larger window the
	// old socket had grown to; since Linux 6.17 out-of-order data that
	// fills a small buffer shrinks the window below the next in-order
	// segment, and the connection stalls. Give it room.
	RecvBuffer int
}

// snapshotTries bounds Snapshot's wait for a receive sequence that holds
// still across two reads.
const snapshotTries = 64

// Dump puts c into repair mode and reads its whole state, queues
// included, leaving c in repair mode: the caller then either closes it
// with CloseSilently (the connection moves) or calls Resume (the move is
// called off). The caller must make sure no packet of the flow reaches c
// meanwhile (hold it with internal/flowhold) and that nothing else uses c.
// On error c is left out of repair mode, as it was.
//
// Only ESTABLISHED sockets without pending urgent data are accepted.
// Out-of-order data the socket holds (and may have SACKed) is not part of
// the state; the peer resends it.
func Dump(c *net.TCPConn) (*State, error) {
	var s *State
	err := withFD(c, func(fd int) (err error) {
		s, err = dump(c, fd)
		return err
	})
	return s, err
}

func dump(c *net.TCPConn, fd int) (*State, error) {
	s := &State{}
	if err := endpoints(c, fd, s); err != nil {
		return nil, err
	}
	if err := repairOn(fd); err != nil {
		return nil, err
	}
	err := func() error {
		if err := params(fd, s); err != nil {
			return err
		}
		if err := checkUrgent(fd); err != nil {
			return err
		}
		outq, err := ioctlInt(fd, unix.SIOCOUTQ, "SIOCOUTQ")
		if err != nil {
			return err
		}
		unsent, err := ioctlInt(fd, unix.SIOCOUTQNSD, "SIOCOUTQNSD")
		if err != nil {
			return err
		}
		inq, err := ioctlInt(fd, unix.SIOCINQ, "SIOCINQ")
		if err != nil {
			return err
		}
		s.Unsent = unsent
		rcvNxt, q, err := readQueue(fd, tcpRecvQueue, inq, "receive")
		if err != nil {
			return err
		}
		s.RecvSeq, s.RecvQueue = rcvNxt-uint32(inq), q
		writeSeq, q, err := readQueue(fd, tcpSendQueue, outq, "send")
		if err != nil {
			return err
		}
		s.SendSeq, s.SendQueue = writeSeq-uint32(outq), q
		return selectQueue(fd, tcpNoQueue)
	}()
	if err != nil {
		_ = repairOff(fd, false)
		return nil, err
	}
	return s, nil
}

// Snapshot reads a live (not held) socket's sequence numbers, options,
// window and timestamp, without its queues, by turning repair mode on and
// off again (without a window probe). SendSeq is the sequence number of the
// next byte the application will write (write_seq) and RecvSeq that of the
// next byte it will read (rcv_nxt - SIOCINQ, read until rcv_nxt holds still
// across the SIOCINQ, so arriving packets cannot make the two disagree).
// Queues are nil, Unsent 0. The Window is a moment's value that arriving
// packets change; see Restore for what a State built from a Snapshot needs.
//
// Nothing else may use c meanwhile (in repair mode the kernel refuses reads
// and writes).
func Snapshot(c *net.TCPConn) (*State, error) {
	var s *State
	err := withFD(c, func(fd int) (err error) {
		s, _, err = snapshot(c, fd, false)
		return err
	})
	return s, err
}

// SnapshotSent is Snapshot that also reads the send queue: SendQueue is
// what the application wrote and the peer has not acknowledged, and
// SendSeq the sequence number of its first byte. The application must not
// write to c meanwhile. While the send queue is selected, data the kernel
// would push on an arriving ACK is marked sent without being sent (it goes
// out on the retransmission timer instead): read it when the queue holds
// what was sent already (a response written, its acknowledgement pending).
func SnapshotSent(c *net.TCPConn) (*State, error) {
	var s *State
	err := withFD(c, func(fd int) (err error) {
		s, _, err = snapshot(c, fd, true)
		return err
	})
	return s, err
}

// peekSendQueue reads the selected send queue whole: the bytes from snd_una
// to write_seq (fewer than SIOCOUTQ said if an ACK arrived meanwhile).
func peekSendQueue(fd int) ([]byte, error) {
	n, err := ioctlInt(fd, unix.SIOCOUTQ, "SIOCOUTQ")
	if err != nil || n == 0 {
		return nil, err
	}
	buf := make([]byte, n+1)
	got, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, opErr("read send queue", err)
	}
	if got > n {
		return nil, &Error{Op: "read send queue", Err: errors.New("the application wrote meanwhile")}
	}
	return buf[:got:got], nil
}

// snapshot also returns how many times rcv_nxt moved during a read. It is
// on the connection-setup path, so it makes as few system calls as it can
// (12 for an IPv4 or IPv6 socket with timestamps).
func snapshot(c *net.TCPConn, fd int, sendQueue bool) (*State, int, error) {
	s := &State{}
	if err := endpoints(c, fd, s); err != nil {
		return nil, 0, err
	}
	if err := repairOn(fd); err != nil {
		return nil, 0, err
	}
	moved := 0
	err := func() error {
		if err := params(fd, s); err != nil {
			return err
		}
		// The send queue is selected for as short a time as possible:
		// while it is, new data the kernel pushes (on an incoming ACK)
		// would be marked sent without being sent. The receive queue
		// can stay selected when repair mode goes off.
		if err := selectQueue(fd, tcpSendQueue); err != nil {
			return err
		}
		seq, err := getQueueSeq(fd)
		if err == nil && sendQueue {
			s.SendQueue, err = peekSendQueue(fd)
		}
		if err2 := selectQueue(fd, tcpRecvQueue); err == nil {
			err = err2
		}
		if err != nil {
			return err
		}
		s.SendSeq = seq - uint32(len(s.SendQueue))
		stable := false
		for range snapshotTries {
			before, err := getQueueSeq(fd)
			if err != nil {
				return err
			}
			inq, err := ioctlInt(fd, unix.SIOCINQ, "SIOCINQ")
			if err != nil {
				return err
			}
			after, err := getQueueSeq(fd)
			if err != nil {
				return err
			}
			if before == after {
				s.RecvSeq = after - uint32(inq)
				stable = true
				break
			}
			moved++
		}
		if !stable {
			return &Error{Op: "read receive sequence", Err: fmt.Errorf("rcv_nxt moved in each of %d tries", snapshotTries)}
		}
		return nil
	}()
	if offErr := repairOff(fd, false); err == nil {
		err = offErr
	}
	if err != nil {
		return nil, moved, err
	}
	return s, moved, nil
}

// Resume takes c out of repair mode without a window probe, as it was
// before Dump (the move was called off).
func Resume(c *net.TCPConn) error {
	return withFD(c, func(fd int) error {
		// Repair on (a no-op if already on) resets the selected queue.
		if err := repairOn(fd); err != nil {
			return err
		}
		return repairOff(fd, false)
	})
}

// Probe sends a window probe on an established connection: an ACK with an
// already acknowledged sequence number, which the peer answers at once
// with an ACK carrying its current acknowledgment and window. Use it on a
// restored connection when its packets start to flow (after the address
// moved and the hold was released) instead of waiting for either side's
// retransmission timer. It toggles repair mode, so nothing else may use c
// meanwhile.
func Probe(c *net.TCPConn) error {
	return withFD(c, func(fd int) error {
		if err := repairOn(fd); err != nil {
			return err
		}
		return repairOff(fd, true)
	})
}

// CloseSilently closes c without sending anything (no FIN, no RST) and
// without a TIME_WAIT: it turns repair mode on if it is not already, and
// closes. If repair mode cannot be turned on, c is left open (a plain close
// would tell the peer).
func CloseSilently(c *net.TCPConn) error {
	if err := withFD(c, repairOn); err != nil {
		return err
	}
	return c.Close()
}

// AdvanceTimestamp moves s.Timestamp forward by d in the socket's
// timestamp units (milliseconds, or microseconds when its low bit says
// so), keeping the flag bit. A State built from an old Snapshot needs its
// timestamp moved forward by at least the time elapsed since, so that the
// peer's PAWS check does not drop the restored socket's segments.
func (s *State) AdvanceTimestamp(d time.Duration) {
	if d <= 0 {
		return
	}
	unit := time.Millisecond
	if s.Timestamp&1 == 1 {
		unit = time.Microsecond
	}
	flag := s.Timestamp & 1
	s.Timestamp = (s.Timestamp+uint32(uint64(d/unit)))&^1 | flag
}

// endpoints fills in s's addresses. Go's cached addresses tell an AF_INET
// socket (4-byte IP) from an AF_INET6 one (16 bytes, IPv4-mapped for
// IPv4 traffic); SO_DOMAIN confirms the family of a mapped one, and
// getsockname/getpeername are the fallback.
func endpoints(c *net.TCPConn, fd int, s *State) error {
	la, ok1 := c.LocalAddr().(*net.TCPAddr)
	ra, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if ok1 && ok2 && la != nil && ra != nil {
		s.Local, s.Remote = la.AddrPort(), ra.AddrPort()
		if !s.Local.Addr().Is4In6() {
			return nil
		}
		domain, err := getInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN, "SO_DOMAIN")
		if err != nil {
			return err
		}
		if domain == unix.AF_INET {
			s.Local = netip.AddrPortFrom(s.Local.Addr().Unmap(), s.Local.Port())
			s.Remote = netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())
		}
		return nil
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return opErr("getsockname", err)
	}
	if s.Local, err = addrPort(sa); err != nil {
		return opErr("getsockname", err)
	}
	if sa, err = unix.Getpeername(fd); err != nil {
		return opErr("getpeername", err)
	}
	if s.Remote, err = addrPort(sa); err != nil {
		return opErr("getpeername", err)
	}
	return nil
}

// params reads the state check, MSS, options, window and timestamp (in
// repair mode).
func params(fd int, s *State) error {
	ti, err := getTCPInfoHead(fd)
	if err != nil {
		return err
	}
	if ti.State != tcpEstablished {
		return &Error{Op: "check state", Err: fmt.Errorf("socket is %s, only ESTABLISHED sockets are supported", stateName(ti.State))}
	}
	mss, err := getInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG, "TCP_MAXSEG")
	if err != nil {
		return err
	}
	s.MSS = uint16(mss)
	s.WindowScaling = ti.Options&tcpiOptWscale != 0
	s.SACK = ti.Options&tcpiOptSACK != 0
	s.Timestamps = ti.Options&tcpiOptTimestamps != 0
	if s.WindowScaling {
		s.SndWscale, s.RcvWscale = ti.Wscale&0xf, ti.Wscale>>4
	}
	if s.Timestamps {
		ts, err := getInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP, "TCP_TIMESTAMP")
		if err != nil {
			return err
		}
		s.Timestamp = uint32(ts)
	}
	w, err := getWindow(fd)
	switch {
	case err == nil:
		s.Window, s.HasWindow = w, true
	case errors.Is(err, unix.ENOPROTOOPT): // before Linux 4.8
	default:
		return err
	}
	return nil
}

// checkUrgent refuses a socket with urgent data the application has not
// read: repair mode cannot restore it. MSG_OOB is served before the
// repair-mode check in tcp_recvmsg; EINVAL means there is none (or it is
// read inline, SO_OOBINLINE, where it is part of the stream).
func checkUrgent(fd int) error {
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_OOB|unix.MSG_PEEK|unix.MSG_DONTWAIT)
	switch {
	case errors.Is(err, unix.EINVAL):
		return nil
	case err == nil && n > 0, errors.Is(err, unix.EAGAIN):
		return &Error{Op: "check urgent data", Err: errors.New("urgent (out-of-band) data pending, which repair mode cannot move")}
	case err != nil:
		return opErr("check urgent data", err)
	}
	return nil
}

// readQueue selects queue q, reads its TCP_QUEUE_SEQ (write_seq for the
// send queue, rcv_nxt for the receive queue) and peeks its n bytes (asking
// for one more to be sure there are exactly n).
func readQueue(fd, q, n int, name string) (uint32, []byte, error) {
	if err := selectQueue(fd, q); err != nil {
		return 0, nil, err
	}
	seq, err := getQueueSeq(fd)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 {
		return seq, nil, nil
	}
	buf := make([]byte, n+1)
	got, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, opErr("read "+name+" queue", err)
	}
	if got != n {
		return 0, nil, &Error{Op: "read " + name + " queue", Err: fmt.Errorf("got %d bytes, the queue holds %d", got, n)}
	}
	return seq, buf[:n:n], nil
}
