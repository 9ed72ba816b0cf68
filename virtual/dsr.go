package virtual

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/lbsp"
	"github.com/fulcrum-adc/fulcrum/packetlb"
)

// A dsr virtual (docs/lbsp.md): single-pass packet forwarding with direct
// server return. Its destination is routed into a TUN device; the member
// of each flow is chosen from its first packet (the LBSP option's server
// address if it names an eligible member, else a record of its client
// identity, else the pool's method), and every packet of the flow goes to
// that member unchanged (packetlb). No socket, no TCP termination.

// DSR is a running dsr virtual. It implements Server.
type DSR struct {
	plan atomic.Pointer[Plan]
	fwd  *packetlb.Port
	addr net.Addr

	closeOnce sync.Once
	done      chan struct{}
}

var _ Server = (*DSR)(nil)

// OpenDSR starts a dsr virtual in the calling goroutine's network
// namespace. The first dsr virtual of an address creates the TUN device
// tun, routes the address into it and forwards to members on iface; the
// others of that address share it (mux).
func OpenDSR(p *Plan, mux *packetlb.Mux, tun, iface string, maxFlows int) (*DSR, error) {
	d := &DSR{addr: net.TCPAddrFromAddrPort(p.Destination), done: make(chan struct{})}
	d.plan.Store(p)
	idle := p.IdleTimeout
	if idle <= 0 {
		idle = 300 * time.Second
	}
	f, err := mux.Open(packetlb.Config{VIP: p.Destination, TUN: tun, Interface: iface, MaxFlows: maxFlows, Idle: idle, Choose: d.choose})
	if err != nil {
		return nil, err
	}
	d.fwd = f
	var addrs []netip.Addr
	for _, m := range p.Pool.Members() {
		addrs = append(addrs, m.Addr().Addr())
	}
	f.Resolve(addrs...)
	return d, nil
}

var errNoMember = errors.New("no member")

// choose picks the member of a new flow from its first packet.
func (d *DSR) choose(pk packetlb.Packet) (netip.Addr, func(), error) {
	p := d.plan.Load()
	var id ident
	id.client = pk.Key.Src
	id.local = pk.Key.Dst
	if p.lbspOn() {
		id.lbsp = p.lbspFromHeader(pk.DestOpts)
	}
	ch, err := p.choose(id, nil, time.Now(), nil)
	if err != nil {
		return netip.Addr{}, nil, errNoMember
	}
	m := ch.member
	p.Stats.Total.Add(1)
	p.Stats.Active.Add(1)
	return m.Addr().Addr(), func() {
		m.Release()
		p.Stats.Active.Add(-1)
	}, nil
}

// lbspFromHeader reads the LBSP option of a packet's Destination Options
// header (nil: none).
func (p *Plan) lbspFromHeader(h []byte) lbspResult {
	if h == nil {
		p.Stats.LBSP.NoOption.Add(1)
		return lbspResult{}
	}
	r, err := (lbsp.Parser{Type: p.LBSPType}).Parse(h)
	switch {
	case err != nil:
		p.Stats.LBSP.Malformed.Add(1)
		return lbspResult{}
	case !r.Found:
		p.Stats.LBSP.NoOption.Add(1)
		return lbspResult{}
	}
	return lbspResult{opt: r.Option, ok: true}
}

// DSRStats are a dsr virtual's forwarding counters.
type DSRStats = packetlb.Stats

// Forwarding returns the forwarder's counters (shared by the dsr virtuals
// of one address).
func (d *DSR) Forwarding() DSRStats { return d.fwd.Stats() }

// Addr is the virtual address.
func (d *DSR) Addr() net.Addr { return d.addr }

// Transport is "dsr": a reload keeps the virtual only for another dsr plan.
func (d *DSR) Transport() string { return "dsr" }

// Plan is the plan new flows get.
func (d *DSR) Plan() *Plan { return d.plan.Load() }

// Swap publishes a new plan.
func (d *DSR) Swap(p *Plan) { d.plan.Store(p) }

// Close stops forwarding: the route and the TUN device go, and every flow
// ends (their members are released).
func (d *DSR) Close() error {
	d.closeOnce.Do(func() {
		d.fwd.Close()
		close(d.done)
	})
	return nil
}

// Wait closes the virtual: a dsr virtual's flows cannot outlive it (they
// were only routes through it).
func (d *DSR) Wait(ctx context.Context) { d.Close() }

// Done is closed once the virtual is closed.
func (d *DSR) Done() <-chan struct{} { return d.done }
