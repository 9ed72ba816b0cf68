// Package tcprepair reads and rebuilds established TCP sockets with the
// kernel's TCP repair mode (Linux 3.5+, TCP_REPAIR_WINDOW 4.8+), the
// mechanism CRIU and passt use to move live connections between hosts:
// sequence numbers, both queues, the options negotiated in the handshake,
// the window and the timestamp clock.
//
// Everything here needs CAP_NET_ADMIN. In repair mode a socket's calls do
// not run the protocol: connect goes straight to ESTABLISHED, close sends
// nothing. While a socket is read for a move, its peer's packets must be
// held (internal/flowhold), or the kernel changes what is being read (and
// answers a closed socket's packets with resets).
//
// The order of operations follows CRIU's soccr library: sequence numbers
// before connect, options and window after it, queues last, repair off.
package tcprepair

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Queues (linux/tcp.h, enum TCP_*_QUEUE).
const (
	recvQueue = 1
	sendQueue = 2
)

// tcpi_options bits.
const (
	optTimestamps = 1
	optSACK       = 2
	optWscale     = 4
)

// State is an established TCP socket as repair mode reads and sets it.
type State struct {
	Local, Remote netip.AddrPort
	// SendSeq is the sequence number of SendQueue[0]: the first byte the
	// peer has not acknowledged (snd_una). With SendQueue empty it is the
	// next byte the application writes.
	SendSeq   uint32
	SendQueue []byte // written by the application, not acknowledged yet (sent or not)
	Unsent    int    // how many of SendQueue's last bytes were never sent
	// RecvSeq is the sequence number of RecvQueue[0]: with RecvQueue
	// empty, the next byte the application reads.
	RecvSeq   uint32
	RecvQueue []byte // received and acknowledged, not read by the application

	MSS                             uint16
	SndWscale, RcvWscale            uint8
	WindowScaling, SACK, Timestamps bool
	Timestamp                       uint32 // the socket's TSval clock (TCP_TIMESTAMP)
	Window                          Window
	HasWindow                       bool
}

// Window is TCP_REPAIR_WINDOW (struct tcp_repair_window).
type Window struct{ SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32 }

// RestoreOptions adjust Restore.
type RestoreOptions struct {
	Mark          uint32 // SO_MARK of the new socket (0: none)
	NoWindowProbe bool   // leave repair mode without a window probe
	// RecvBuffer, when set, fixes the socket's receive buffer
	// (SO_RCVBUFFORCE). A restored socket starts with the default buffer
	// while its peer may have data in flight up to the larger window the
	// old socket had grown to; since Linux 6.17 out-of-order data that
	// fills a small buffer shrinks the window below the next in-order
	// segment, and the connection stalls. Give it room.
	RecvBuffer int
}

func wrap(step string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("tcprepair: %s: %w (TCP repair needs CAP_NET_ADMIN)", step, err)
	}
	return fmt.Errorf("tcprepair: %s: %w", step, err)
}

// control runs f on c's descriptor.
func control(c *net.TCPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// readParams reads what Dump and Snapshot share (the socket is in repair
// mode): options, MSS, timestamp, window.
func readParams(fd int, s *State) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return wrap("TCP_INFO", err)
	}
	if info.State != unix.BPF_TCP_ESTABLISHED {
		return fmt.Errorf("tcprepair: socket is in TCP state %d, not ESTABLISHED: only established connections can be moved", info.State)
	}
	s.Timestamps = info.Options&optTimestamps != 0
	s.SACK = info.Options&optSACK != 0
	s.WindowScaling = info.Options&optWscale != 0
	// tcpi_snd_wscale:4, tcpi_rcv_wscale:4 share the byte after
	// tcpi_options; Go's struct has it as padding.
	var raw [8]byte
	rl := uint32(len(raw))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&raw[0])), uintptr(unsafe.Pointer(&rl)), 0); e != 0 {
		return wrap("TCP_INFO", e)
	}
	s.SndWscale, s.RcvWscale = raw[6]&0xf, raw[6]>>4
	mss, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return wrap("TCP_MAXSEG", err)
	}
	s.MSS = uint16(mss)
	ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	if err != nil {
		return wrap("TCP_TIMESTAMP", err)
	}
	s.Timestamp = uint32(ts)
	var w [5]uint32
	l := uint32(unsafe.Sizeof(w))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW,
		uintptr(unsafe.Pointer(&w[0])), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return wrap("TCP_REPAIR_WINDOW", e)
	}
	s.Window = Window{w[0], w[1], w[2], w[3], w[4]}
	s.HasWindow = true
	return nil
}

// queueSeq selects queue q and reads its sequence number (TCP_QUEUE_SEQ:
// write_seq for the send queue, rcv_nxt for the receive queue).
func queueSeq(fd, q int) (uint32, error) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return 0, wrap("TCP_REPAIR_QUEUE", err)
	}
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return 0, wrap("TCP_QUEUE_SEQ", err)
	}
	return uint32(v), nil
}

