package tcp

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Side says which side of the proxy a socket is on.
type Side uint8

const (
	Clientside Side = iota // accepted from a client
	Serverside             // dialed to a pool member
)

func (s Side) String() string {
	if s == Serverside {
		return "serverside"
	}
	return "clientside"
}

// AutoInitial is the buffer size an auto send_buffer or receive_window starts
// from (the non-scaled window, as the reference's fixed profiles); AutoTune
// grows it.
const AutoInitial = 64 << 10

// ListenControl sets, on a listening socket before bind/listen, what
// accepted connections inherit or what must be decided before the SYN-ACK:
// the receive buffer and window clamp (they fix the window scale offered in
// the SYN-ACK), the send buffer, the MSS advertised, deferred accept, the
// congestion control, and the ToS / traffic class / priority (so the
// SYN-ACK is marked too). Use it as net.ListenConfig.Control; ApplyConn still
// runs on every accepted connection.
func (p *Profile) ListenControl(network, address string, c syscall.RawConn) error {
	return control(c, func(fd int) error { return p.applyListen(fd) })
}

// ApplyListener applies ListenControl's options to a listener that is
// already open (a reload keeps listeners). Buffers and MSS changed on an
// open listener reach connections accepted afterwards; the window scale of
// connections still in the SYN queue does not change.
func (p *Profile) ApplyListener(ln *net.TCPListener) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	return control(rc, func(fd int) error { return p.applyListen(fd) })
}

// DialControl sets, on a serverside socket before connect, what must be in
// place for the SYN: SYN retransmissions, buffers and window clamp (window
// scale), MSS, congestion control, ToS / traffic class / priority and the
// user timeout. Use it as net.Dialer.Control; call ApplyConn after connect.
func (p *Profile) DialControl(network, address string, c syscall.RawConn) error {
	return control(c, func(fd int) error { return p.applyDial(fd, 0) })
}

// DialControlMSS is DialControl for a profile with ProxyMSS: it also sets
// the MSS to clientMSS (the clientside connection's NegotiatedMSS) when that
// is smaller than the profile's own. With ProxyMSS off it is DialControl.
func (p *Profile) DialControlMSS(clientMSS int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		mss := 0
		if p.ProxyMSS && clientMSS >= MinMSS {
			mss = clientMSS
		}
		return control(c, func(fd int) error { return p.applyDial(fd, mss) })
	}
}

// ApplyConn applies every per-connection option to an accepted (Clientside)
// or connected (Serverside) socket: Nagle, delayed ACK, keep-alive, FIN_WAIT_2
// lifetime, user timeout, minimum RTO, buffers, not-sent low-water mark,
// pacing, congestion control and marking. It overrides what Go sets by
// default (TCP_NODELAY on, keep-alive every 15 s). Options the kernel lacks
// (TCP_RTO_MIN_US, TCP_DELACK_MAX_US before Linux 6.11) are skipped:
// SystemNotices reports them. Every other failure is returned, joined.
func (p *Profile) ApplyConn(c *net.TCPConn, side Side) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return control(rc, func(fd int) error { return p.applyConn(fd, side) })
}

func control(c syscall.RawConn, f func(fd int) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

type applier struct {
	fd   int
	errs []error
}

func (a *applier) int(level, opt int, name string, v int) {
	if err := unix.SetsockoptInt(a.fd, level, opt, v); err != nil {
		a.errs = append(a.errs, fmt.Errorf("%s=%d: %w", name, v, err))
	}
}

// optional is int for options a kernel may lack.
func (a *applier) optional(level, opt int, name string, v int) {
	err := unix.SetsockoptInt(a.fd, level, opt, v)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		a.errs = append(a.errs, fmt.Errorf("%s=%d: %w", name, v, err))
	}
}

// buf sets SO_SNDBUF/SO_RCVBUF, with the FORCE variant first so that a
// privileged process is not capped at net.core.wmem_max/rmem_max.
func (a *applier) buf(force, opt int, name string, v int) {
	if err := unix.SetsockoptInt(a.fd, unix.SOL_SOCKET, force, v); err == nil {
		return
	}
	a.int(unix.SOL_SOCKET, opt, name, v)
}

func (a *applier) err() error { return errors.Join(a.errs...) }

func family(fd int) int {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return unix.AF_INET
	}
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

