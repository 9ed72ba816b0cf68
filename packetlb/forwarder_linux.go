//go:build linux

package packetlb

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config is one virtual address in packet mode.
type Config struct {
	// VIP is the virtual address and its first port (IPv6). Members
	// answer on the same port: direct server return does not translate.
	// More ports of the address are added with AddPort.
	VIP netip.AddrPort
	// TUN is the name of the TUN device the VIP is routed into.
	TUN string
	// Interface is the servers' segment: frames go out on it to the
	// members' MAC addresses (from the neighbour table).
	Interface string
	// MaxFlows bounds the flow table (a remote party grows it); Idle ends
	// a flow without packets for this long.
	MaxFlows int
	Idle     time.Duration
	// Choose picks the member of a new flow to VIP's port from its first
	// packet. release is called when the flow ends (nil: nothing to
	// release).
	Choose ChooseFunc
}

// ChooseFunc picks a new flow's member.
type ChooseFunc func(p Packet) (member netip.Addr, release func(), err error)

// AddPort forwards another port of the VIP's address, choosing with
// choose (it replaces the port's chooser if there was one).
func (f *Forwarder) AddPort(port uint16, choose ChooseFunc) {
	f.portMu.Lock()
	defer f.portMu.Unlock()
	m := map[uint16]ChooseFunc{}
	for k, v := range *f.ports.Load() {
		m[k] = v
	}
	m[port] = choose
	f.ports.Store(&m)
}

// RemovePort stops forwarding port and reports how many ports are left.
// Flows to it already in the table go on until they end.
func (f *Forwarder) RemovePort(port uint16) int {
	f.portMu.Lock()
	defer f.portMu.Unlock()
	m := map[uint16]ChooseFunc{}
	for k, v := range *f.ports.Load() {
		if k != port {
			m[k] = v
		}
	}
	f.ports.Store(&m)
	return len(m)
}

// Drop reasons, indexes of Stats.Drops.
const (
	DropParse      = iota // malformed, fragment or not TCP/UDP
	DropNotVirtual        // not to the VIP's address and port
	DropNoFlow            // a packet of no flow that cannot start one (not a SYN)
	DropNoMember          // Choose found none
	DropTableFull         // MaxFlows reached
	DropNoNeighbor        // the member's MAC is not known yet (resolution started)
	DropSendError         // the frame could not be sent
	DropOther             // another protocol (ICMPv6: the kernel's own neighbour and multicast traffic on the TUN)
	NumDrops
)

// DropName returns a drop reason's counter label.
func DropName(i int) string {
	switch i {
	case DropParse:
		return "malformed"
	case DropNotVirtual:
		return "not_virtual"
	case DropNoFlow:
		return "no_flow"
	case DropNoMember:
		return "no_member"
	case DropTableFull:
		return "table_full"
	case DropNoNeighbor:
		return "no_neighbor"
	case DropSendError:
		return "send_error"
	case DropOther:
		return "other_protocol"
	}
	return "unknown"
}

// Stats are a Forwarder's counters.
type Stats struct {
	Packets  uint64 // read from the TUN
	Sent     uint64 // forwarded to a member
	NewFlows uint64
	Flows    int // in the table now
	Drops    [NumDrops]uint64
}

// Forwarder forwards a VIP's packets to members, single pass.
type Forwarder struct {
	cfg     Config
	ports   atomic.Pointer[map[uint16]ChooseFunc]
	portMu  sync.Mutex
	tun     *os.File
	pkt     int // AF_PACKET socket (send only)
	udp     int // for neighbour resolution
	ifindex int
	nl      *netlink.Handle
	route   *netlink.Route
	flows   *table

	mu       sync.Mutex
	neigh    map[netip.Addr]net.HardwareAddr
	refresh  time.Time
	resolved map[netip.Addr]time.Time

	packets, sent, newFlows atomic.Uint64
	drops                   [NumDrops]atomic.Uint64

	stop chan struct{}
	wg   sync.WaitGroup
}

