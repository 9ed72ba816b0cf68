package virtual

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/fulcrum-adc/fulcrum/lbsp"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// LBSP in full-proxy mode (docs/lbsp.md): the listener asks the kernel for
// each SYN's IPv6 Destination Options; the client identity of the LBSP
// option keys persistence, its server address (when it names an eligible
// member) chooses the member; the serverside connection carries the
// client's option to the member, and the clientside connection carries
// back the option with the chosen member's address filled in.

// LBSPStats counts what LBSP did with each connection of a virtual.
type LBSPStats struct {
	NoOption         atomic.Uint64 // the SYN carried no LBSP option: balanced
	ByServer         atomic.Uint64 // the option's server address chose the member
	ByIdentity       atomic.Uint64 // a persistence record of the client identity chose it
	Balanced         atomic.Uint64 // balanced by the pool's method (then recorded)
	IgnoredNotMember atomic.Uint64 // a server address that is no eligible member: ignored
	Malformed        atomic.Uint64 // options the walker refused: balanced as without one
	Unreadable       atomic.Uint64 // the kernel did not hand over the SYN's options
}

// lbspResult is what the SYN said.
type lbspResult struct {
	opt lbsp.Option
	ok  bool // an LBSP option was found
}

// lbspOn reports whether the plan's persistence is LBSP.
func (p *Plan) lbspOn() bool { return p.Persist != nil && p.Persist.Type() == persist.TypeLBSP }

// enableLBSP asks the kernel to keep each SYN's Destination Options for
// accept (IPV6_RECVDSTOPTS on the listening socket).
func enableLBSP(c syscall.RawConn) error { return lbsp.EnableRecvDestOptsRaw(c) }

// readLBSP reads the LBSP option of an accepted connection's SYN.
func (p *Plan) readLBSP(c net.Conn) lbspResult {
	sc, ok := c.(syscall.Conn)
	if !ok {
		p.Stats.LBSP.Unreadable.Add(1)
		return lbspResult{}
	}
	hdrs, err := lbsp.TCPDestOpts(sc)
	if err != nil {
		p.Stats.LBSP.Unreadable.Add(1)
		p.Log.Debug("lbsp: cannot read the SYN's destination options", "err", err)
		return lbspResult{}
	}
	parser := lbsp.Parser{Type: p.LBSPType, KernelChecked: true}
	for _, h := range hdrs {
		r, err := parser.Parse(h)
		if err != nil {
			p.Stats.LBSP.Malformed.Add(1)
			p.Log.Debug("lbsp: destination options refused", "err", err)
			continue
		}
		if r.Found {
			return lbspResult{opt: r.Option, ok: true}
		}
	}
	p.Stats.LBSP.NoOption.Add(1)
	return lbspResult{}
}

// lbspServer returns the eligible member the option's server address
// names, Acquire()d, or nil: a member of the virtual's pool (or, with
// match_across_pools, of any pool) with that address, available (enabled
// and up: a disabled member takes only clients Fulcrum's own records
// send), below its connection limit, not excluded. A server address that names none is counted and ignored:
// the option cannot steer a connection to an arbitrary host.
func (p *Plan) lbspServer(r lbspResult, exclude []*pool.Member) *pool.Member {
	if !r.ok || !r.opt.HasServer() {
		return nil
	}
	addr := r.opt.Server.Unmap()
	pools := []*pool.Pool{p.Pool}
	if p.Persist != nil && p.Persist.Config().MatchAcrossPools {
		for _, name := range slices.Sorted(maps.Keys(p.Pools)) {
			if pl := p.Pools[name]; pl != p.Pool {
				pools = append(pools, pl)
			}
		}
	}
	for _, pl := range pools {
		for _, m := range pl.Members() {
			// Available, not PersistOK: the client wrote this address
			// itself, so it may not reach a disabled member the way a
			// record Fulcrum made may.
			if m.Addr().Addr().Unmap() == addr && !slices.Contains(exclude, m) && m.Available() && m.Acquire() {
				p.Stats.LBSP.ByServer.Add(1)
				return m
			}
		}
	}
	p.Stats.LBSP.IgnoredNotMember.Add(1)
	return nil
}

// lbspHeader is a Destination Options header carrying o.
func (p *Plan) lbspHeader(o lbsp.Option) []byte {
	return lbsp.BuildDestOpts(0, o.Append(nil, p.LBSPType))
}

// lbspDialContext carries the client's option to the member: a sticky
// Destination Options header on the serverside socket, set before the
// SYN (the server address is left out: the member fills in its own).
func (p *Plan) lbspDialContext(ctx context.Context, r lbspResult) context.Context {
	if !r.ok {
		return ctx
	}
	o := lbsp.Option{Client: r.opt.Client}
	return withDialControl(ctx, lbsp.DialerControl(p.lbspHeader(o)))
}

// lbspReply sets, on the clientside connection, the option with the
// chosen member's address filled in: it rides on the client's next
// segments, so the client learns which server serves it.
func (p *Plan) lbspReply(c net.Conn, r lbspResult, member netip.AddrPort) {
	if !r.ok {
		return
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	o := lbsp.Option{Client: r.opt.Client, Server: member.Addr()}
	if err := lbsp.SetDestOpts(sc, p.lbspHeader(o)); err != nil {
		p.Log.Debug("lbsp: cannot set the reply option", "err", err)
	}
}

type dialControlKey struct{}

// withDialControl adds a socket option hook to the serverside dial.
func withDialControl(ctx context.Context, f func(network, address string, c syscall.RawConn) error) context.Context {
	return context.WithValue(ctx, dialControlKey{}, f)
}

func dialControlFrom(ctx context.Context) func(network, address string, c syscall.RawConn) error {
	f, _ := ctx.Value(dialControlKey{}).(func(network, address string, c syscall.RawConn) error)
	return f
}
