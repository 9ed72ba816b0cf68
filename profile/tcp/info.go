package tcp

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Info is the kernel's live view of one connection (TCP_INFO), for the data
// path's auto sizing and `fulcrum show connections`.
type Info struct {
	State         string        `json:"state"`    // ESTABLISHED, FIN_WAIT2, ...
	CAState       string        `json:"ca_state"` // open, disorder, cwr, recovery, loss
	RTT           time.Duration `json:"rtt_ns"`   // smoothed RTT
	MinRTT        time.Duration `json:"min_rtt_ns"`
	RTTVar        time.Duration `json:"rttvar_ns"`
	RTO           time.Duration `json:"rto_ns"`
	RcvRTT        time.Duration `json:"rcv_rtt_ns"` // receiver-side RTT estimate
	Cwnd          uint32        `json:"cwnd"`       // segments
	Ssthresh      uint32        `json:"ssthresh"`   // segments (0 = still in initial slow start)
	SndMSS        uint32        `json:"snd_mss"`
	RcvMSS        uint32        `json:"rcv_mss"`
	PMTU          uint32        `json:"pmtu"`
	Retransmits   uint8         `json:"retransmits"` // unrecovered RTO timeouts now
	Probes        uint8         `json:"probes"`      // unanswered zero-window or keep-alive probes
	TotalRetrans  uint32        `json:"total_retrans"`
	Lost          uint32        `json:"lost"`
	Unacked       uint32        `json:"unacked"`
	DeliveryRate  uint64        `json:"delivery_rate"` // bytes/s
	AppLimited    bool          `json:"app_limited"`   // the delivery rate was measured while the application had nothing to send
	PacingRate    uint64        `json:"pacing_rate"`   // bytes/s
	MaxPacingRate uint64        `json:"max_pacing_rate"`
	BytesAcked    uint64        `json:"bytes_acked"`
	BytesReceived uint64        `json:"bytes_received"`
	BytesSent     uint64        `json:"bytes_sent"`
	BytesRetrans  uint64        `json:"bytes_retrans"`
	SndWnd        uint32        `json:"snd_wnd"`   // peer's advertised window
	RcvWnd        uint32        `json:"rcv_wnd"`   // our advertised window
	RcvSpace      uint32        `json:"rcv_space"` // bytes the application read in the last receiver RTT
	NotSentBytes  uint32        `json:"notsent_bytes"`
	BusyTime      time.Duration `json:"busy_ns"`
	RwndLimited   time.Duration `json:"rwnd_limited_ns"`
	SndbufLimited time.Duration `json:"sndbuf_limited_ns"`
	SACK          bool          `json:"sack"`
	Timestamps    bool          `json:"timestamps"`
	WindowScaling bool          `json:"window_scaling"`
	ECN           bool          `json:"ecn"`
	SndWScale     int           `json:"snd_wscale"`
	RcvWScale     int           `json:"rcv_wscale"`
}

var tcpStates = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

var caStates = [...]string{"open", "disorder", "cwr", "recovery", "loss"}

// GetInfo reads TCP_INFO from c.
func GetInfo(c *net.TCPConn) (Info, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Info{}, err
	}
	var in Info
	err = control(rc, func(fd int) error {
		ti, raw, err := tcpInfo(fd)
		if err != nil {
			return fmt.Errorf("TCP_INFO: %w", err)
		}
		in = infoFrom(ti, raw)
		return nil
	})
	return in, err
}

func infoFrom(ti *unix.TCPInfo, raw *[unix.SizeofTCPInfo]byte) Info {
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	us64 := func(v uint64) time.Duration { return time.Duration(min(v, 1<<62/1000)) * time.Microsecond }
	in := Info{
		RTT: us(ti.Rtt), MinRTT: us(ti.Min_rtt), RTTVar: us(ti.Rttvar), RTO: us(ti.Rto), RcvRTT: us(ti.Rcv_rtt),
		Cwnd: ti.Snd_cwnd, SndMSS: ti.Snd_mss, RcvMSS: ti.Rcv_mss, PMTU: ti.Pmtu,
		Retransmits: ti.Retransmits, Probes: ti.Probes, TotalRetrans: ti.Total_retrans, Lost: ti.Lost, Unacked: ti.Unacked,
		DeliveryRate: ti.Delivery_rate, AppLimited: raw[7]&1 != 0, PacingRate: ti.Pacing_rate, MaxPacingRate: ti.Max_pacing_rate,
		BytesAcked: ti.Bytes_acked, BytesReceived: ti.Bytes_received, BytesSent: ti.Bytes_sent, BytesRetrans: ti.Bytes_retrans,
		SndWnd: ti.Snd_wnd, RcvWnd: ti.Rcv_wnd, RcvSpace: ti.Rcv_space, NotSentBytes: ti.Notsent_bytes,
		BusyTime: us64(ti.Busy_time), RwndLimited: us64(ti.Rwnd_limited), SndbufLimited: us64(ti.Sndbuf_limited),
		SACK: ti.Options&optSACK != 0, Timestamps: ti.Options&optTimestamps != 0, WindowScaling: ti.Options&optWScale != 0, ECN: ti.Options&optECN != 0,
		SndWScale: int(raw[6] & 0x0f), RcvWScale: int(raw[6] >> 4),
	}
	if ti.Snd_ssthresh < 1<<30 {
		in.Ssthresh = ti.Snd_ssthresh
	}
	if ti.Max_pacing_rate == ^uint64(0) {
		in.MaxPacingRate = 0
	}
	if ti.Pacing_rate == ^uint64(0) {
		in.PacingRate = 0
	}
	if int(ti.State) < len(tcpStates) {
		in.State = tcpStates[ti.State]
	}
	if int(ti.Ca_state) < len(caStates) {
		in.CAState = caStates[ti.Ca_state]
	}
	return in
}