// New creates the TUN device, routes the VIP into it and starts
// forwarding, in the calling goroutine's network namespace.
func New(cfg Config) (*Forwarder, error) {
	if !cfg.VIP.Addr().Is6() || cfg.VIP.Addr().Is4In6() {
		return nil, errors.New("packetlb: the VIP must be an IPv6 address")
	}
	if cfg.Choose == nil {
		return nil, errors.New("packetlb: Choose is required")
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = 100000
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 300 * time.Second
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := &Forwarder{cfg: cfg, flows: newTable(cfg.MaxFlows, cfg.Idle), neigh: map[netip.Addr]net.HardwareAddr{},
		resolved: map[netip.Addr]time.Time{}, stop: make(chan struct{}), pkt: -1, udp: -1}
	f.ports.Store(&map[uint16]ChooseFunc{cfg.VIP.Port(): cfg.Choose})
	ok := false
	defer func() {
		if !ok {
			f.release()
		}
	}()
	var err error
	if f.nl, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("packetlb: netlink: %w", err)
	}
	eg, err := f.nl.LinkByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("packetlb: interface %s: %w", cfg.Interface, err)
	}
	f.ifindex = eg.Attrs().Index
	if f.tun, err = openTUN(cfg.TUN); err != nil {
		return nil, err
	}
	tl, err := f.nl.LinkByName(cfg.TUN)
	if err != nil {
		return nil, fmt.Errorf("packetlb: %s: %w", cfg.TUN, err)
	}
	if err := f.nl.LinkSetUp(tl); err != nil {
		return nil, fmt.Errorf("packetlb: %s up: %w", cfg.TUN, err)
	}
	a := cfg.VIP.Addr()
	f.route = &netlink.Route{LinkIndex: tl.Attrs().Index, Dst: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(128, 128)}}
	if err := f.nl.RouteAdd(f.route); err != nil {
		f.route = nil
		return nil, fmt.Errorf("packetlb: route %s into %s: %w", a, cfg.TUN, err)
	}
	if f.pkt, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		return nil, fmt.Errorf("packetlb: packet socket: %w", err)
	}
	if f.udp, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("packetlb: udp socket: %w", err)
	}
	ok = true
	f.wg.Add(2)
	go f.loop()
	go f.sweeper()
	return f, nil
}

// openTUN creates a TUN device (no packet information header).
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packetlb: /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packetlb: TUN name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packetlb: create TUN %s: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

func (f *Forwarder) loop() {
	defer f.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := f.tun.Read(buf)
		if err != nil {
			return
		}
		f.handle(buf[:n], time.Now())
	}
}

func (f *Forwarder) sweeper() {
	defer f.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			f.flows.sweep(now)
		}
	}
}

func (f *Forwarder) handle(b []byte, now time.Time) {
	f.packets.Add(1)
	p, err := Parse(b)
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			f.drops[DropOther].Add(1)
		} else {
			f.drops[DropParse].Add(1)
		}
		return
	}
	choose := (*f.ports.Load())[p.Key.DPort]
	if p.Key.Dst != f.cfg.VIP.Addr() {
		f.drops[DropNotVirtual].Add(1)
		return
	}
	member, ok := f.flows.get(p.Key, p.TCPFlags, now)
	if !ok {
		if choose == nil {
			f.drops[DropNotVirtual].Add(1)
			return
		}
		if !p.First() {
			f.drops[DropNoFlow].Add(1)
			return
		}
		a, release, err := choose(p)
		if err != nil {
			f.drops[DropNoMember].Add(1)
			return
		}
		member = netip.AddrPortFrom(a, p.Key.DPort)
		if !f.flows.add(p.Key, member, release, now) {
			if release != nil {
				release()
			}
			f.drops[DropTableFull].Add(1)
			return
		}
		f.newFlows.Add(1)
	}
	mac := f.mac(member.Addr(), now)
	if mac == nil {
		f.drops[DropNoNeighbor].Add(1)
		return
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: f.ifindex, Halen: 6}
	copy(sa.Addr[:], mac)
	if err := unix.Sendto(f.pkt, b, 0, sa); err != nil {
		f.drops[DropSendError].Add(1)
		return
	}
	f.sent.Add(1)
}

