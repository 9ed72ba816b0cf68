package virtual

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/mirror"
	"github.com/fulcrum-adc/fulcrum/persist"
)

// UDP flows of a mirrored virtual are mirrored as entries (F5 mirrors the
// UDP connections of a virtual and of a SNAT; IPVS and conntrackd do the
// same for their flows): the client, the member and the translated source
// address and port. There is no stream to gate: after a failover the
// client's next datagram goes on through the same member from the same
// source port, so the member sees one flow.

// mirrorUDP announces a new flow to the standby (nil: not mirrored now).
func (p *Plan) mirrorUDP(f *udpFlow, local netip.AddrPort) *mirror.Conn {
	setup := &mirror.ConnSetup{Kind: mirror.KindUDP, Virtual: p.Name, Pool: f.member.PoolName(), Member: f.member.Addr(),
		Client: mirror.Socket{Local: local, Remote: f.client},
		Server: mirror.Socket{Local: addrPortOf(f.server.LocalAddr()), Remote: f.member.Addr()},
		At:     time.Now()}
	mc, err := p.Mirror.Open(p.TrafficGroup, setup)
	if err != nil {
		if n := p.Stats.Mirror.Unmirrored.Add(1); n&(n-1) == 0 {
			p.Log.Warn("udp flow served unmirrored: it will not keep its member and source port after a failover", "virtual", p.Name, "reason", err.Error(), "unmirrored", n)
		}
		return nil
	}
	p.Stats.Mirror.Mirrored.Add(1)
	return mc
}

// leaveUDP lets go of the listener's mirrored UDP flows without telling
// the standby, which keeps them: the traffic group is leaving this device.
func (l *Listener) leaveUDP() {
	if l.udp == nil {
		return
	}
	u := l.udp
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, f := range u.flows {
		if f.mirror != nil {
			f.mirror.Leave()
		}
	}
}

// adoptUDP re-creates a flow mirrored from the previous active device: a
// socket from the same translated address and port to the same member,
// entered under the same client. A flow the client already restarted here
// (a datagram came first) is kept as it is.
func (l *Listener) adoptUDP(sh *mirror.Shadow) error {
	p := l.Plan()
	st := &sh.Setup
	pl := p.Pools[st.Pool]
	if pl == nil {
		return errors.New("pool " + st.Pool + " is gone")
	}
	m := pl.Member(st.Member)
	if m == nil {
		return errors.New("member " + st.Member.String() + " is gone")
	}
	fk := udpKey{client: st.Client.Remote}
	if p.Persist != nil && p.Persist.Type() == persist.TypeSIP {
		fk.member = m.Addr()
	}
	if l.udp.get(fk) != nil {
		return nil
	}
	ep, err := l.udpPoller()
	if err != nil || ep == nil {
		return errors.Join(errors.New("no epoll set"), err)
	}
	d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(st.Server.Local), Control: freebindReuse}
	c, err := d.DialContext(context.Background(), "udp", st.Member.String())
	if err != nil {
		return err
	}
	if !m.Acquire() {
		c.Close()
		return errors.New("member " + m.String() + " is at its connection limit: the client's next datagram is balanced anew")
	}
	if f := l.addUDPFlow(p, ep, fk, st.Client.Remote, st.Client.Local, c.(*net.UDPConn), m, false); f == nil {
		return errors.New("flow not entered")
	}
	p.Stats.Mirror.Restored.Add(1)
	return nil
}

// freebindReuse lets a socket bind an address this host may not have yet,
// and a port another socket of the same address may hold.
func freebindReuse(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
		if network == "udp6" || network == "tcp6" {
			level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
		}
		serr = unix.SetsockoptInt(int(fd), level, opt, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