// peekQueue reads n bytes of queue q without taking them.
func peekQueue(fd, q, n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return nil, wrap("TCP_REPAIR_QUEUE", err)
	}
	b := make([]byte, n)
	got, _, err := unix.Recvfrom(fd, b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, wrap("read queue", err)
	}
	if got != n {
		return nil, fmt.Errorf("tcprepair: queue %d holds %d bytes, read %d", q, n, got)
	}
	return b, nil
}

func repair(fd, v int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, v); err != nil {
		return wrap("TCP_REPAIR", err)
	}
	return nil
}

// Dump puts c into repair mode and reads its whole state, queues included;
// c stays in repair mode (CloseSilently, or Resume to call the move off).
// The caller holds the peer's packets meanwhile.
func Dump(c *net.TCPConn) (*State, error) {
	s := &State{Local: addrPortOf(c.LocalAddr()), Remote: addrPortOf(c.RemoteAddr())}
	err := control(c, func(fd int) error {
		if err := repair(fd, unix.TCP_REPAIR_ON); err != nil {
			return err
		}
		if err := readParams(fd, s); err != nil {
			return err
		}
		inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			return wrap("SIOCINQ", err)
		}
		outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return wrap("SIOCOUTQ", err)
		}
		unsent, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
		if err != nil {
			return wrap("SIOCOUTQNSD", err)
		}
		rcvNxt, err := queueSeq(fd, recvQueue)
		if err != nil {
			return err
		}
		if s.RecvQueue, err = peekQueue(fd, recvQueue, inq); err != nil {
			return err
		}
		writeSeq, err := queueSeq(fd, sendQueue)
		if err != nil {
			return err
		}
		if s.SendQueue, err = peekQueue(fd, sendQueue, outq); err != nil {
			return err
		}
		s.RecvSeq = rcvNxt - uint32(inq)
		s.SendSeq = writeSeq - uint32(outq)
		s.Unsent = unsent
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Snapshot reads a live socket's parameters without its queues: SendSeq
// is the next byte the application writes, RecvSeq the next it reads. It
// toggles repair mode briefly (no window probe when it leaves) and reads
// the receive sequence so that a segment arriving meanwhile cannot make
// the pair inconsistent. The caller must not read or write c meanwhile.
func Snapshot(c *net.TCPConn) (*State, error) {
	s := &State{Local: addrPortOf(c.LocalAddr()), Remote: addrPortOf(c.RemoteAddr())}
	err := control(c, func(fd int) error {
		if err := repair(fd, unix.TCP_REPAIR_ON); err != nil {
			return err
		}
		err := func() error {
			if err := readParams(fd, s); err != nil {
				return err
			}
			writeSeq, err := queueSeq(fd, sendQueue)
			if err != nil {
				return err
			}
			s.SendSeq = writeSeq
			for range 100 {
				r1, err := queueSeq(fd, recvQueue)
				if err != nil {
					return err
				}
				inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
				if err != nil {
					return wrap("SIOCINQ", err)
				}
				r2, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
				if err != nil {
					return wrap("TCP_QUEUE_SEQ", err)
				}
				if r1 == uint32(r2) {
					s.RecvSeq = r1 - uint32(inq)
					return nil
				}
			}
			return errors.New("tcprepair: the receive sequence kept moving")
		}()
		if oerr := repair(fd, unix.TCP_REPAIR_OFF_NO_WP); err == nil {
			err = oerr
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Resume leaves repair mode without a window probe (a move called off).
func Resume(c *net.TCPConn) error {
	return control(c, func(fd int) error { return repair(fd, unix.TCP_REPAIR_OFF_NO_WP) })
}

// CloseSilently closes c in repair mode: no FIN, no reset, no TIME_WAIT.
func CloseSilently(c *net.TCPConn) error {
	err := control(c, func(fd int) error { return repair(fd, unix.TCP_REPAIR_ON) })
	cerr := c.Close()
	if err != nil {
		return err
	}
	return cerr
}

func sockaddr(ap netip.AddrPort, v6 bool) unix.Sockaddr {
	if !v6 {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// Restore builds s as a new established socket. Its local address need
// not be configured on this host yet (IP_FREEBIND): a traffic group's
// floating address may arrive after. The unsent tail of SendQueue is
// written normally once the socket is out of repair mode.
func Restore(s *State, o RestoreOptions) (*net.TCPConn, error) {
	if !s.Local.IsValid() || !s.Remote.IsValid() || s.Local.Addr().Is4() != s.Remote.Addr().Is4() {
		return nil, fmt.Errorf("tcprepair: restore %s -> %s: addresses of one family needed", s.Local, s.Remote)
	}
	if s.Unsent < 0 || s.Unsent > len(s.SendQueue) {
		return nil, fmt.Errorf("tcprepair: %d unsent bytes of a %d-byte send queue", s.Unsent, len(s.SendQueue))
	}
	v6 := !s.Local.Addr().Is4()
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, wrap("socket", err)
	}
	if err := restoreFD(fd, s, o, v6); err != nil {
		unix.Close(fd) // in repair mode: silently
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "tcprepair")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, wrap("file conn", err)
	}
	c := nc.(*net.TCPConn)
	if s.Unsent > 0 {
		if _, err := c.Write(s.SendQueue[len(s.SendQueue)-s.Unsent:]); err != nil {
			c.Close()
			return nil, wrap("write unsent bytes", err)
		}
	}
	return c, nil
}

func restoreFD(fd int, s *State, o RestoreOptions, v6 bool) error {
	// Repair mode makes bind ignore every conflict (SK_FORCE_REUSE), the
	// virtual's own listener included; SO_REUSEADDR after it would undo
	// that, so there is none.
	if err := repair(fd, unix.TCP_REPAIR_ON); err != nil {
		return err
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1); err != nil {
			return wrap("IPV6_FREEBIND", err)
		}
	} else if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1); err != nil {
		return wrap("IP_FREEBIND", err)
	}
	if o.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark)); err != nil {
			return wrap("SO_MARK", err)
		}
	}
	if o.RecvBuffer > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.RecvBuffer); err != nil {
			return wrap("SO_RCVBUFFORCE", err)
		}
	}
	// The MSS before connect: the repaired connect computes the segment
	// size from it (set only after, as an option, the socket would send
	// 536-byte segments until the path MTU changed).
	if s.MSS > 0 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, int(s.MSS)); err != nil {
			return wrap("TCP_MAXSEG", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(s.Local, v6)); err != nil {
		return wrap("bind "+s.Local.String(), err)
	}
	for _, q := range []struct {
		queue int
		seq   uint32
	}{{sendQueue, s.SendSeq}, {recvQueue, s.RecvSeq}} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q.queue); err != nil {
			return wrap("TCP_REPAIR_QUEUE", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ, int(int32(q.seq))); err != nil {
			return wrap("set TCP_QUEUE_SEQ", err)
		}
	}
	if err := unix.Connect(fd, sockaddr(s.Remote, v6)); err != nil {
		return wrap("connect "+s.Remote.String(), err)
	}
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
	if err := unix.SetsockoptTCPRepairOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, opts); err != nil {
		return wrap("TCP_REPAIR_OPTIONS", err)
	}
	if s.Timestamps {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP, int(int32(s.Timestamp))); err != nil {
			return wrap("TCP_TIMESTAMP", err)
		}
	}
	if s.HasWindow {
		var b [20]byte
		for i, v := range []uint32{s.Window.SndWl1, s.Window.SndWnd, s.Window.MaxWindow, s.Window.RcvWnd, s.Window.RcvWup} {
			binary.NativeEndian.PutUint32(b[4*i:], v)
		}
		if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW,
			uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0); e != 0 {
			return wrap("TCP_REPAIR_WINDOW", e)
		}
	}
	if err := fillQueue(fd, recvQueue, s.RecvQueue); err != nil {
		return err
	}
	if err := fillQueue(fd, sendQueue, s.SendQueue[:len(s.SendQueue)-s.Unsent]); err != nil {
		return err
	}
	off := unix.TCP_REPAIR_OFF
	if o.NoWindowProbe {
		off = unix.TCP_REPAIR_OFF_NO_WP
	}
	if err := repair(fd, off); err != nil {
		return err
	}
	// Leaving repair mode drops the forced reuse: the address stays
	// shareable with a listener bound later (SO_REUSEADDR, as Go's).
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return wrap("SO_REUSEADDR", err)
	}
	return nil
}

// fillQueue writes b into queue q of a socket in repair mode.
func fillQueue(fd, q int, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return wrap("TCP_REPAIR_QUEUE", err)
	}
	// The queue must fit the socket's buffer (CRIU sizes it the same way).
	opt := unix.SO_SNDBUFFORCE
	if q == recvQueue {
		opt = unix.SO_RCVBUFFORCE
	}
	if cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, map[int]int{unix.SO_SNDBUFFORCE: unix.SO_SNDBUF, unix.SO_RCVBUFFORCE: unix.SO_RCVBUF}[opt]); err == nil && cur < 2*len(b) {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 2*len(b)); err != nil {
			return wrap("size the buffer", err)
		}
	}
	for len(b) > 0 {
		n, err := unix.Write(fd, b[:min(len(b), 256<<10)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return wrap(fmt.Sprintf("restore queue %d (%d bytes left)", q, len(b)), err)
		}
		b = b[n:]
	}
	return nil
}