// BDP is the bandwidth-delay product the kernel has measured for a
// connection, in bytes: the largest of the delivery rate × minimum RTT (what
// the path carries), the congestion window (what the sender may have in
// flight) and the receive space (what the application read in one receiver
// RTT). 0 when nothing has been measured yet.
func (in Info) BDP() int {
	bdp := uint64(0)
	if in.DeliveryRate > 0 && in.MinRTT > 0 {
		bdp = in.DeliveryRate * uint64(in.MinRTT) / uint64(time.Second)
	}
	if w := uint64(in.Cwnd) * uint64(in.SndMSS); in.BytesAcked >= w {
		// Only once the sender has had that much acknowledged: a socket
		// that only receives keeps its initial window, which says nothing.
		bdp = max(bdp, w)
	}
	bdp = max(bdp, uint64(in.RcvSpace))
	return int(min(bdp, 1<<40))
}

// Headroom is the factor AutoTune leaves above the measured BDP: a buffer
// of exactly one BDP idles the path after every loss and cannot let the
// window double in slow start.
const Headroom = 2

// autoTarget is the payload size AutoTune asks for: Headroom × BDP, at least
// AutoInitial, at most ceiling.
func autoTarget(bdp, ceiling int) int {
	return max(min(Headroom*bdp, ceiling), min(AutoInitial, ceiling))
}

// AutoTune resizes SO_SNDBUF (AutoSendBuffer) and SO_RCVBUF
// (AutoReceiveWindow) towards Headroom × the BDP measured in info, clamped
// to [current, AutoBufferCeiling]: buffers only grow, so a quiet moment does
// not shrink a connection that needs them. It returns the kernel's values
// afterwards (SO_SNDBUF, SO_RCVBUF as getsockopt reports them: twice the
// payload bytes set). The data path calls it periodically (every few RTTs,
// or every 100 ms) on connections whose profile has auto buffers; the
// window can then grow by about Headroom× per call while the path has room.
func (p *Profile) AutoTune(c *net.TCPConn, info Info) (sndbuf, rcvbuf int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	err = control(rc, func(fd int) error {
		a := &applier{fd: fd}
		target := autoTarget(info.BDP(), p.AutoBufferCeiling)
		cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err == nil && p.AutoSendBuffer && 2*target > cur {
			a.buf(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF", target)
		}
		cur, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		if err == nil && p.AutoReceiveWindow && 2*target > cur {
			a.buf(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF", target)
		}
		sndbuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		a.errs = append(a.errs, err)
		rcvbuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		a.errs = append(a.errs, err)
		return errors.Join(a.errs...)
	})
	return sndbuf, rcvbuf, err
}

// AutoProxyBuffer computes proxy_buffer_high and proxy_buffer_low for one
// direction of a connection pair from the two sides' measured BDPs, honouring
// the reference's three rules: to is the side the buffered data is written to
// (its send buffer drains the proxy buffer), from the side it is read from
// (its receive window refills it). For the clientside buffer call
// AutoProxyBuffer(clientInfo, serverInfo, ceiling); for the serverside one,
// the other way round.
//
//	low  = max(Headroom × BDP(from), 64 KiB)                rule 2
//	high = max(Headroom × BDP(to), low + max(RuleGap, low/2)) rules 1 and 3
//
// both capped at ceiling, with low kept at least RuleGap below high.
func AutoProxyBuffer(to, from Info, ceiling int) (high, low int) {
	ceiling = max(ceiling, MinCeiling)
	low = max(Headroom*from.BDP(), AutoInitial)
	high = max(Headroom*to.BDP(), low+max(RuleGap, low/2))
	high = min(high, ceiling)
	low = min(low, high-RuleGap)
	return high, low
}
