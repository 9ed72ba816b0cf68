//go:build linux

package lbsp

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket helpers for Linux. What the kernel does with these options, as
// verified on Linux 6.18 by sockopt_linux_test.go, is written down in the
// package documentation (doc.go, "Sockets (Linux)").

// pktOptionsBufLen is the buffer for IPV6_2292PKTOPTIONS: enough for two
// Destination Options headers, a Hop-by-Hop and a Routing header of the
// largest size (2048 octets each) with their control-message headers.
const pktOptionsBufLen = 4*(2048+unix.SizeofCmsghdr) + 256

// SetDestOpts makes hdr, a whole Destination Options header (as
// BuildDestOpts returns), the sticky IPV6_DSTOPTS header of the IPv6 socket
// c (a *net.TCPConn, *net.UDPConn, *net.TCPListener, ...). An empty hdr
// removes it. hdr is checked with Walk first. Without CAP_NET_RAW it fails
// with an error that says so and matches os.ErrPermission.
func SetDestOpts(c syscall.Conn, hdr []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("lbsp: SetDestOpts: %w", err)
	}
	return SetDestOptsRaw(rc, hdr)
}

// SetDestOptsRaw is SetDestOpts on a syscall.RawConn, as net.Dialer.Control
// and net.ListenConfig.Control receive it.
func SetDestOptsRaw(rc syscall.RawConn, hdr []byte) error {
	if len(hdr) > 0 {
		if err := Walk(hdr, nil); err != nil {
			return fmt.Errorf("lbsp: SetDestOpts: refusing header: %w", err)
		}
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, string(hdr))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("lbsp: setsockopt IPV6_DSTOPTS: %w (sending IPv6 Destination Options needs CAP_NET_RAW)", err)
		}
		return fmt.Errorf("lbsp: setsockopt IPV6_DSTOPTS: %w", err)
	}
	return nil
}

// DialerControl returns a net.Dialer Control function that sets hdr as the
// sticky Destination Options header before connect, so that it is on the
// TCP SYN (or the first UDP datagram), and enables receiving the peer's
// headers (EnableRecvDestOpts) so that TCPDestOpts can read the server's
// answer. An empty hdr only enables receiving (which needs no privilege).
// It only acts on IPv6 sockets ("tcp6", "udp6", or "tcp"/"udp" to
// an IPv6 address); on IPv4 ones it does nothing.
func DialerControl(hdr []byte) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		switch network {
		case "tcp4", "udp4", "ip4":
			return nil
		}
		if len(hdr) > 0 {
			if err := SetDestOptsRaw(c, hdr); err != nil {
				return err
			}
		}
		return EnableRecvDestOptsRaw(c)
	}
}

// EnableRecvDestOpts sets IPV6_RECVDSTOPTS on the IPv6 socket c. On a UDP
// socket, received Destination Options headers then arrive as control
// messages (DestOptsFromCmsg). On a TCP listener, accepted connections keep
// the SYN's header for TCPDestOpts; on a TCP connection, the header of the
// last in-order segment. It needs no privilege.
func EnableRecvDestOpts(c syscall.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("lbsp: EnableRecvDestOpts: %w", err)
	}
	return EnableRecvDestOptsRaw(rc)
}

// EnableRecvDestOptsRaw is EnableRecvDestOpts on a syscall.RawConn.
func EnableRecvDestOptsRaw(rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVDSTOPTS, 1)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("lbsp: setsockopt IPV6_RECVDSTOPTS: %w", err)
	}
	return nil
}

// DestOptsFromCmsg returns the Destination Options headers in the control
// messages oob (the oob of (*net.UDPConn).ReadMsgUDP, or the buffer
// IPV6_2292PKTOPTIONS returns): the data of every message of level
// IPPROTO_IPV6 and type IPV6_DSTOPTS or IPV6_2292DSTOPTS, in order. The
// slices alias oob. There can be two when the packet had a header before a
// Routing header as well. Other messages are ignored; none found is nil,
// nil. It fails only if oob is not a well-formed control-message buffer.
func DestOptsFromCmsg(oob []byte) ([][]byte, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("lbsp: parsing control messages: %w", err)
	}
	var hdrs [][]byte
	for _, m := range msgs {
		if m.Header.Level != unix.IPPROTO_IPV6 {
			continue
		}
		switch m.Header.Type {
		case unix.IPV6_DSTOPTS, unix.IPV6_2292DSTOPTS:
			hdrs = append(hdrs, m.Data)
		}
	}
	return hdrs, nil
}

// AppendDestOptsCmsg appends to b an IPV6_DSTOPTS control message carrying
// hdr, for (*net.UDPConn).WriteMsgUDP: a server on an unconnected UDP
// socket answers each client with its own option this way. Sending it
// needs CAP_NET_RAW (the write fails with EPERM otherwise). hdr is not
// checked; check it with Walk.
func AppendDestOptsCmsg(b []byte, hdr []byte) []byte {
	n := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(len(hdr)))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[n]))
	h.Level = unix.IPPROTO_IPV6
	h.Type = unix.IPV6_DSTOPTS
	h.SetLen(unix.CmsgLen(len(hdr)))
	copy(b[n+unix.CmsgLen(0):], hdr)
	return b
}

// TCPDestOpts returns the Destination Options headers the kernel kept for
// the TCP connection c, read with getsockopt(IPV6_2292PKTOPTIONS): on a
// connection accepted from a listener with IPV6_RECVDSTOPTS, right after
// accept, the SYN's; later, those of the last in-order segment received
// (see the package documentation). nil, nil when there are none. c must
// be a TCP socket (other types fail with ENOPROTOOPT). Each call allocates
// a buffer of about 8 KiB, the most the kernel can return.
func TCPDestOpts(c syscall.Conn) ([][]byte, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("lbsp: TCPDestOpts: %w", err)
	}
	buf := make([]byte, pktOptionsBufLen)
	var n int
	var serr error
	err = rc.Control(func(fd uintptr) {
		l := uint32(len(buf))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_IPV6, unix.IPV6_2292PKTOPTIONS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			serr = e
			return
		}
		n = int(l)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("lbsp: getsockopt IPV6_2292PKTOPTIONS: %w", err)
	}
	return DestOptsFromCmsg(buf[:n:n])
}
