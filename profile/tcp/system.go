package tcp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// System is a snapshot of the host settings that decide what a profile can
// and cannot change per socket: the system-wide TCP sysctls (of the network
// namespace Fulcrum runs in) and whether this kernel has the newer
// per-socket options. ReadSystem fills it; tests build it by hand.
type System struct {
	SACK, DSACK, Timestamps, WindowScaling bool          // net.ipv4.tcp_sack, tcp_dsack, tcp_timestamps, tcp_window_scaling
	ECN                                    int           // net.ipv4.tcp_ecn: 0 off, 1 request and accept, 2 accept only
	SlowStartAfterIdle                     bool          // net.ipv4.tcp_slow_start_after_idle
	TWReuse                                int           // net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only
	TWReuseDelay                           time.Duration // net.ipv4.tcp_tw_reuse_delay (0 when the kernel has none)
	FinTimeout                             time.Duration // net.ipv4.tcp_fin_timeout
	SynAckRetries                          int           // net.ipv4.tcp_synack_retries
	CongestionControl                      string        // net.ipv4.tcp_congestion_control (the default)
	Available                              []string      // net.ipv4.tcp_available_congestion_control
	Allowed                                []string      // net.ipv4.tcp_allowed_congestion_control (for unprivileged processes)
	RmemMax, WmemMax                       int           // net.core.rmem_max / wmem_max: SO_RCVBUF / SO_SNDBUF cap without CAP_NET_ADMIN
	DefaultQdisc                           string        // net.core.default_qdisc
	RTOMinPerSocket                        bool          // TCP_RTO_MIN_US works (Linux ≥ 6.11)
	DelackMaxPerSocket                     bool          // TCP_DELACK_MAX_US works (Linux ≥ 6.11)
	Privileged                             bool          // running with CAP_NET_ADMIN (approximated by uid 0)
}

// ReadSystem reads the sysctls under /proc/sys and probes the per-socket
// options on a throw-away socket. A sysctl the kernel lacks is left at its
// zero value; the error reports what could not be read at all.
func ReadSystem() (System, error) {
	var s System
	var errs []error
	num := func(path string) int {
		b, err := os.ReadFile(filepath.Join("/proc/sys", path))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			return 0
		}
		n, err := strconv.Atoi(strings.Fields(string(b) + " x")[0])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", path, err))
		}
		return n
	}
	str := func(path string) string {
		b, err := os.ReadFile(filepath.Join("/proc/sys", path))
		if err != nil {
			errs = append(errs, err)
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	s.SACK = num("net/ipv4/tcp_sack") != 0
	s.DSACK = num("net/ipv4/tcp_dsack") != 0
	s.Timestamps = num("net/ipv4/tcp_timestamps") != 0
	s.WindowScaling = num("net/ipv4/tcp_window_scaling") != 0
	s.ECN = num("net/ipv4/tcp_ecn")
	s.SlowStartAfterIdle = num("net/ipv4/tcp_slow_start_after_idle") != 0
	s.TWReuse = num("net/ipv4/tcp_tw_reuse")
	s.TWReuseDelay = time.Duration(num("net/ipv4/tcp_tw_reuse_delay")) * time.Millisecond
	s.FinTimeout = time.Duration(num("net/ipv4/tcp_fin_timeout")) * time.Second
	s.SynAckRetries = num("net/ipv4/tcp_synack_retries")
	s.CongestionControl = str("net/ipv4/tcp_congestion_control")
	s.Available = strings.Fields(str("net/ipv4/tcp_available_congestion_control"))
	s.Allowed = strings.Fields(str("net/ipv4/tcp_allowed_congestion_control"))
	s.RmemMax = num("net/core/rmem_max")
	s.WmemMax = num("net/core/wmem_max")
	s.DefaultQdisc = str("net/core/default_qdisc")
	s.Privileged = os.Geteuid() == 0
	if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
		_, e1 := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_RTO_MIN_US)
		_, e2 := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DELACK_MAX_US)
		s.RTOMinPerSocket, s.DelackMaxPerSocket = e1 == nil, e2 == nil
		unix.Close(fd)
	} else {
		errs = append(errs, fmt.Errorf("probing socket options: %w", err))
	}
	return s, errors.Join(errs...)
}

