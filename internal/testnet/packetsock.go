package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// packetSock is an AF_PACKET SOCK_RAW socket bound to one interface, seeing
// every frame the interface receives (not the ones sent through it) and
// sending whole Ethernet frames out of it. It is registered with Go's
// netpoller, so a blocked read ends when the socket is closed.
type packetSock struct {
	ifname string
	f      *os.File
	rc     interface {
		Read(func(fd uintptr) bool) error
		Write(func(fd uintptr) bool) error
		Control(func(fd uintptr)) error
	}
}

// Buffer sizes for the delay line's packet sockets. The send side must hold
// the whole tbf queue (frames stay charged to the sending socket until the
// qdisc releases them) and the receive side must absorb bursts while the
// reader is descheduled on a busy machine.
const (
	packetSockRcvBuf = 16 << 20
	packetSockSndBuf = 16 << 20
)

// openPacketSock must run inside the namespace owning ifname.
func openPacketSock(ifname string) (*packetSock, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	fail := func(what string, err error) (*packetSock, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("AF_PACKET %s on %s: %w", what, ifname, err)
	}
	// Our own transmissions are never looped to us by the kernel, but other
	// outgoing frames (from the router namespace's own stack) would be.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	// FORCE variants ignore net.core.[rw]mem_max; we are root.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, packetSockRcvBuf); err != nil {
		return fail("SO_RCVBUFFORCE", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, packetSockSndBuf); err != nil {
		return fail("SO_SNDBUFFORCE", err)
	}
	// Kernel receive timestamps (CLOCK_REALTIME, taken when the veth hands
	// the frame to the router namespace) make the delay independent of how
	// late the reader goroutine is scheduled.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("SO_TIMESTAMPNS", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	f := os.NewFile(uintptr(fd), "packet:"+ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &packetSock{ifname: ifname, f: f, rc: rc}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// errSockClosed reports a read or write on a closed packetSock.
var errSockClosed = errors.New("packet socket closed")

// recv reads one frame into buf. It returns the frame length, whether the
// frame was truncated (longer than buf), and the kernel receive time
// (zero if absent).
func (s *packetSock) recv(buf, oob []byte) (n int, trunc bool, ts time.Time, err error) {
	var (
		oobn, flags int
		rerr        error
	)
	err = s.rc.Read(func(fd uintptr) bool {
		n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return 0, false, ts, errSockClosed
		}
		return 0, false, ts, err
	}
	if rerr != nil {
		return 0, false, ts, rerr
	}
	trunc = flags&unix.MSG_TRUNC != 0 || n > len(buf)
	if n > len(buf) {
		n = len(buf)
	}
	ts = parseTimestampNS(oob[:oobn])
	return n, trunc, ts, nil
}

// parseTimestampNS extracts SCM_TIMESTAMPNS from control data.
func parseTimestampNS(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return time.Unix(sec, nsec)
		}
	}
	return time.Time{}
}

// send writes one frame out of the interface (through its qdisc). It
// waits if the socket's send buffer is full.
func (s *packetSock) send(frame []byte) error {
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Send(int(fd), frame, 0)
		return serr != unix.EAGAIN && serr != unix.EINTR
	})
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return errSockClosed
		}
		return err
	}
	return serr
}

// kernelDrops returns frames the kernel dropped because the receive buffer
// was full since the previous call (PACKET_STATISTICS resets on read).
func (s *packetSock) kernelDrops() uint64 {
	var drops uint64
	_ = s.rc.Control(func(fd uintptr) {
		st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err == nil {
			drops = uint64(st.Drops)
		}
	})
	return drops
}

func (s *packetSock) close() error { return s.f.Close() }
