//go:build linux

package etherip

import (
	"fmt"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Everything here acts in the network namespace of the calling thread; New
// locks the goroutine to its thread while it calls these.

// nsID identifies a network namespace by its nsfs inode.
type nsID struct{ dev, ino uint64 }

func currentNetNS() (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nsID{}, fmt.Errorf("etherip: identify network namespace: %w", err)
	}
	return nsID{dev: st.Dev, ino: st.Ino}, nil
}

// openTAP creates a non-persistent TAP device with a virtio-net header and
// without packet information
// (the kernel deletes it when the returned file is closed), sets its MTU and
// brings it up. An empty name lets the kernel choose one (tap%d).
func openTAP(name string, mtu int) (*os.File, string, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, "", fmt.Errorf("etherip: TAP name %q too long (max %d bytes)", name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("etherip: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", err
	}
	// A virtio-net header on every frame, and TCP segmentation and
	// checksum offload: see offload.go.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("etherip: create TAP %q: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("etherip: TAP offloads: %w", err)
	}
	name = ifr.Name()
	if err := linkMTUUp(name, mtu); err != nil {
		unix.Close(fd)
		return nil, "", err
	}
	// A non-blocking descriptor: os.NewFile registers it with the runtime
	// poller, so reads park the goroutine, not a thread, and Close wakes
	// them.
	return os.NewFile(uintptr(fd), "tap:"+name), name, nil
}

// tapQueueLen is the TAP's txqueuelen (Linux's default for TUN/TAP: 1000).
const tapQueueLen = 8192

// linkMTUUp sets an interface's MTU, queue length and IFF_UP with the
// classic ioctls.
func linkMTUUp(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("etherip: ioctl socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("etherip: set MTU %d on %s: %w", mtu, name, err)
	}
	// The TAP's queue towards its reader is a ring of txqueuelen frames
	// that drops (without back pressure) when full; a reader that is
	// descheduled for a few milliseconds under load would otherwise cost
	// TCP a loss every burst.
	ifr.SetUint32(tapQueueLen)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFTXQLEN, ifr); err != nil {
		return fmt.Errorf("etherip: set txqueuelen of %s: %w", name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("etherip: flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("etherip: set %s up: %w", name, err)
	}
	return nil
}

func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}

// sockBuf is the socket buffer size asked for (SO_RCVBUFFORCE and
// SO_SNDBUFFORCE as root, else capped by net.core.[rw]mem_max).
const sockBuf = 4 << 20

// openRecvSocket opens the raw protocol-97 socket bound to local that a
// receiver reads every tunnel's packets from.
func openRecvSocket(local netip.Addr) (*os.File, error) {
	fam := unix.AF_INET
	if local.Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, Protocol)
	if err != nil {
		return nil, fmt.Errorf("etherip: raw socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
	}
	if err := unix.Bind(fd, sockaddr(local)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("etherip: bind raw socket to %s: %w", local, err)
	}
	return os.NewFile(uintptr(fd), "etherip-rx:"+local.String()), nil
}

// openSendSocket opens an endpoint's own raw protocol-97 socket, bound to
// local and connected to remote, that only sends: a classic BPF program
// that accepts nothing keeps the kernel from queueing it a copy of the
// remote's packets, which the shared receiver already gets.
func openSendSocket(local, remote netip.Addr, dontFragment bool) (*os.File, error) {
	fam := unix.AF_INET
	if local.Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, Protocol)
	if err != nil {
		return nil, fmt.Errorf("etherip: raw socket: %w", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("etherip: send socket %s→%s: %s: %w", local, remote, what, err)
	}
	drop := unix.SockFilter{Code: 0x06, K: 0} // BPF_RET|BPF_K 0: accept no bytes
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &drop}); err != nil {
		return fail("attach filter", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
	}
	if local.Is4() {
		v := unix.IP_PMTUDISC_DONT
		if dontFragment {
			v = unix.IP_PMTUDISC_DO
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, v); err != nil {
			return fail("IP_MTU_DISCOVER", err)
		}
	} else {
		v, df := unix.IPV6_PMTUDISC_DONT, 0
		if dontFragment {
			v, df = unix.IPV6_PMTUDISC_DO, 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, v); err != nil {
			return fail("IPV6_MTU_DISCOVER", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_DONTFRAG, df); err != nil {
			return fail("IPV6_DONTFRAG", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(local)); err != nil {
		return fail("bind", err)
	}
	if err := unix.Connect(fd, sockaddr(remote)); err != nil {
		return fail("connect", err)
	}
	// Drop whatever was queued before the filter was attached (bounded:
	// the queue is finite and nothing more is accepted).
	var b [1]byte
	for range 4096 {
		if _, _, err := unix.Recvfrom(fd, b[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
			break
		}
	}
	return os.NewFile(uintptr(fd), "etherip-tx:"+remote.String()), nil
}

// mmsg calls recvmmsg or sendmmsg (trap) on msgs without blocking.
func mmsg(trap uintptr, fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	if len(msgs) == 0 {
		return 0, 0
	}
	n, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), e
}