// mac returns a's link-layer address on the servers' segment, or nil and
// starts resolving it (an empty datagram to its discard port makes the
// kernel send a neighbour solicitation).
func (f *Forwarder) mac(a netip.Addr, now time.Time) net.HardwareAddr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.neigh[a]; m != nil {
		return m
	}
	if now.Sub(f.refresh) > 50*time.Millisecond {
		f.refresh = now
		if ns, err := f.nl.NeighList(f.ifindex, unix.AF_INET6); err == nil {
			usable := netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
			for _, n := range ns {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && len(n.HardwareAddr) == 6 && n.State&usable != 0 {
					f.neigh[ip.Unmap()] = n.HardwareAddr
				}
			}
		}
		if m := f.neigh[a]; m != nil {
			return m
		}
	}
	if now.Sub(f.resolved[a]) > 200*time.Millisecond {
		f.resolved[a] = now
		unix.Sendto(f.udp, nil, 0, &unix.SockaddrInet6{Port: 9, Addr: a.As16()})
	}
	return nil
}

// Resolve starts resolving the members' link-layer addresses, so that the
// first SYN to each does not wait for it (that SYN would be dropped and
// retransmitted by the client a second later).
func (f *Forwarder) Resolve(members ...netip.Addr) {
	now := time.Now()
	for _, a := range members {
		f.mac(a, now)
	}
}

// Stats returns the counters.
func (f *Forwarder) Stats() Stats {
	s := Stats{Packets: f.packets.Load(), Sent: f.sent.Load(), NewFlows: f.newFlows.Load(), Flows: f.flows.len()}
	for i := range s.Drops {
		s.Drops[i] = f.drops[i].Load()
	}
	return s
}

// Close stops forwarding, removes the route and the TUN device, and ends
// every flow.
func (f *Forwarder) Close() error {
	close(f.stop)
	f.tun.Close()
	f.wg.Wait()
	f.release()
	f.flows.clear()
	return nil
}

func (f *Forwarder) release() {
	if f.route != nil && f.nl != nil {
		f.nl.RouteDel(f.route)
	}
	if f.tun != nil {
		f.tun.Close()
	}
	if f.pkt >= 0 {
		unix.Close(f.pkt)
		f.pkt = -1
	}
	if f.udp >= 0 {
		unix.Close(f.udp)
		f.udp = -1
	}
	if f.nl != nil {
		f.nl.Close()
		f.nl = nil
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Mux shares one Forwarder (one TUN device, one route) per virtual address
// among the ports forwarded on it. The zero Mux is ready to use.
type Mux struct {
	mu  sync.Mutex
	fwd map[netip.Addr]*Forwarder
}

// Port is one forwarded port of a virtual address (a Mux's Open).
type Port struct {
	m    *Mux
	f    *Forwarder
	port uint16
	once sync.Once
}

// Open forwards cfg.VIP. The first port of an address creates its
// Forwarder with cfg (in the calling goroutine's network namespace);
// later ones join it, and must name the same Interface.
func (m *Mux) Open(cfg Config) (*Port, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := cfg.VIP.Addr()
	if f := m.fwd[a]; f != nil {
		if f.cfg.Interface != cfg.Interface {
			return nil, fmt.Errorf("packetlb: %s is forwarded to %s already, not %s", a, f.cfg.Interface, cfg.Interface)
		}
		if _, taken := (*f.ports.Load())[cfg.VIP.Port()]; taken {
			return nil, fmt.Errorf("packetlb: %s is forwarded already", cfg.VIP)
		}
		f.AddPort(cfg.VIP.Port(), cfg.Choose)
		return &Port{m: m, f: f, port: cfg.VIP.Port()}, nil
	}
	f, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if m.fwd == nil {
		m.fwd = map[netip.Addr]*Forwarder{}
	}
	m.fwd[a] = f
	return &Port{m: m, f: f, port: cfg.VIP.Port()}, nil
}

// SetChoose replaces the port's chooser.
func (p *Port) SetChoose(c ChooseFunc) { p.f.AddPort(p.port, c) }

// Stats are the counters of the port's virtual address (shared by its
// ports).
func (p *Port) Stats() Stats { return p.f.Stats() }

// Resolve starts resolving members' link-layer addresses (Forwarder.Resolve).
func (p *Port) Resolve(members ...netip.Addr) { p.f.Resolve(members...) }

// Close stops forwarding the port; the address's last port closes its
// Forwarder (route, TUN device, flows).
func (p *Port) Close() error {
	p.once.Do(func() {
		p.m.mu.Lock()
		defer p.m.mu.Unlock()
		if p.f.RemovePort(p.port) == 0 {
			delete(p.m.fwd, p.f.cfg.VIP.Addr())
			p.f.Close()
		}
	})
	return nil
}
