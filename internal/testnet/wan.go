package testnet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Distribution is the shape of the per-packet jitter.
type Distribution int

const (
	// Uniform draws the extra delay uniformly from [-Jitter, +Jitter].
	Uniform Distribution = iota
	// Normal draws it from a normal distribution with standard deviation
	// Jitter (clamped so the total delay is never negative).
	Normal
)

func (d Distribution) String() string {
	switch d {
	case Uniform:
		return "uniform"
	case Normal:
		return "normal"
	}
	return "Distribution(" + strconv.Itoa(int(d)) + ")"
}

// WANConfig describes the emulated path. Delay, jitter, loss and rate apply
// to each direction independently (a round trip sees 2×Delay).
type WANConfig struct {
	// Delay is the one-way delay in each direction, 0–10 s.
	Delay time.Duration
	// Jitter varies each frame's delay (see JitterDist). Without Reorder,
	// a frame never leaves before the one received ahead of it, so jitter
	// then also delays the frames behind a slow one, as on a real serial
	// link.
	Jitter     time.Duration
	JitterDist Distribution
	// Reorder lets jitter reorder frames.
	Reorder bool
	// Loss is the probability, 0–1, that a frame is dropped, drawn
	// independently per frame and direction (ARP is never dropped).
	Loss float64
	// RateBits limits each direction to this many bits per second with a
	// tc tbf qdisc on the router's egress veths; 0 means unlimited. tbf
	// counts whole Ethernet frames, so TCP goodput is about 95% of it.
	RateBits int64
	// Burst is tbf's bucket size in bytes; 0 sizes it from the rate
	// (2 ms of traffic, at least 3 full frames).
	Burst int
	// QueueBytes is tbf's queue limit in bytes; 0 sizes it to one
	// bandwidth-delay product (RateBits × 2×Delay), at least 64 full
	// frames, the classic router buffer that lets one TCP flow fill the
	// link without tbf dropping more than congestion requires.
	QueueBytes int
	// MTU of every interface on the path; 0 means 1500.
	MTU int
	// Seed makes loss and jitter reproducible; 0 picks a random seed.
	Seed uint64
	// Name prefixes the namespace names; "" means "fwan-<pid>-<random>".
	Name string
	// InProcess runs the delay line as goroutines of this process instead
	// of in a re-executed child (see the package documentation). Its
	// timing then suffers whenever the process itself is busy.
	InProcess bool
	// NoRealtime leaves the delay line's sender threads in the normal
	// scheduling class instead of SCHED_FIFO priority 10.
	NoRealtime bool
}

func (c WANConfig) validate() error {
	var errs []error
	if c.Delay < 0 || c.Delay > 10*time.Second {
		errs = append(errs, fmt.Errorf("wan: Delay %v outside 0–10s", c.Delay))
	}
	if c.Jitter < 0 || c.Jitter > 10*time.Second {
		errs = append(errs, fmt.Errorf("wan: Jitter %v outside 0–10s", c.Jitter))
	}
	if c.JitterDist != Uniform && c.JitterDist != Normal {
		errs = append(errs, fmt.Errorf("unknown JitterDist %v", c.JitterDist))
	}
	if math.IsNaN(c.Loss) || c.Loss < 0 || c.Loss > 1 {
		errs = append(errs, fmt.Errorf("wan: Loss %v outside 0–1", c.Loss))
	}
	if c.RateBits < 0 {
		errs = append(errs, fmt.Errorf("wan: RateBits %d is negative", c.RateBits))
	}
	if c.RateBits > 0 && c.RateBits < 8*1514*10 {
		errs = append(errs, fmt.Errorf("wan: RateBits %d too low (min %d: ten full frames per second)", c.RateBits, 8*1514*10))
	}
	if c.Burst < 0 || c.QueueBytes < 0 {
		errs = append(errs, errors.New("wan: Burst and QueueBytes must not be negative"))
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 9000) {
		errs = append(errs, fmt.Errorf("MTU %d outside 1280–9000", c.MTU))
	}
	return errors.Join(errs...)
}

func (c WANConfig) params() *lineParams {
	return &lineParams{
		Delay:   int64(c.Delay),
		Jitter:  int64(c.Jitter),
		Normal:  c.JitterDist == Normal,
		Reorder: c.Reorder,
		Loss:    c.Loss,
	}
}