// AvailableCongestionControls returns the congestion-control algorithms this
// kernel has loaded (net.ipv4.tcp_available_congestion_control). A
// privileged process (CAP_NET_ADMIN) may set any of them per socket; others
// only those in tcp_allowed_congestion_control. A module not loaded yet
// (tcp_htcp, tcp_dctcp, ...) is not listed: load it with modprobe first.
func AvailableCongestionControls() ([]string, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// CheckCongestionControl returns an error listing the available algorithms
// when name is not one of them ("" always passes: the system default).
func CheckCongestionControl(name string, available []string) error {
	if name == "" || slices.Contains(available, name) {
		return nil
	}
	return fmt.Errorf("congestion_control %q is not available in this kernel (available: %s; a module that is not loaded yet needs `modprobe tcp_%s`)",
		name, strings.Join(available, ", "), name)
}

// RuleNotices checks the reference's three proxy-buffer rules for a pair of
// profiles (skipped for a side whose proxy buffers are auto: AutoProxyBuffer
// keeps them):
//
//  1. proxy_buffer_high ≥ the same profile's send_buffer, or a large ACK can
//     empty the send buffer while less data is ready than TCP may send;
//  2. proxy_buffer_low ≥ the peer profile's receive_window, or when the peer
//     reopens its window the buffer can run dry before new data arrives;
//  3. proxy_buffer_high well above proxy_buffer_low (at least RuleGap), or
//     the receive side flaps in and out of the zero window.
//
// An auto send_buffer or receive_window counts at its ceiling.
func RuleNotices(client, server *Profile) []string {
	var out []string
	same := client == server || client.Name == server.Name
	sides := []struct {
		side       string
		self, peer *Profile
	}{{"clientside", client, server}, {"serverside", server, client}}
	for i, sd := range sides {
		if same && i == 1 {
			break
		}
		p := sd.self
		if p.AutoProxyBuffer {
			continue
		}
		who := fmt.Sprintf("%s TCP profile %q", sd.side, p.Name)
		if same {
			who = fmt.Sprintf("TCP profile %q (both sides)", p.Name)
		}
		snd := p.SendBuffer
		if p.AutoSendBuffer {
			snd = p.AutoBufferCeiling
		}
		if p.ProxyBufferHigh < snd {
			out = append(out, fmt.Sprintf("%s: proxy_buffer_high (%d) is smaller than send_buffer (%d): when a large ACK empties the send buffer there is less data ready than TCP may send; raise proxy_buffer_high to at least %d (proxy-buffer rule 1)",
				who, p.ProxyBufferHigh, snd, snd))
		}
		win := sd.peer.ReceiveWindow
		if sd.peer.AutoReceiveWindow {
			win = sd.peer.AutoBufferCeiling
		}
		peer := fmt.Sprintf("the %s profile %q", sides[1-i].side, sd.peer.Name)
		if same {
			peer = "the same profile on the other side"
		}
		if p.ProxyBufferLow < win {
			out = append(out, fmt.Sprintf("%s: proxy_buffer_low (%d) is smaller than the receive_window (%d) of %s: when that side reopens its window, the buffer can run dry before new data arrives; raise proxy_buffer_low to at least %d (proxy-buffer rule 2)",
				who, p.ProxyBufferLow, win, peer, win))
		}
		if gap := p.ProxyBufferHigh - p.ProxyBufferLow; gap < RuleGap {
			out = append(out, fmt.Sprintf("%s: proxy_buffer_high (%d) is only %d bytes above proxy_buffer_low (%d): the receive side will flap in and out of the zero window; keep a gap of at least %d (the reference suggests 64 KB) (proxy-buffer rule 3)",
				who, p.ProxyBufferHigh, gap, p.ProxyBufferLow, RuleGap))
		}
	}
	return out
}

// SystemNotices lists what one profile asks for that this host cannot give
// per socket: system-wide settings (compared with sys, only when the operator
// wrote them: see Profile.Explicit), per-route settings Fulcrum does not
// apply, and per-socket options this kernel lacks.
func SystemNotices(p *Profile, sys System) []string {
	var out []string
	add := func(format string, args ...any) {
		out = append(out, fmt.Sprintf("TCP profile %q: ", p.Name)+fmt.Sprintf(format, args...))
	}
	ex := p.Explicit
	onOff := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	for _, f := range []struct {
		key, sysctl string
		want, have  bool
	}{
		{"selective_acks", "net.ipv4.tcp_sack", p.SACK, sys.SACK},
		{"dsack", "net.ipv4.tcp_dsack", p.DSACK, sys.DSACK},
		{"timestamps", "net.ipv4.tcp_timestamps", p.Timestamps, sys.Timestamps},
		{"window_scaling", "net.ipv4.tcp_window_scaling", p.WindowScaling, sys.WindowScaling},
		{"slow_start_after_idle", "net.ipv4.tcp_slow_start_after_idle", p.SlowStartAfterIdle, sys.SlowStartAfterIdle},
	} {
		if ex[f.key] && f.want != f.have {
			add("%s: %t cannot be set per socket on Linux; the host has %s = %s, which applies to every connection (change it with sysctl -w %s=%s, host-wide)",
				f.key, f.want, f.sysctl, onOff(f.have), f.sysctl, onOff(f.want))
		}
	}
	if ex["ecn"] {
		switch {
		case p.ECN && sys.ECN != 1:
			add("ecn: true cannot be set per socket on Linux; with net.ipv4.tcp_ecn = %d Fulcrum's own connections (serverside) do not request ECN%s; set net.ipv4.tcp_ecn=1 (host-wide) or add `features ecn` to the route towards the pool (ip route change ... features ecn)",
				sys.ECN, map[bool]string{true: " and client requests are refused", false: " (clients that request it still get it)"}[sys.ECN == 0])
		case !p.ECN && sys.ECN != 0:
			add("ecn: false cannot be set per socket on Linux; with net.ipv4.tcp_ecn = %d ECN is still used when a client requests it%s (set net.ipv4.tcp_ecn=0 host-wide to refuse it)",
				sys.ECN, map[bool]string{true: " and requested on serverside connections", false: ""}[sys.ECN == 1])
		}
	}
	if ex["limited_transmit"] && !p.LimitedTransmit {
		add("limited_transmit: false cannot be honoured: Linux always uses limited transmit (RFC 3042) and has no switch for it")
	}
	if ex["time_wait_recycle"] {
		if p.TimeWaitRecycle && sys.TWReuse != 1 {
			add("time_wait_recycle: true is host-wide on Linux: a SYN arriving for a connection in TIME_WAIT is always accepted when its sequence number is newer, but reusing a TIME_WAIT port for serverside connections needs net.ipv4.tcp_tw_reuse=1 (this host has %d%s)",
				sys.TWReuse, map[bool]string{true: ", loopback only", false: ""}[sys.TWReuse == 2])
		} else if !p.TimeWaitRecycle && sys.TWReuse != 0 {
			add("time_wait_recycle: false is host-wide on Linux: this host has net.ipv4.tcp_tw_reuse = %d, so serverside connections may reuse ports in TIME_WAIT", sys.TWReuse)
		}
	}
	if ex["time_wait_timeout"] && p.TimeWaitTimeout != 60*time.Second {
		msg := "time_wait_timeout: Linux holds TIME_WAIT for a fixed 60 s (TCP_TIMEWAIT_LEN) and cannot shorten it per socket"
		if sys.TWReuseDelay > 0 {
			msg += fmt.Sprintf("; with net.ipv4.tcp_tw_reuse=1 a port in TIME_WAIT is reused for new serverside connections after net.ipv4.tcp_tw_reuse_delay (%s on this host, host-wide)", sys.TWReuseDelay)
		}
		add("%s", msg)
	}
	if p.InitCwnd != 0 || p.InitRwnd != 0 {
		var parts []string
		if p.InitCwnd != 0 {
			parts = append(parts, fmt.Sprintf("initcwnd %d", p.InitCwnd))
		}
		if p.InitRwnd != 0 {
			parts = append(parts, fmt.Sprintf("initrwnd %d", p.InitRwnd))
		}
		add("init_cwnd/init_rwnd are per-route settings on Linux and Fulcrum does not change routes (that would affect every program on the host): apply them with `ip route change <route> %s`", strings.Join(parts, " "))
	}
	if p.MinRTO != 0 && !sys.RTOMinPerSocket {
		add("min_rto: this kernel has no TCP_RTO_MIN_US (Linux ≥ 6.11); the kernel's 200 ms minimum applies (per route: ip route change ... rto_min %dms)", p.MinRTO.Milliseconds())
	}
	if !p.DelayedACK && !sys.DelackMaxPerSocket {
		add("delayed_ack: false: this kernel has no TCP_DELACK_MAX_US (Linux ≥ 6.11), so only TCP_QUICKACK is used and the kernel may return to delayed ACKs; per route: ip route change ... quickack 1")
	}
	if p.CongestionControl != "" && !sys.Privileged && len(sys.Allowed) > 0 && !slices.Contains(sys.Allowed, p.CongestionControl) {
		add("congestion_control %q is not in net.ipv4.tcp_allowed_congestion_control (%s) and Fulcrum runs without CAP_NET_ADMIN: setting it will fail", p.CongestionControl, strings.Join(sys.Allowed, " "))
	}
	if !sys.Privileged {
		big := func(key string, n, max int, sysctl string) {
			if max > 0 && n > max {
				add("%s (%d) is above %s (%d) and Fulcrum runs without CAP_NET_ADMIN: the kernel caps it there", key, n, sysctl, max)
			}
		}
		if p.AutoSendBuffer || p.AutoReceiveWindow {
			big("auto_buffer_ceiling", p.AutoBufferCeiling, min(sys.WmemMax, sys.RmemMax), "net.core.wmem_max/rmem_max")
		}
		if !p.AutoSendBuffer {
			big("send_buffer", p.SendBuffer, sys.WmemMax, "net.core.wmem_max")
		}
		if !p.AutoReceiveWindow {
			big("receive_window", p.ReceiveWindow, sys.RmemMax, "net.core.rmem_max")
		}
	}
	return out
}
