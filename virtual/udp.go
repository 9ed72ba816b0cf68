package virtual

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// udpFlows is the UDP virtual's flow table: one flow per client address,
// each with its own connected socket to the chosen member.
type udpFlows struct {
	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow
}

type udpFlow struct {
	server *net.UDPConn
	member *pool.Member
	entry  *conntrack.Entry
}

func newUDPFlows() *udpFlows { return &udpFlows{flows: make(map[netip.AddrPort]*udpFlow)} }

func (u *udpFlows) closeAll() {
	u.mu.Lock()
	fs := make([]*udpFlow, 0, len(u.flows))
	for _, f := range u.flows {
		fs = append(fs, f)
	}
	u.mu.Unlock()
	for _, f := range fs {
		f.server.Close()
	}
}

const maxDatagram = 64 << 10

// serveUDP reads client datagrams, creates flows on first sight and forwards.
func (l *Listener) serveUDP() {
	defer l.loop.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors surfacing on the listener: ignore, keep serving
		}
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		l.udp.mu.Lock()
		f := l.udp.flows[client]
		l.udp.mu.Unlock()
		if f == nil {
			f = l.newUDPFlow(client)
			if f == nil {
				continue
			}
		}
		p := f.entry
		if _, err := f.server.Write(buf[:n]); err != nil {
			f.member.AddError()
			continue
		}
		p.AddIn(int64(n))
		f.member.AddBytes(int64(n), 0)
		pl := l.plan.Load()
		pl.Stats.BytesIn.Add(uint64(n))
	}
}

// newUDPFlow picks a member for client and starts relaying its replies.
func (l *Listener) newUDPFlow(client netip.AddrPort) *udpFlow {
	p := l.plan.Load()
	var key []byte
	if p.HashKey.Kind == HashSourceAddr {
		b := client.Addr().As16()
		key = b[:]
	}
	ch, err := p.choose(client.Addr(), nil, key, time.Now(), nil)
	if err != nil {
		p.reject("no_member")
		return nil
	}
	m := ch.member
	c, err := p.dial(l.ctx, "udp", client.Addr(), m.Addr(), l.seed, 0)
	if err != nil {
		m.Release()
		m.ReportFailure("udp socket: " + shortErr(err))
		p.Stats.Errors.Add(1)
		return nil
	}
	sc := c.(*net.UDPConn)
	f := &udpFlow{server: sc, member: m}
	f.entry = &conntrack.Entry{
		Virtual:     p.Name,
		Proto:       "udp",
		Client:      client,
		VirtualAddr: addrPortOf(l.pc.LocalAddr()),
		Created:     time.Now(),
		IdleTimeout: p.IdleTimeout,
	}
	l.udp.mu.Lock()
	l.udp.flows[client] = f
	l.udp.mu.Unlock()
	p.Stats.Active.Add(1)
	p.Stats.Total.Add(1)
	p.Conns.Add(f.entry, func() { sc.Close() })
	f.entry.SetServer(m.PoolName(), addrPortOf(sc.LocalAddr()), m.Addr())
	l.conns.Add(1)
	go func() {
		defer l.conns.Done()
		defer func() {
			l.udp.mu.Lock()
			if l.udp.flows[client] == f {
				delete(l.udp.flows, client)
			}
			l.udp.mu.Unlock()
			sc.Close()
			p.Conns.Remove(f.entry)
			p.Stats.Active.Add(-1)
			m.Release()
		}()
		buf := make([]byte, maxDatagram)
		for {
			n, err := sc.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// ECONNREFUSED: the member's port is closed (ICMP unreachable).
				m.ReportFailure("udp: " + shortErr(err))
				m.AddError()
				return
			}
			if _, err := l.pc.WriteToUDPAddrPort(buf[:n], client); err != nil {
				return
			}
			f.entry.AddOut(int64(n))
			m.AddBytes(0, int64(n))
			p.Stats.BytesOut.Add(uint64(n))
		}
	}()
	return f
}