// buffers sets the fixed send buffer and receive window. The kernel doubles
// what SO_SNDBUF/SO_RCVBUF are given to leave room for its own overhead, so
// about the configured number of payload bytes fits; TCP_WINDOW_CLAMP caps
// the advertised window at exactly receive_window. For an auto receive
// window the clamp is the ceiling, so the window scale negotiated in the
// handshake leaves room to grow.
func (p *Profile) buffers(a *applier, preConnect bool) {
	if !p.AutoSendBuffer && p.SendBuffer > 0 {
		a.buf(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF", p.SendBuffer)
	}
	switch {
	case !p.AutoReceiveWindow && p.ReceiveWindow > 0:
		a.buf(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF", p.ReceiveWindow)
		a.int(unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP", p.ReceiveWindow)
	case p.AutoReceiveWindow && preConnect:
		a.int(unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP", p.AutoBufferCeiling)
	}
}

func (p *Profile) marking(a *applier) {
	if p.IPToS < 0 && p.IPv6TClass < 0 && p.LinkQoS < 0 {
		return // nothing to mark: spare the getsockname
	}
	fam := family(a.fd)
	if p.IPToS >= 0 {
		if fam == unix.AF_INET6 {
			// Reaches IPv4-mapped connections of a dual-stack socket; an
			// IPv6-only socket may refuse it, which does no harm.
			_ = unix.SetsockoptInt(a.fd, unix.IPPROTO_IP, unix.IP_TOS, p.IPToS)
		} else {
			a.int(unix.IPPROTO_IP, unix.IP_TOS, "IP_TOS", p.IPToS)
		}
	}
	if p.IPv6TClass >= 0 && fam == unix.AF_INET6 {
		a.int(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, "IPV6_TCLASS", p.IPv6TClass)
	}
	if p.LinkQoS >= 0 {
		a.int(unix.SOL_SOCKET, unix.SO_PRIORITY, "SO_PRIORITY", p.LinkQoS)
	}
}

func (p *Profile) congestion(a *applier) {
	if p.CongestionControl == "" {
		return
	}
	if err := unix.SetsockoptString(a.fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, p.CongestionControl); err != nil {
		a.errs = append(a.errs, fmt.Errorf("TCP_CONGESTION=%s: %w", p.CongestionControl, err))
	}
}

func (p *Profile) applyListen(fd int) error {
	a := &applier{fd: fd}
	p.buffers(a, true)
	p.autoInitial(a)
	if p.MSS > 0 {
		a.int(unix.IPPROTO_TCP, unix.TCP_MAXSEG, "TCP_MAXSEG", p.MSS)
	}
	defer0 := 0
	if p.DeferredAccept {
		defer0 = int(DeferAcceptLimit / time.Second)
	}
	a.int(unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", defer0)
	p.congestion(a)
	p.marking(a)
	p.inherited(a)
	return a.err()
}

func (p *Profile) applyDial(fd int, proxyMSS int) error {
	a := &applier{fd: fd}
	p.buffers(a, true)
	p.autoInitial(a)
	mss := p.MSS
	if proxyMSS > 0 && (mss == 0 || proxyMSS < mss) {
		mss = proxyMSS
	}
	if mss > 0 {
		a.int(unix.IPPROTO_TCP, unix.TCP_MAXSEG, "TCP_MAXSEG", mss)
	}
	a.int(unix.IPPROTO_TCP, unix.TCP_SYNCNT, "TCP_SYNCNT", p.SynMaxRetrans)
	p.congestion(a)
	p.marking(a)
	p.inherited(a)
	return a.err()
}

// inherited sets the per-connection options that Linux copies from a
// listening socket to every connection it accepts (the child socket is a
// clone of the listener) and that a dialing socket keeps from before
// connect: keep-alive, FIN_WAIT_2 lifetime, user timeout, minimum RTO,
// delayed-ACK cap, not-sent low-water mark and pacing. Setting them once on
// the listener (or before connect) spares every connection the system calls.
func (p *Profile) inherited(a *applier) {
	if p.KeepAliveInterval > 0 {
		s := int(p.KeepAliveInterval / time.Second)
		a.int(unix.SOL_SOCKET, unix.SO_KEEPALIVE, "SO_KEEPALIVE", 1)
		a.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, "TCP_KEEPIDLE", s)
		a.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, "TCP_KEEPINTVL", s)
		a.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, "TCP_KEEPCNT", KeepAliveProbes)
	} else {
		a.int(unix.SOL_SOCKET, unix.SO_KEEPALIVE, "SO_KEEPALIVE", 0)
	}
	if p.FinWait2Timeout > 0 {
		a.int(unix.IPPROTO_TCP, unix.TCP_LINGER2, "TCP_LINGER2", int(p.FinWait2Timeout/time.Second))
	}
	if p.UserTimeout > 0 {
		a.int(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", int(p.UserTimeout/time.Millisecond))
	}
	if p.MinRTO > 0 {
		a.optional(unix.IPPROTO_TCP, unix.TCP_RTO_MIN_US, "TCP_RTO_MIN_US", int(p.MinRTO/time.Microsecond))
	}
	if !p.DelayedACK {
		// Cap the delayed-ACK timer at the shortest the kernel accepts (two
		// jiffies: 2 ms at HZ=1000, 8 ms at HZ=250): TCP_QUICKACK alone does
		// not stick, the kernel returns to delayed ACKs on its own.
		for _, us := range []int{1000, 2000, 4000, 8000, 10000, 20000} {
			err := unix.SetsockoptInt(a.fd, unix.IPPROTO_TCP, unix.TCP_DELACK_MAX_US, us)
			if err == nil || errors.Is(err, unix.ENOPROTOOPT) {
				break
			}
		}
	}
	if p.NotSentLowat > 0 {
		a.int(unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", p.NotSentLowat)
	}
	if p.PacingRate > 0 {
		if err := unix.SetsockoptUint64(a.fd, unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE, uint64(p.PacingRate)); err != nil {
			a.errs = append(a.errs, fmt.Errorf("SO_MAX_PACING_RATE=%d: %w", p.PacingRate, err))
		}
	}
}

// autoInitial gives auto buffers their starting size (AutoTune grows them).
func (p *Profile) autoInitial(a *applier) {
	if p.AutoSendBuffer {
		a.buf(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF", min(AutoInitial, p.AutoBufferCeiling))
	}
	if p.AutoReceiveWindow {
		a.buf(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF", min(AutoInitial, p.AutoBufferCeiling))
	}
}

// Finish applies, to a connection accepted from a listener set up with
// ListenControl (or ApplyListener) or dialed with DialControl, the little
// that such a socket does not already have: Go turns Nagle off on every new
// connection (TCP_NODELAY), so a profile with Nagle on turns it back on;
// delayed ACK off needs TCP_QUICKACK on the connection itself; and the link
// QoS priority (SO_PRIORITY) is not inherited from the listener. Everything
// else was set once on the listener (accepted sockets inherit it) or before
// connect. This is what the data path calls per connection; ApplyConn sets
// everything on a socket of unknown origin.
func (p *Profile) Finish(c *net.TCPConn) error {
	if !p.Nagle && p.DelayedACK && p.LinkQoS < 0 {
		return nil // Go's TCP_NODELAY=1 is what the profile wants
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return control(rc, func(fd int) error {
		a := &applier{fd: fd}
		if p.Nagle {
			a.int(unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY", 0)
		}
		if !p.DelayedACK {
			a.int(unix.IPPROTO_TCP, unix.TCP_QUICKACK, "TCP_QUICKACK", 1)
		}
		if p.LinkQoS >= 0 {
			// Not inherited: Linux gives an accepted socket the SYN's
			// priority, not the listener's (the integration test checks).
			a.int(unix.SOL_SOCKET, unix.SO_PRIORITY, "SO_PRIORITY", p.LinkQoS)
		}
		return a.err()
	})
}

func (p *Profile) applyConn(fd int, side Side) error {
	a := &applier{fd: fd}
	nodelay := 1
	if p.Nagle {
		nodelay = 0
	}
	a.int(unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY", nodelay)
	if !p.DelayedACK {
		a.int(unix.IPPROTO_TCP, unix.TCP_QUICKACK, "TCP_QUICKACK", 1)
	}
	p.inherited(a)
	p.buffers(a, false)
	p.autoInitial(a)
	if side == Clientside {
		// Accepted sockets inherit these from the listener; set them again
		// so a listener shared by a reload or opened elsewhere cannot leave
		// stale values.
		p.congestion(a)
	}
	p.marking(a)
	return a.err()
}

// QuickAck asks the kernel to acknowledge what it has received now rather
// than after the delayed-ACK timer. The data path calls it after a read that
// drained the socket (the end of the peer's burst, the closest a user-space
// proxy gets to seeing PSH) on profiles with AckOnPush, and after every read
// on profiles with DelayedACK off (Linux leaves quick-ACK mode on its own).
func QuickAck(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return control(rc, func(fd int) error { return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
}

// Abort closes c with a RST instead of a FIN (SO_LINGER with a zero
// timeout): what the data path does on idle expiry with ResetOnTimeout.
func Abort(c *net.TCPConn) error {
	if err := c.SetLinger(0); err != nil {
		c.Close()
		return err
	}
	return c.Close()
}

// NegotiatedMSS returns the MSS the kernel uses to send on c (TCP_MAXSEG on
// a connected socket), for ProxyMSS.
func NegotiatedMSS(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mss int
	err = control(rc, func(fd int) (e error) {
		mss, e = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
		return e
	})
	return mss, err
}

// Applied is every option read back from a socket with getsockopt, plus the
// options negotiated in the handshake (from TCP_INFO), for tests and
// `fulcrum show connections`. Sizes are what the kernel reports: SO_SNDBUF
// and SO_RCVBUF read back as twice the value set (the kernel's allowance for
// its own overhead).
type Applied struct {
	SendBuffer        int    `json:"send_buffer"`        // SO_SNDBUF (kernel value)
	ReceiveBuffer     int    `json:"receive_buffer"`     // SO_RCVBUF (kernel value)
	WindowClamp       int    `json:"window_clamp"`       // TCP_WINDOW_CLAMP
	NoDelay           bool   `json:"nodelay"`            // TCP_NODELAY (Nagle off)
	QuickAck          bool   `json:"quickack"`           // TCP_QUICKACK (not in delayed-ACK "pingpong" mode)
	DelackMaxUS       int    `json:"delack_max_us"`      // TCP_DELACK_MAX_US, -1 when the kernel lacks it
	KeepAlive         bool   `json:"keepalive"`          // SO_KEEPALIVE
	KeepIdle          int    `json:"keepidle_s"`         // TCP_KEEPIDLE
	KeepIntvl         int    `json:"keepintvl_s"`        // TCP_KEEPINTVL
	KeepCnt           int    `json:"keepcnt"`            // TCP_KEEPCNT
	Linger2           int    `json:"linger2_s"`          // TCP_LINGER2 (the kernel reports tcp_fin_timeout when unset)
	SynCnt            int    `json:"syncnt"`             // TCP_SYNCNT (0 = net.ipv4.tcp_syn_retries)
	UserTimeoutMS     int    `json:"user_timeout_ms"`    // TCP_USER_TIMEOUT
	RTOMinUS          int    `json:"rto_min_us"`         // TCP_RTO_MIN_US, -1 when the kernel lacks it
	MaxSeg            int    `json:"maxseg"`             // TCP_MAXSEG (effective MSS once connected)
	CongestionControl string `json:"congestion_control"` // TCP_CONGESTION
	NotSentLowat      int64  `json:"notsent_lowat"`      // TCP_NOTSENT_LOWAT (4294967295 = off)
	MaxPacingRate     uint64 `json:"max_pacing_rate"`    // SO_MAX_PACING_RATE, bytes/s (0 = unlimited)
	TOS               int    `json:"tos"`                // IP_TOS (-1 on an IPv6-only socket)
	TClass            int    `json:"tclass"`             // IPV6_TCLASS (-1 on IPv4)
	Priority          int    `json:"priority"`           // SO_PRIORITY
	DeferAcceptS      int    `json:"defer_accept_s"`     // TCP_DEFER_ACCEPT (listeners)
	SACK              bool   `json:"sack"`               // negotiated (TCP_INFO)
	Timestamps        bool   `json:"timestamps"`         // negotiated
	WindowScaling     bool   `json:"window_scaling"`     // negotiated
	ECN               bool   `json:"ecn"`                // negotiated
	SndWScale         int    `json:"snd_wscale"`         // peer's window scale
	RcvWScale         int    `json:"rcv_wscale"`         // our window scale
}

// ReadBack reads every option Fulcrum sets back from c.
func ReadBack(c *net.TCPConn) (Applied, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Applied{}, err
	}
	var ap Applied
	err = control(rc, func(fd int) error { return readBack(fd, &ap) })
	return ap, err
}

// ReadBackListener is ReadBack for a listening socket (no TCP_INFO options).
func ReadBackListener(ln *net.TCPListener) (Applied, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return Applied{}, err
	}
	var ap Applied
	err = control(rc, func(fd int) error { return readBack(fd, &ap) })
	return ap, err
}

func readBack(fd int, ap *Applied) error {
	var errs []error
	get := func(level, opt int, name string) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return v
	}
	optional := func(level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			return -1
		}
		return v
	}
	ap.SendBuffer = get(unix.SOL_SOCKET, unix.SO_SNDBUF, "SO_SNDBUF")
	ap.ReceiveBuffer = get(unix.SOL_SOCKET, unix.SO_RCVBUF, "SO_RCVBUF")
	ap.WindowClamp = get(unix.IPPROTO_TCP, unix.TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP")
	ap.NoDelay = get(unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY") != 0
	ap.QuickAck = get(unix.IPPROTO_TCP, unix.TCP_QUICKACK, "TCP_QUICKACK") != 0
	ap.DelackMaxUS = optional(unix.IPPROTO_TCP, unix.TCP_DELACK_MAX_US)
	ap.KeepAlive = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE, "SO_KEEPALIVE") != 0
	ap.KeepIdle = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, "TCP_KEEPIDLE")
	ap.KeepIntvl = get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, "TCP_KEEPINTVL")
	ap.KeepCnt = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, "TCP_KEEPCNT")
	ap.Linger2 = get(unix.IPPROTO_TCP, unix.TCP_LINGER2, "TCP_LINGER2")
	ap.SynCnt = get(unix.IPPROTO_TCP, unix.TCP_SYNCNT, "TCP_SYNCNT")
	ap.UserTimeoutMS = get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT")
	ap.RTOMinUS = optional(unix.IPPROTO_TCP, unix.TCP_RTO_MIN_US)
	ap.MaxSeg = get(unix.IPPROTO_TCP, unix.TCP_MAXSEG, "TCP_MAXSEG")
	ap.DeferAcceptS = get(unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT")
	ap.NotSentLowat = int64(uint32(get(unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT")))
	if cc, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION); err == nil {
		ap.CongestionControl = cc
	} else {
		errs = append(errs, fmt.Errorf("TCP_CONGESTION: %w", err))
	}
	if r, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_MAX_PACING_RATE); err == nil {
		if r != ^uint64(0) {
			ap.MaxPacingRate = r
		}
	} else {
		errs = append(errs, fmt.Errorf("SO_MAX_PACING_RATE: %w", err))
	}
	ap.Priority = get(unix.SOL_SOCKET, unix.SO_PRIORITY, "SO_PRIORITY")
	ap.TOS = optional(unix.IPPROTO_IP, unix.IP_TOS)
	ap.TClass = -1
	if family(fd) == unix.AF_INET6 {
		ap.TClass = get(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, "IPV6_TCLASS")
	}
	if ti, raw, err := tcpInfo(fd); err == nil && ti.State != stateListen {
		ap.SACK = ti.Options&optSACK != 0
		ap.Timestamps = ti.Options&optTimestamps != 0
		ap.WindowScaling = ti.Options&optWScale != 0
		ap.ECN = ti.Options&optECN != 0
		ap.SndWScale, ap.RcvWScale = int(raw[6]&0x0f), int(raw[6]>>4)
	}
	return errors.Join(errs...)
}

// TCP_INFO tcpi_options bits (include/uapi/linux/tcp.h).
const (
	optTimestamps = 1
	optSACK       = 2
	optWScale     = 4
	optECN        = 8
	optECNSeen    = 16
	stateListen   = 10 // TCP_LISTEN
)

// tcpInfo reads TCP_INFO, returning the struct and its raw bytes (the
// window-scale and app-limited bit fields sit in what x/sys/unix leaves as
// padding).
func tcpInfo(fd int) (*unix.TCPInfo, *[unix.SizeofTCPInfo]byte, error) {
	ti := new(unix.TCPInfo)
	l := uint32(unix.SizeofTCPInfo)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(ti)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return nil, nil, e
	}
	return ti, (*[unix.SizeofTCPInfo]byte)(unsafe.Pointer(ti)), nil
}
