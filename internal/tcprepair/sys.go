package tcprepair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel values (include/uapi/linux/tcp.h) that x/sys/unix names
// differently or not at all.
const (
	tcpNoQueue   = 0 // TCP_NO_QUEUE
	tcpRecvQueue = 1 // TCP_RECV_QUEUE
	tcpSendQueue = 2 // TCP_SEND_QUEUE

	tcpiOptTimestamps = 1 // TCPI_OPT_TIMESTAMPS
	tcpiOptSACK       = 2 // TCPI_OPT_SACK
	tcpiOptWscale     = 4 // TCPI_OPT_WSCALE

	tcpEstablished = 1 // TCP_ESTABLISHED
)

// Error is a failed step of a repair operation. It unwraps to the errno.
type Error struct {
	Op  string // the step, e.g. "set TCP_QUEUE_SEQ"
	Err error
}

func (e *Error) Error() string {
	s := "tcprepair: " + e.Op + ": " + e.Err.Error()
	if errors.Is(e.Err, unix.EPERM) {
		s += " (TCP repair needs CAP_NET_ADMIN)"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Err: err}
}

func setInt(fd, level, opt int, v int, name string) error {
	if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
		return &Error{Op: "set " + name, Err: err}
	}
	return nil
}

func getInt(fd, level, opt int, name string) (int, error) {
	v, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return 0, &Error{Op: "get " + name, Err: err}
	}
	return v, nil
}

func repairOn(fd int) error {
	return setInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON, "TCP_REPAIR on")
}

// repairOff leaves repair mode; with probe, the kernel sends a window probe
// (an ACK with an old sequence number) that the peer answers at once.
func repairOff(fd int, probe bool) error {
	if probe {
		return setInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF, "TCP_REPAIR off")
	}
	return setInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP, "TCP_REPAIR off (no window probe)")
}

func selectQueue(fd, q int) error {
	return setInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q, "TCP_REPAIR_QUEUE")
}

func getQueueSeq(fd int) (uint32, error) {
	v, err := getInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ")
	return uint32(v), err
}

func setQueueSeq(fd, q int, seq uint32) error {
	if err := selectQueue(fd, q); err != nil {
		return err
	}
	return setInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(int32(seq)), "TCP_QUEUE_SEQ")
}

func ioctlInt(fd int, req uint, name string) (int, error) {
	v, err := unix.IoctlGetInt(fd, req)
	return v, opErr(name, err)
}

// getsockopt is the raw system call, for structures x/sys/unix does not
// wrap (or wraps too short); it returns the length the kernel wrote.
func getsockopt(fd, level, opt int, p unsafe.Pointer, size int) (int, error) {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(l), nil
}

func setsockopt(fd, level, opt int, p unsafe.Pointer, size int) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(size), 0)
	if e != 0 {
		return e
	}
	return nil
}

// tcpInfoHead is the start of struct tcp_info: the state, the negotiated
// options and the window scales (snd in the low nibble, rcv in the high),
// which x/sys/unix's TCPInfo leaves out as padding.
type tcpInfoHead struct {
	State, CAState, Retransmits, Probes, Backoff, Options, Wscale, Flags uint8
}

func getTCPInfoHead(fd int) (tcpInfoHead, error) {
	var ti tcpInfoHead
	n, err := getsockopt(fd, unix.SOL_TCP, unix.TCP_INFO, unsafe.Pointer(&ti), int(unsafe.Sizeof(ti)))
	if err == nil && n < 7 {
		err = fmt.Errorf("short TCP_INFO (%d bytes)", n)
	}
	return ti, opErr("get TCP_INFO", err)
}

// tcpRepairWindow is struct tcp_repair_window.
type tcpRepairWindow struct {
	SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32
}

func getWindow(fd int) (Window, error) {
	var w tcpRepairWindow
	n, err := getsockopt(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, unsafe.Pointer(&w), int(unsafe.Sizeof(w)))
	if err == nil && n != int(unsafe.Sizeof(w)) {
		err = fmt.Errorf("short TCP_REPAIR_WINDOW (%d bytes)", n)
	}
	return Window(w), opErr("get TCP_REPAIR_WINDOW", err)
}

func setWindow(fd int, w Window) error {
	rw := tcpRepairWindow(w)
	return opErr("set TCP_REPAIR_WINDOW", setsockopt(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, unsafe.Pointer(&rw), int(unsafe.Sizeof(rw))))
}

func stateName(s uint8) string {
	switch s {
	case 1:
		return "ESTABLISHED"
	case 2:
		return "SYN_SENT"
	case 3:
		return "SYN_RECV"
	case 4:
		return "FIN_WAIT1"
	case 5:
		return "FIN_WAIT2"
	case 6:
		return "TIME_WAIT"
	case 7:
		return "CLOSE"
	case 8:
		return "CLOSE_WAIT"
	case 9:
		return "LAST_ACK"
	case 10:
		return "LISTEN"
	case 11:
		return "CLOSING"
	}
	return "state " + strconv.Itoa(int(s))
}

// addrPort converts a socket address, keeping the family: an AF_INET6
// socket's IPv4-mapped address stays mapped (::ffff:a.b.c.d), which
// net.TCPAddr cannot tell from an AF_INET socket's address.
func addrPort(sa unix.Sockaddr) (netip.AddrPort, error) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			a = a.WithZone(strconv.Itoa(int(sa.ZoneId)))
		}
		return netip.AddrPortFrom(a, uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("not an IP socket address: %T", sa)
}

// sockaddr converts back; v6 selects an AF_INET6 address (IPv4 addresses
// become IPv4-mapped).
func sockaddr(ap netip.AddrPort, v6 bool) (unix.Sockaddr, error) {
	a := ap.Addr()
	if !v6 {
		if !a.Unmap().Is4() {
			return nil, fmt.Errorf("%v is not an IPv4 address", a)
		}
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if n, err := strconv.Atoi(z); err == nil {
			sa.ZoneId = uint32(n)
		} else {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return nil, fmt.Errorf("zone of %v: %w", a, err)
			}
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa, nil
}

// withFD runs fn on c's descriptor. Nothing else may use c meanwhile: in
// repair mode the kernel refuses ordinary reads and writes, and a write
// with the send queue selected would be queued as already sent.
func withFD(c *net.TCPConn, fn func(fd int) error) error {
	if c == nil {
		return errors.New("tcprepair: nil connection")
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("tcprepair: %w", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("tcprepair: %w", err)
	}
	return ferr
}