// The fixed addressing inside every WAN. Each WAN has its own namespaces,
// so several WANs can run at once with the same addresses. All are in the
// benchmarking ranges (RFC 2544 198.18.0.0/15, RFC 3849 2001:db8::/32).
var (
	wanClient4 = netip.MustParsePrefix("198.18.0.1/24")
	wanServer4 = netip.MustParsePrefix("198.18.0.2/24")
	wanClient6 = netip.MustParsePrefix("2001:db8:4ae::1/64")
	wanServer6 = netip.MustParsePrefix("2001:db8:4ae::2/64")
)

// Interface names. Client and server see one interface each; the router
// namespace holds the two veth ends the delay line bridges.
const (
	WANEndpointIf  = "eth0" // in Client and in Server
	WANRouterToCli = "rc"   // in Router, peer of the client's eth0
	WANRouterToSrv = "rs"   // in Router, peer of the server's eth0
)

// Locally administered MACs, fixed so that neighbour entries can be static.
var (
	macClient   = net.HardwareAddr{0x02, 0x46, 0x57, 0x00, 0x00, 0x01}
	macServer   = net.HardwareAddr{0x02, 0x46, 0x57, 0x00, 0x00, 0x02}
	macRouterCl = net.HardwareAddr{0x02, 0x46, 0x57, 0x00, 0x01, 0x01}
	macRouterSv = net.HardwareAddr{0x02, 0x46, 0x57, 0x00, 0x01, 0x02}
)

// WAN is a running client ⇄ router ⇄ server topology whose router forwards
// through the delay line. See the package documentation.
type WAN struct {
	Client, Router, Server *NS

	// ClientAddr/ServerAddr are the endpoints' IPv4 addresses, and
	// ClientAddr6/ServerAddr6 their IPv6 ones (same link, no router hop).
	ClientAddr, ServerAddr   netip.Addr
	ClientAddr6, ServerAddr6 netip.Addr

	mu     sync.Mutex // serialises Set, Stats and Close
	cfg    WANConfig
	line   lineRunner
	closed bool
	final  Stats // counters at Close
}

// lineRunner is a delay line in this process or in a child.
type lineRunner interface {
	set(*lineParams) error
	stats() (Stats, error)
	close() error
}

// NewWAN starts a WAN for one test or benchmark: it skips tb when not root,
// fails it on error and closes the WAN in tb.Cleanup.
func NewWAN(tb testing.TB, cfg WANConfig) *WAN {
	tb.Helper()
	SkipIfNotRoot(tb)
	w, err := StartWAN(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := w.Close(); err != nil {
			tb.Errorf("testnet: closing WAN: %v", err)
		}
	})
	return w
}

// StartWAN builds the three namespaces, the veths, addresses and neighbour
// entries, starts the delay line and applies the rate limit. On error
// everything already created is removed. The caller must Close the WAN.
func StartWAN(cfg WANConfig) (w *WAN, err error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("testnet: WANConfig: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("testnet: the WAN emulator needs root")
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	prefix := cfg.Name
	if prefix == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		prefix = fmt.Sprintf("fwan-%d-%x", os.Getpid(), b)
	}
	w = &WAN{
		ClientAddr:  wanClient4.Addr(),
		ServerAddr:  wanServer4.Addr(),
		ClientAddr6: wanClient6.Addr(),
		ServerAddr6: wanServer6.Addr(),
		cfg:         cfg,
	}
	defer func() {
		if err != nil {
			_ = w.Close()
			w = nil
		}
	}()
	if w.Client, err = NewNS(prefix + "-client"); err != nil {
		return w, err
	}
	if w.Router, err = NewNS(prefix + "-router"); err != nil {
		return w, err
	}
	if w.Server, err = NewNS(prefix + "-server"); err != nil {
		return w, err
	}
	if err = w.setup(); err != nil {
		return w, err
	}
	return w, nil
}

