package virtual

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// choice is the outcome of persistence + load balancing for one connection or request.
type choice struct {
	member    *pool.Member
	persisted bool   // a persistence record or cookie chose it
	setCookie string // Set-Cookie value to add to the response (cookie insert)
}

// ident is what persistence may key on for one connection, request or
// datagram.
type ident struct {
	client  netip.Addr
	local   netip.Addr          // the virtual-side address the client reached (dest_addr)
	http    persist.HTTPRequest // nil on L4 virtuals
	payload []byte              // the client's first bytes (msrdp, sip, ssl); nil otherwise
	lbsp    lbspResult          // the SYN's LBSP option (lbsp persistence)
}

// choose applies persistence, then the pool's LB method. The member returned
// has been Acquire()d; the caller must Release() it (through a lease).
// exclude are members this flow already failed to connect to: a persistence
// record naming one of them is ignored and the new pick re-persists (HAProxy
// option redispatch), and balancing skips them (so a priority group they
// exhaust spills over into the next).
func (p *Plan) choose(id ident, hashKey []byte, now time.Time, exclude []*pool.Member) (choice, error) {
	var preq *persist.Request
	if p.Persist != nil {
		preq = &persist.Request{Virtual: p.Name, Pool: p.Pool.Name(), Client: id.client, Local: id.local, HTTP: id.http, Payload: id.payload}
		if id.lbsp.ok {
			preq.LBSP = id.lbsp.opt.Client[:]
		}
		if m := p.lbspServer(id.lbsp, exclude); m != nil {
			// The option named an eligible member: it serves, and the
			// client identity now persists to it.
			p.Persist.Record(p.PersistTable, preq, persist.Target{Pool: m.PoolName(), Member: m.Addr()}, now)
			return choice{member: m, persisted: true}, nil
		}
		var tgt persist.Target
		var ok, viaFallback, keyed bool
		if p.Persist.Type() == persist.TypeHash {
			var m *pool.Member
			if m, keyed = p.hashMember(preq, exclude); m != nil {
				return choice{member: m, persisted: true}, nil
			}
		} else {
			tgt, ok = p.Persist.Lookup(p.PersistTable, preq, now)
		}
		if !ok && !keyed && p.Fallback != nil {
			tgt, ok = p.Fallback.Lookup(p.PersistTable, preq, now)
			viaFallback = ok
		}
		if ok {
			if m := p.memberFor(tgt); m != nil && !slices.Contains(exclude, m) && m.PersistOK() && m.Acquire() {
				if id.lbsp.ok {
					p.Stats.LBSP.ByIdentity.Add(1)
				}
				c := choice{member: m, persisted: true}
				if viaFallback {
					// Re-establish the primary (for cookie insert: set the cookie) so the
					// next request does not need the fallback.
					c.setCookie = p.Persist.Record(p.PersistTable, preq, tgt, now)
				}
				return c, nil
			}
		}
	}
	m, err := p.Pool.Pick(pool.Hint{Key: hashKey, Exclude: exclude})
	if err != nil {
		return choice{}, err
	}
	c := choice{member: m}
	if id.lbsp.ok {
		p.Stats.LBSP.Balanced.Add(1)
	}
	if preq != nil {
		tgt := persist.Target{Pool: p.Pool.Name(), Member: m.Addr()}
		c.setCookie = p.Persist.Record(p.PersistTable, preq, tgt, now)
		if p.Fallback != nil {
			p.Fallback.Record(p.PersistTable, preq, tgt, now)
		}
	}
	return c, nil
}

// hashMember is hash persistence: the first member in the key's
// rendezvous order that may take a new connection (available, not
// excluded, below its limit), Acquire()d. keyed reports whether req
// carried the key at all; m is nil when it did not or when no member in
// the pool can take the connection (the pool's LB then reports why).
// Priority groups are not consulted: the order is over every member, so
// that it is the same on every device.
func (p *Plan) hashMember(req *persist.Request, exclude []*pool.Member) (m *pool.Member, keyed bool) {
	members := p.Pool.Members()
	addrs := make([]netip.AddrPort, len(members))
	for i, m := range members {
		addrs[i] = m.Addr()
	}
	order, keyed := p.Persist.HashRank(req, addrs)
	for _, i := range order {
		if m := members[i]; m.Available() && !slices.Contains(exclude, m) && m.Acquire() {
			return m, true
		}
	}
	return nil, keyed
}

// memberFor resolves a persistence target to a live member, honouring
// match-across-pools (a record may name another pool).
func (p *Plan) memberFor(t persist.Target) *pool.Member {
	pl := p.Pool
	if t.Pool != "" && t.Pool != pl.Name() {
		pl = p.Pools[t.Pool]
		if pl == nil {
			return nil
		}
	}
	return pl.Member(t.Member)
}

