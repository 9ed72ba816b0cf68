package testnet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// RTTResult is the outcome of Ping.
type RTTResult struct {
	Sent, Received int
	// Samples holds one RTT per reply, in the order replies arrived.
	Samples []time.Duration
	// Reordered counts replies that arrived after a later-sent one.
	Reordered              int
	Min, Median, Mean, Max time.Duration
	P10, P90               time.Duration
	StdDev                 time.Duration
}

// Ping sends count ICMP echo requests from the client namespace to the
// server (IPv6 if v6), one every interval, and measures each round trip like
// ping(8): the kernel in the server namespace answers, so no user-space
// scheduling on the far side is included, and the arrival time is the
// kernel's receive timestamp, so neither is ours. It waits for stragglers
// up to 2×Delay+2×Jitter+1 s after the last request.
func (w *WAN) Ping(ctx context.Context, count int, interval time.Duration, v6 bool) (RTTResult, error) {
	dst := w.ServerAddr
	if v6 {
		dst = w.ServerAddr6
	}
	cfg := w.Config()
	return Ping(ctx, w.Client, dst, count, interval, 2*(cfg.Delay+cfg.Jitter)+time.Second)
}

// Ping sends count ICMP echo requests from namespace ns to dst using an
// unprivileged ICMP ("ping") socket, and waits up to linger after the last
// one for replies. It enables ping sockets in ns
// (net.ipv4.ping_group_range).
func Ping(ctx context.Context, ns *NS, dst netip.Addr, count int, interval, linger time.Duration) (RTTResult, error) {
	res := RTTResult{}
	if count <= 0 {
		return res, errors.New("testnet: Ping count must be positive")
	}
	if err := ns.SetSysctl("net.ipv4.ping_group_range", "0 2147483647"); err != nil {
		return res, err
	}
	var fd int
	err := ns.Do(func() (err error) {
		if dst.Is4() {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		} else {
			fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		}
		return err
	})
	if err != nil {
		return res, fmt.Errorf("testnet: ping socket in %s: %w", ns.Name(), err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return res, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20); err != nil {
		return res, err
	}
	tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return res, err
	}
	var sa unix.Sockaddr
	reqType := byte(8) // ICMP echo request
	if dst.Is4() {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
		reqType = 128
	}

	sentAt := make([]int64, count) // unix ns; written before the request leaves
	var (
		mu       sync.Mutex
		got      = make([]bool, count)
		maxSeq   = -1
		received int
		done     = make(chan struct{})
	)
	deadline := make(chan time.Time, 1)
	recvErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		oob := make([]byte, 128)
		var end time.Time
		for {
			select {
			case end = <-deadline:
			default:
			}
			if !end.IsZero() && time.Now().After(end) {
				recvErr <- nil
				return
			}
			n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
			now := time.Now()
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					continue
				}
				recvErr <- err
				return
			}
			// ICMP header (8 bytes) then our payload: sequence (4 bytes).
			if n < 12 || (buf[0] != 0 && buf[0] != 129) {
				continue
			}
			seq := int(binary.BigEndian.Uint32(buf[8:12]))
			if seq < 0 || seq >= count {
				continue
			}
			ts := parseTimestampNS(oob[:oobn])
			at := now.UnixNano()
			if !ts.IsZero() && !ts.After(now) {
				at = ts.UnixNano()
			}
			mu.Lock()
			if !got[seq] {
				got[seq] = true
				received++
				res.Samples = append(res.Samples, time.Duration(at-sentAt[seq]))
				if seq < maxSeq {
					res.Reordered++
				}
				maxSeq = max(maxSeq, seq)
				if received == count {
					close(done)
				}
			}
			mu.Unlock()
			if received == count {
				recvErr <- nil
				return
			}
		}
	}()

	pkt := make([]byte, 8+4+52) // 64-byte ICMP message like ping(8)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; i < count; i++ {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				deadline <- time.Now()
				<-recvErr
				return res, ctx.Err()
			}
		}
		pkt[0] = reqType
		binary.BigEndian.PutUint32(pkt[8:12], uint32(i))
		mu.Lock()
		sentAt[i] = time.Now().UnixNano()
		mu.Unlock()
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			deadline <- time.Now()
			<-recvErr
			return res, fmt.Errorf("testnet: ping %s: %w", dst, err)
		}
		res.Sent++
	}
	select {
	case <-done:
	case <-time.After(linger):
	case <-ctx.Done():
	}
	deadline <- time.Now()
	if err := <-recvErr; err != nil {
		return res, err
	}
	mu.Lock()
	defer mu.Unlock()
	res.Received = received
	res.summarise()
	return res, nil
}

func (r *RTTResult) summarise() {
	if len(r.Samples) == 0 {
		return
	}
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r.Min, r.Max = s[0], s[len(s)-1]
	r.Median, r.P10, r.P90 = q(0.5), q(0.1), q(0.9)
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	mean := sum / float64(len(s))
	var ss float64
	for _, v := range s {
		ss += (float64(v) - mean) * (float64(v) - mean)
	}
	r.Mean = time.Duration(mean)
	if len(s) > 1 {
		r.StdDev = time.Duration(math.Sqrt(ss / float64(len(s)-1)))
	}
}