func (w *WAN) setup() error {
	cfg := w.cfg
	// The router is a pure L2 relay: no IPv6 (no link-local addresses, no
	// router solicitations of its own), no IPv4 addresses.
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := w.Router.SetSysctl(k, "1"); err != nil {
			return err
		}
	}
	for _, ns := range []*NS{w.Client, w.Server} {
		for _, kv := range [][2]string{
			{"net.ipv6.conf.all.accept_dad", "0"},
			{"net.ipv6.conf.default.accept_dad", "0"},
			{"net.ipv6.conf.default.router_solicitations", "0"},
		} {
			if err := ns.SetSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	if err := AddVeth(w.Router, WANRouterToCli, w.Client, WANEndpointIf,
		VethOptions{MTU: cfg.MTU, MAC: macRouterCl, PeerMAC: macClient}); err != nil {
		return err
	}
	if err := AddVeth(w.Router, WANRouterToSrv, w.Server, WANEndpointIf,
		VethOptions{MTU: cfg.MTU, MAC: macRouterSv, PeerMAC: macServer}); err != nil {
		return err
	}
	// Offloads off on the senders: each TCP segment must be its own frame
	// (loss and rate act per wire packet), and the checksums must be in the
	// bytes we copy (a CHECKSUM_PARTIAL skb read by AF_PACKET carries only
	// the pseudo-header sum, and re-sent it would be dropped as corrupt).
	// GRO off on the router side so nothing is merged before we read it.
	off := Offloads{}
	if err := w.Client.SetOffloads(WANEndpointIf, off); err != nil {
		return err
	}
	if err := w.Server.SetOffloads(WANEndpointIf, off); err != nil {
		return err
	}
	for _, ifn := range []string{WANRouterToCli, WANRouterToSrv} {
		if err := w.Router.SetOffloads(ifn, off); err != nil {
			return err
		}
		if err := w.Router.SetPromisc(ifn, true); err != nil {
			return err
		}
	}
	type end struct {
		ns         *NS
		me4, me6   netip.Prefix
		peer4, pe6 netip.Prefix
		peerMAC    net.HardwareAddr
	}
	for _, e := range []end{
		{w.Client, wanClient4, wanClient6, wanServer4, wanServer6, macServer},
		{w.Server, wanServer4, wanServer6, wanClient4, wanClient6, macClient},
	} {
		if err := e.ns.AddAddr(WANEndpointIf, e.me4); err != nil {
			return err
		}
		if err := e.ns.AddAddr(WANEndpointIf, e.me6); err != nil {
			return err
		}
		if err := e.ns.LinkUp(WANEndpointIf); err != nil {
			return err
		}
		// Static neighbours: no ARP/NDP on the emulated path, so the
		// first packet of a test is not delayed or lost by resolution.
		if err := e.ns.AddNeigh(WANEndpointIf, e.peer4.Addr(), e.peerMAC); err != nil {
			return err
		}
		if err := e.ns.AddNeigh(WANEndpointIf, e.pe6.Addr(), e.peerMAC); err != nil {
			return err
		}
	}
	// Up before binding: binding an AF_PACKET socket to a down interface
	// latches ENETDOWN as a pending socket error.
	for _, ifn := range []string{WANRouterToCli, WANRouterToSrv} {
		if err := w.Router.LinkUp(ifn); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		ns  *NS
		dev string
	}{{w.Client, WANEndpointIf}, {w.Server, WANEndpointIf}, {w.Router, WANRouterToCli}, {w.Router, WANRouterToSrv}} {
		if err := c.ns.WaitUp(c.dev, 10*time.Second); err != nil {
			return err
		}
	}
	var socks [2]*packetSock
	err := w.Router.Do(func() error {
		for i, ifn := range []string{WANRouterToCli, WANRouterToSrv} {
			s, err := openPacketSock(ifn)
			if err != nil {
				return err
			}
			socks[i] = s
		}
		return nil
	})
	if err != nil {
		for _, s := range socks {
			if s != nil {
				s.close()
			}
		}
		return fmt.Errorf("testnet: %s: %w", w.Router.Name(), err)
	}
	if err := w.applyRate(cfg); err != nil {
		socks[0].close()
		socks[1].close()
		return err
	}
	realtime := !cfg.NoRealtime
	if cfg.InProcess {
		w.line = startDelayLine(socks[0], socks[1], cfg.params(), cfg.Seed, realtime)
		return nil
	}
	line, err := startChildLine(socks[0], socks[1], cfg.params(), cfg.Seed, realtime)
	if err != nil {
		return err
	}
	w.line = line
	return nil
}

// TBFParams are the tc tbf settings the WAN applies for a configuration.
type TBFParams struct {
	RateBits int64
	Burst    int // bytes
	Limit    int // bytes of queue
}

// TBFFor sizes tbf for cfg (see WANConfig.Burst and QueueBytes).
func TBFFor(cfg WANConfig) TBFParams {
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = 1500
	}
	frame := mtu + 14
	p := TBFParams{RateBits: cfg.RateBits, Burst: cfg.Burst, Limit: cfg.QueueBytes}
	if p.Burst == 0 {
		p.Burst = max(int(cfg.RateBits/8*2/1000), 3*frame)
	}
	if p.Limit == 0 {
		rtt := 2 * (cfg.Delay + cfg.Jitter)
		bdp := int(float64(cfg.RateBits) / 8 * rtt.Seconds())
		p.Limit = max(bdp, 64*frame)
	}
	return p
}