// dialer builds the server-side dialer for the plan's SNAT mode.
// clientMSS is the clientside connection's MSS (0 when unknown or UDP),
// for a serverside profile with proxy MSS.
func (p *Plan) dial(ctx context.Context, network string, client netip.Addr, member netip.AddrPort, seed maphash.Seed, clientMSS int) (net.Conn, error) {
	d := net.Dialer{Timeout: p.ConnectTimeout, KeepAlive: -1}
	var controls []func(string, string, syscall.RawConn) error
	switch p.SNAT.Mode {
	case SNATPool:
		if len(p.SNAT.Addresses) > 0 {
			a := p.snatAddr(client, member, seed)
			if network == "udp" {
				d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
			} else {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
			}
		}
	case SNATNone:
		// Keep the client's address: bind to it with IP_TRANSPARENT so the
		// kernel accepts a non-local source.
		if client.Is4() == member.Addr().Is4() {
			if network == "udp" {
				d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(client, 0))
			} else {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 0))
			}
			controls = append(controls, transparentControl)
		}
	}
	if network == "tcp" && p.Serverside != nil {
		controls = append(controls, p.Serverside.DialControlMSS(clientMSS))
	}
	if f := dialControlFrom(ctx); f != nil {
		controls = append(controls, f)
	}
	if len(controls) > 0 {
		d.Control = func(network, address string, c syscall.RawConn) error {
			for _, f := range controls {
				if err := f(network, address, c); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if p.DialContext != nil {
		return p.DialContext(ctx, &d, network, member.String())
	}
	return d.DialContext(ctx, network, member.String())
}

// snatAddr picks a SNAT pool address of the member's family by hashing the
// client, so one client keeps one translation address (F5 SNAT pool behaviour).
func (p *Plan) snatAddr(client netip.Addr, member netip.AddrPort, seed maphash.Seed) netip.Addr {
	var fam []netip.Addr
	for _, a := range p.SNAT.Addresses {
		if a.Is4() == member.Addr().Is4() {
			fam = append(fam, a)
		}
	}
	if len(fam) == 0 {
		return netip.IPv4Unspecified()
	}
	b := client.As16()
	h := maphash.Bytes(seed, b[:])
	return fam[h%uint64(len(fam))]
}

func transparentControl(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if len(network) > 0 && network[len(network)-1] == '6' {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("snat none needs IP_TRANSPARENT (CAP_NET_ADMIN): %w", serr)
	}
	return nil
}

// dialMember dials the chosen member for a stream (tcp/http) flow, wrapping
// it (wrap, may be nil: e.g. byte counting) and then in TLS when the plan
// re-encrypts. A failure is charged by connectFailed: the caller calls it
// (and gets whether the failure was Fulcrum's own).
func (p *Plan) dialMember(ctx context.Context, client netip.Addr, clientMSS int, m *pool.Member, seed maphash.Seed, wrap func(net.Conn) net.Conn) (net.Conn, error) {
	c, err := p.dial(ctx, "tcp", client, m.Addr(), seed, clientMSS)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok && p.Serverside != nil {
		if err := p.Serverside.Finish(tc); err != nil {
			p.Log.Warn("serverside TCP profile not fully applied", "profile", p.Serverside.Name, "err", err)
		}
	}
	if wrap != nil {
		c = wrap(c)
	}
	if p.ServerTLS != nil {
		tc := tls.Client(c, p.ServerTLS)
		hctx, cancel := context.WithTimeout(ctx, p.ConnectTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, &handshakeError{err}
		}
		c = tc
	}
	m.ReportSuccess()
	return c, nil
}

// handshakeError is a server-ssl handshake that failed after the TCP
// connect succeeded.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "server-ssl handshake: " + shortErr(e.err) }
func (e *handshakeError) Unwrap() error { return e.err }

// connectFailed charges a failed connect to m, or to Fulcrum itself when the
// cause is this host's own resources (out of file descriptors, ports,
// buffers): those never count against a member's health. It reports
// whether the failure was Fulcrum's own (trying another member would not
// help then).
func (p *Plan) connectFailed(ctx context.Context, m *pool.Member, client netip.AddrPort, err error) (local bool) {
	if ctx.Err() != nil {
		return true // shutting down: nobody's fault
	}
	if isLocalFault(err) {
		p.Stats.Errors.Add(1)
		p.reject("local_resources")
		p.Log.Warn("cannot connect to pool member: this host is out of a resource (Fulcrum's limit, not the member's fault)",
			"virtual", p.Name, "member", m.String(), "client", client, "err", shortErr(err))
		return true
	}
	m.AddError()
	var he *handshakeError
	if errors.As(err, &he) {
		m.ReportFailure(he.Error())
	} else {
		m.ReportFailure("connect: " + shortErr(err))
	}
	return false
}

// shortErr strips the "dial tcp a->b:" prefix that makes logs unreadable.
func shortErr(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