// BulkConfig describes one bulk TCP transfer from the client namespace to
// the server namespace.
type BulkConfig struct {
	// Duration the sender keeps writing (default 10 s), or Bytes to send
	// (takes precedence when set).
	Duration time.Duration
	Bytes    int64
	// CongestionControl is set on the sending socket with TCP_CONGESTION
	// before connect ("" keeps the kernel default).
	CongestionControl string
	// IPv6 uses the IPv6 addresses.
	IPv6 bool
	// Reverse sends from the server to the client instead.
	Reverse bool
}

// BulkResult is what one transfer achieved, measured at the receiver from
// the connect to the last byte (so slow start is included).
type BulkResult struct {
	CongestionControl string // as read back from the sending socket
	Bytes             int64
	Elapsed           time.Duration
	BitsPerSecond     float64 // goodput: payload bits / Elapsed
	// From the sender's TCP_INFO just before it closed:
	Retransmits     uint32 // tcpi_total_retrans (segments)
	SegmentsOut     uint32 // tcpi_segs_out
	SmoothedRTT     time.Duration
	MinRTT          time.Duration
	DeliveryRateBPS float64 // tcpi_delivery_rate, bits/s
}

// Bulk runs one bulk TCP transfer across the WAN with real kernel TCP on
// both ends and returns the receiver's goodput and the sender's TCP_INFO.
func (w *WAN) Bulk(ctx context.Context, cfg BulkConfig) (BulkResult, error) {
	var res BulkResult
	if cfg.Duration <= 0 && cfg.Bytes <= 0 {
		cfg.Duration = 10 * time.Second
	}
	srvNS, cliNS := w.Server, w.Client
	srvAddr := w.ServerAddr
	if cfg.IPv6 {
		srvAddr = w.ServerAddr6
	}
	if cfg.Reverse {
		srvNS, cliNS = w.Client, w.Server
		srvAddr = w.ClientAddr
		if cfg.IPv6 {
			srvAddr = w.ClientAddr6
		}
	}
	network := "tcp4"
	if cfg.IPv6 {
		network = "tcp6"
	}
	ln, err := srvNS.Listen(network, netip.AddrPortFrom(srvAddr, 0).String())
	if err != nil {
		return res, err
	}
	defer ln.Close()

	type recvResult struct {
		n   int64
		end time.Time
		err error
	}
	rch := make(chan recvResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			rch <- recvResult{err: err}
			return
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
		defer stop()
		n, err := io.Copy(io.Discard, c)
		rch <- recvResult{n: n, end: time.Now(), err: err}
	}()

	d := &net.Dialer{}
	if cfg.CongestionControl != "" {
		cc := cfg.CongestionControl
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("TCP_CONGESTION %q: %w (available: %s)", cc, serr, availableCC())
			}
			return nil
		}
	}
	start := time.Now()
	conn, err := cliNS.Dial(ctx, d, network, ln.Addr().String())
	if err != nil {
		ln.Close()
		<-rch
		return res, fmt.Errorf("testnet: bulk dial: %w", err)
	}
	tc := conn.(*net.TCPConn)
	stopW := context.AfterFunc(ctx, func() { tc.SetWriteDeadline(time.Now()) })
	defer stopW()

	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	var sent int64
	var werr error
	end := start.Add(cfg.Duration)
	for {
		chunk := buf
		if cfg.Bytes > 0 {
			if sent >= cfg.Bytes {
				break
			}
			chunk = buf[:min(int64(len(buf)), cfg.Bytes-sent)]
		} else if !time.Now().Before(end) {
			break
		}
		n, err := tc.Write(chunk)
		sent += int64(n)
		if err != nil {
			werr = err
			break
		}
	}
	if werr == nil {
		// Wait until everything is acknowledged, so TCP_INFO covers the
		// whole transfer, then close.
		werr = waitUnacked(ctx, tc)
	}
	res.CongestionControl, res.Retransmits, res.SegmentsOut, res.SmoothedRTT, res.MinRTT, res.DeliveryRateBPS = tcpInfo(tc)
	_ = tc.CloseWrite()
	r := <-rch
	tc.Close()
	if werr != nil {
		return res, fmt.Errorf("testnet: bulk send: %w", werr)
	}
	if r.err != nil {
		return res, fmt.Errorf("testnet: bulk receive: %w", r.err)
	}
	if r.n != sent {
		return res, fmt.Errorf("testnet: bulk: received %d bytes, sent %d", r.n, sent)
	}
	res.Bytes = r.n
	res.Elapsed = r.end.Sub(start)
	res.BitsPerSecond = float64(r.n) * 8 / res.Elapsed.Seconds()
	return res, nil
}

// waitUnacked polls TCP_INFO until the send queue is acknowledged.
func waitUnacked(ctx context.Context, c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var outq int
		var ierr error
		if err := rc.Control(func(fd uintptr) {
			outq, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		}); err != nil {
			return err
		}
		if ierr != nil {
			return ierr
		}
		if outq == 0 {
			return nil
		}
		if ctxDone(ctx) {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func tcpInfo(c *net.TCPConn) (cc string, retrans, segsOut uint32, srtt, minRTT time.Duration, rate float64) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		cc, _ = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION)
		ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		retrans = ti.Total_retrans
		segsOut = ti.Segs_out
		srtt = time.Duration(ti.Rtt) * time.Microsecond
		minRTT = time.Duration(ti.Min_rtt) * time.Microsecond
		rate = float64(ti.Delivery_rate) * 8
	})
	return
}

// availableCC lists the congestion control algorithms this kernel offers.
func availableCC() string {
	b, err := readFileTrim("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		return "unknown"
	}
	return b
}

func readFileTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}