// applyRate installs, changes or removes the tbf qdiscs.
func (w *WAN) applyRate(cfg WANConfig) error {
	for _, ifn := range []string{WANRouterToCli, WANRouterToSrv} {
		var args []string
		if cfg.RateBits == 0 {
			if w.cfg.RateBits == 0 {
				continue
			}
			args = []string{"-n", w.Router.Name(), "qdisc", "del", "dev", ifn, "root"}
		} else {
			p := TBFFor(cfg)
			args = []string{"-n", w.Router.Name(), "qdisc", "replace", "dev", ifn, "root", "tbf",
				"rate", strconv.FormatInt(p.RateBits, 10) + "bit",
				"burst", strconv.Itoa(p.Burst),
				"limit", strconv.Itoa(p.Limit)}
		}
		if out, err := execOutput("tc", args...); err != nil {
			return fmt.Errorf("testnet: tc %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Config returns the configuration in force (with defaults filled in).
func (w *WAN) Config() WANConfig {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// Set changes delay, jitter, loss and rate while traffic flows. Frames
// already in the delay line keep the delay they were given; without Reorder,
// a shorter new delay takes effect as the queue drains. MTU, Seed, Name,
// InProcess and NoRealtime cannot change.
func (w *WAN) Set(cfg WANConfig) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("testnet: WANConfig: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	cfg.MTU, cfg.Seed, cfg.Name, cfg.InProcess, cfg.NoRealtime = w.cfg.MTU, w.cfg.Seed, w.cfg.Name, w.cfg.InProcess, w.cfg.NoRealtime
	if cfg.RateBits != w.cfg.RateBits || (cfg.RateBits != 0 && TBFFor(cfg) != TBFFor(w.cfg)) {
		if err := w.applyRate(cfg); err != nil {
			return err
		}
	}
	if err := w.line.set(cfg.params()); err != nil {
		return err
	}
	w.cfg = cfg
	return nil
}

// Stats are counters of one WAN since it started.
type Stats struct {
	ClientToServer, ServerToClient LinkStats
}

// LinkStats counts one direction's frames. Received = Forwarded + Lost +
// QueueDrops + Overflow + Oversize + Errors + Queued (up to frames in
// flight between counters).
type LinkStats struct {
	Received    uint64 // frames the delay line read
	Forwarded   uint64 // frames sent on (accepted by the egress qdisc)
	Lost        uint64 // dropped by emulated random loss
	QueueDrops  uint64 // dropped by the tbf rate limiter (queue full)
	Overflow    uint64 // dropped because the delay line held too many frames
	KernelDrops uint64 // dropped by the kernel before we read them (socket buffer full)
	Oversize    uint64 // offload super-packets dropped (should stay 0)
	Errors      uint64 // read or send errors
	Queued      int    // frames waiting in the delay line now
	Late        Lateness
}

// Lateness is how much later than its due time frames were sent: the
// delay line's own scheduling error (quantiles at 10 µs resolution, upper
// bucket edges).
type Lateness struct {
	Mean, P50, P99, P999, Max time.Duration
	Over1ms                   uint64 // frames sent more than 1 ms late
}

// Stats returns the counters (after Close, the counters at Close).
func (w *WAN) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.line == nil || w.closed {
		return w.final
	}
	st, err := w.line.stats()
	if err != nil {
		return w.final
	}
	return st
}

func (s LinkStats) String() string {
	return fmt.Sprintf("rx=%d fwd=%d lost=%d tbf-drop=%d overflow=%d kdrop=%d oversize=%d err=%d queued=%d late(mean=%v p50≤%v p99≤%v p99.9≤%v max=%v >1ms=%d)",
		s.Received, s.Forwarded, s.Lost, s.QueueDrops, s.Overflow, s.KernelDrops, s.Oversize, s.Errors, s.Queued,
		s.Late.Mean, s.Late.P50, s.Late.P99, s.Late.P999, s.Late.Max.Round(time.Microsecond), s.Late.Over1ms)
}

// Close stops the delay line and deletes the namespaces (and with them the
// veths and qdiscs). It is idempotent.
func (w *WAN) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	var errs []error
	if w.line != nil {
		w.final, _ = w.line.stats()
		errs = append(errs, w.line.close())
	}
	w.mu.Unlock()
	for _, ns := range []*NS{w.Client, w.Server, w.Router} {
		if ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	return errors.Join(errs...)
}

// Names returns the three namespace names (client, router, server).
func (w *WAN) Names() (client, router, server string) {
	return w.Client.Name(), w.Router.Name(), w.Server.Name()
}

// ctxDone reports whether ctx is done without blocking.
func ctxDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}
