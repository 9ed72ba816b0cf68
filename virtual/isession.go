package virtual

import (
	"context"
	"net"
	"net/netip"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/isession"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// serveISession sends the client connection c through an iSession tunnel
// to one of the plan's endpoints, trying others (reselect) when a tunnel
// cannot be set up. It reports false when none could be: the caller falls
// back to the local pool or refuses the connection.
func (l *Listener) serveISession(p *Plan, e *conntrack.Entry, c net.Conn, client netip.AddrPort, setServer func(net.Conn)) bool {
	var tried []*pool.Member
	for len(tried) < maxConnectAttempts {
		m, err := p.Pool.Pick(pool.Hint{Exclude: tried})
		if err != nil {
			break // no endpoint up
		}
		ls := lease{m}
		ctx, cancel := context.WithTimeout(l.ctx, p.ConnectTimeout)
		st, _, err := p.ISession.Tunnels.Open(ctx, m.Addr(), isession.Target{Dst: e.VirtualAddr, Src: client, Virtual: p.Name}, nil)
		cancel()
		if err != nil {
			ls.release()
			tried = append(tried, m)
			if p.connectFailed(l.ctx, m, client, err) {
				break
			}
			p.Log.Debug("iSession tunnel could not be set up", "endpoint", m.String(), "err", err)
			if !p.ISession.down.Swap(true) {
				p.Log.Warn("iSession tunnels cannot be set up", "endpoint", m.String(), "err", err, "local_pool", p.ISession.Local != nil)
			}
			continue
		}
		if p.ISession.down.Swap(false) {
			p.Log.Info("iSession tunnel up again", "endpoint", m.String())
		}
		setServer(st)
		e.SetServer(m.PoolName(), addrPortOf(st.LocalAddr()), m.Addr())
		p.Stats.ISession.Tunneled.Add(1)
		l.proxyStreams(p, e, c, st, func(in, out int64) { m.AddBytes(in, out) })
		ls.release()
		return true
	}
	if !p.ISession.down.Swap(true) {
		p.Log.Warn("iSession tunnels cannot be set up: no endpoint reachable", "endpoints", p.Pool.Name(), "local_pool", p.ISession.Local != nil)
	}
	return false
}
