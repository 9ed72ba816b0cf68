package virtual

import (
	"context"
	"errors"
	"hash/maphash"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/mirror"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// A udp virtual keeps one flow per client address (IP and port), each with
// its own connected socket to the member chosen for the client's first
// datagram. Client datagrams are read by the listener's goroutine
// (serveUDP); replies are read by one goroutine per listener that waits on
// an epoll set holding every flow socket (udpReplies). A flow is its socket
// and a few hundred bytes of state: no goroutine and no buffer of its own —
// both loops read into one 64 KiB buffer each — so a flood of spoofed source
// ports costs little memory, and the table is bounded by the virtual's
// connection_limit (F5: the virtual's connection limit, which counts UDP
// flows as connections).

// udpDialFunc opens a flow's socket to member (connected, so the kernel
// filters replies and reports ICMP errors on it).
type udpDialFunc func(ctx context.Context, p *Plan, client netip.Addr, member netip.AddrPort, seed maphash.Seed) (*net.UDPConn, error)

func dialUDP(ctx context.Context, p *Plan, client netip.Addr, member netip.AddrPort, seed maphash.Seed) (*net.UDPConn, error) {
	c, err := p.dial(ctx, "udp", client, member, seed, 0)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// udpKey identifies a flow: the client's address and port, and, on a
// virtual with sip persistence, the member its calls go to (one client may
// have calls on several members; every other flow has a zero member).
type udpKey struct {
	client netip.AddrPort
	member netip.AddrPort
}

// udpFlows is the UDP virtual's flow table.
type udpFlows struct {
	mu     sync.Mutex
	flows  map[udpKey]*udpFlow // by client address (and member, see udpKey)
	byID   map[uint64]*udpFlow // by the token registered in the epoll set
	nextID uint64
	closed bool // closeAll ran: no new flows
	// dial is the real dialer except in tests, which inject socket errors.
	dial udpDialFunc
	// ep is the epoll set of the flow sockets, made with the first flow
	// (nil before, and after closeAll). After a failure to make it, no new
	// flow is tried before epRetry.
	ep      *udpPoller
	epRetry time.Time
	replies sync.WaitGroup // the goroutine waiting on ep
	// lastWarn (unix nanoseconds) limits warnings about Fulcrum's own
	// resource errors to one a second: a flood must not become a log flood.
	lastWarn atomic.Int64
}

type udpFlow struct {
	id     uint64
	key    udpKey
	client netip.AddrPort
	server *net.UDPConn
	raw    syscall.RawConn // server's, for reads driven by the epoll set
	member *pool.Member
	p      *Plan
	l      *Listener
	entry  *conntrack.Entry
	ended  sync.Once    // end runs once, whoever ends the flow
	mirror *mirror.Conn // the flow's entry on the standby (nil: not mirrored)
}

// udpPoller is the epoll set of a listener's flow sockets. Its descriptor is
// non-blocking and handed to Go's poller, so udpReplies waits like any
// network read (as the parker does, see parker.go).
type udpPoller struct {
	epfd int
	f    *os.File
}

func newUDPPoller() (*udpPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	return &udpPoller{epfd: epfd, f: os.NewFile(uintptr(epfd), "fulcrum-udp-flows")}, nil
}

func newUDPFlows() *udpFlows {
	return &udpFlows{flows: make(map[udpKey]*udpFlow), byID: make(map[uint64]*udpFlow), dial: dialUDP}
}

// setDial replaces the dialer (tests).
func (u *udpFlows) setDial(d udpDialFunc) {
	u.mu.Lock()
	u.dial = d
	u.mu.Unlock()
}

// closeAll ends every flow and the epoll set; no flow is made afterwards.
// It is safe to call more than once (serveUDP calls it when the listening
// socket closes, Listener.Close calls it too).
func (u *udpFlows) closeAll() {
	u.mu.Lock()
	u.closed = true
	fs := make([]*udpFlow, 0, len(u.flows))
	for _, f := range u.flows {
		fs = append(fs, f)
	}
	ep := u.ep
	u.ep = nil
	u.mu.Unlock()
	for _, f := range fs {
		f.end()
	}
	if ep != nil {
		ep.f.Close() // ends udpReplies
	}
}

func (u *udpFlows) get(k udpKey) *udpFlow {
	u.mu.Lock()
	f := u.flows[k]
	u.mu.Unlock()
	return f
}

func (u *udpFlows) byToken(id uint64) *udpFlow {
	u.mu.Lock()
	f := u.byID[id]
	u.mu.Unlock()
	return f
}

// warnLocal logs one of Fulcrum's own resource errors, at most once a second.
func (u *udpFlows) warnLocal(p *Plan, msg string, err error) {
	now := time.Now().UnixNano()
	last := u.lastWarn.Load()
	if now-last < int64(time.Second) || !u.lastWarn.CompareAndSwap(last, now) {
		return
	}
	p.Log.Warn(msg+": Fulcrum's own resource limit, not the member's fault", "err", err)
}

const (
	maxDatagram = 64 << 10
	// repliesPerWake is how many replies of one flow udpReplies forwards
	// before serving the other ready flows (the set is level-triggered, so
	// the rest wait for the next round).
	repliesPerWake = 16
)

// serveUDP reads client datagrams, creates flows on first sight and forwards.
func (l *Listener) serveUDP() {
	defer l.loop.Done()
	defer l.udp.replies.Wait()
	// Replies are sent from the listening socket: once it is closed, every
	// flow is over.
	defer l.udp.closeAll()
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
		l.forwardUDP(client, buf[:n])
	}
}

// forwardUDP sends one client datagram to the member of its flow, making
// the flow if there is none.
func (l *Listener) forwardUDP(client netip.AddrPort, d []byte) {
	k, byCall, known := udpKey{client: client}, false, true
	if p := l.plan.Load(); p.Persist != nil && p.Persist.Type() == persist.TypeSIP {
		k, byCall, known = l.sipFlowKey(p, client, d)
	}
	var f *udpFlow
	if known {
		f = l.udp.get(k)
	}
	for try := 0; try < 2; try++ {
		if f == nil {
			if f = l.newUDPFlow(client, d, byCall); f == nil {
				return
			}
		}
		_, err := f.server.Write(d)
		switch {
		case err == nil:
			n := int64(len(d))
			f.entry.AddIn(n)
			f.member.AddBytes(n, 0)
			f.p.Stats.BytesIn.Add(uint64(n))
			return
		case errors.Is(err, net.ErrClosed):
			// The flow ended (idle reaping) between lookup and write:
			// the datagram starts a new flow.
			f = nil
			continue
		default:
			l.flowError(f, err)
			return
		}
	}
}

// flowError handles an error on a flow's socket. ICMP port unreachable
// (ECONNREFUSED) is the member's: a passive failure, and the flow ends (the
// client's next datagram is balanced again). Fulcrum's own resource errors
// (ENOBUFS, …) drop the datagram and are counted on the virtual, never on the
// member. Anything else counts as a member error.
func (l *Listener) flowError(f *udpFlow, err error) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		f.member.ReportFailure("udp: " + shortErr(err))
		f.member.AddError()
		f.end()
	case isLocalFault(err):
		f.p.reject("local_resources")
		l.udp.warnLocal(f.p, "udp datagram dropped", err)
	default:
		f.member.AddError()
	}
}

// sipFlowKey is the flow a datagram on a virtual with sip persistence
// belongs to: every datagram is keyed on its own Call-ID (F5 SIP
// persistence), so one client's calls may go to several members, each call
// through the flow to its member. byCall is false for a datagram without a
// Call-ID (a keep-alive, garbage): it takes the client's plain flow,
// balanced normally, and is counted in Stats.PersistFallbacks. When the
// Call-ID has no record yet, the member is not known before newUDPFlow
// chooses it: known is false then.
func (l *Listener) sipFlowKey(p *Plan, client netip.AddrPort, d []byte) (k udpKey, byCall, known bool) {
	k = udpKey{client: client}
	if _, found := p.Persist.Inspect(d); !found {
		p.Stats.PersistFallbacks.Add(1)
		return k, false, true
	}
	req := &persist.Request{Virtual: p.Name, Pool: p.Pool.Name(), Client: client.Addr(), Payload: d}
	tgt, ok := p.Persist.Lookup(p.PersistTable, req, time.Now())
	k.member = tgt.Member
	return k, true, ok
}

// newUDPFlow picks a member for client (persistence may read d, the
// datagram that starts the flow) and registers the flow's socket for
// replies. byCall makes the flow one call's on a sip virtual, keyed on the
// member as well (an existing flow of the client to the chosen member is
// used instead of a new one). It returns nil (the datagram is dropped and
// counted) when the table is full, no member can take the flow, or a
// socket cannot be made.
func (l *Listener) newUDPFlow(client netip.AddrPort, d []byte, byCall bool) *udpFlow {
	p := l.plan.Load()
	u := l.udp
	u.mu.Lock()
	closed, full, dial := u.closed, p.ConnectionLimit > 0 && len(u.flows) >= p.ConnectionLimit, u.dial
	u.mu.Unlock()
	if closed {
		return nil
	}
	if full {
		// Existing flows carry on; a new client waits for one to end.
		p.reject("connection_limit")
		return nil
	}
	ep, err := l.udpPoller()
	if err != nil {
		p.reject("local_resources")
		u.warnLocal(p, "udp flow not created", err)
		return nil
	}
	if ep == nil {
		return nil // closed meanwhile
	}
	var key []byte
	if p.HashKey.Kind == HashSourceAddr {
		b := client.Addr().As16()
		key = b[:]
	}
	local := addrPortOf(l.pc.LocalAddr())
	ch, err := p.choose(ident{client: client.Addr(), local: local.Addr(), payload: d}, key, time.Now(), nil)
	if err != nil {
		p.reject("no_member")
		return nil
	}
	m := ch.member
	fk := udpKey{client: client}
	if byCall {
		fk.member = m.Addr()
		if f := u.get(fk); f != nil {
			m.Release() // this call joins the client's flow to that member
			return f
		}
	}
	sc, err := dial(l.ctx, p, client.Addr(), m.Addr(), l.seed)
	if err != nil {
		m.Release()
		if isLocalFault(err) {
			p.reject("local_resources")
			u.warnLocal(p, "udp flow not created", err)
		} else {
			// No route to the member and the like.
			m.ReportFailure("udp socket: " + shortErr(err))
			m.AddError()
			p.Stats.Errors.Add(1)
		}
		return nil
	}
	return l.addUDPFlow(p, ep, fk, client, local, sc, m, p.Mirror != nil)
}

// addUDPFlow enters a flow whose socket sc to member m is made (m is
// acquired) into the table and the epoll set; nil when it cannot be (sc is
// closed and m released then).
// With mirror, the flow is announced to the standby.
func (l *Listener) addUDPFlow(p *Plan, ep *udpPoller, fk udpKey, client, local netip.AddrPort, sc *net.UDPConn, m *pool.Member, mirror bool) *udpFlow {
	u := l.udp
	raw, err := sc.SyscallConn()
	if err != nil {
		sc.Close()
		m.Release()
		p.Stats.Errors.Add(1)
		return nil
	}
	f := &udpFlow{key: fk, client: client, server: sc, raw: raw, member: m, p: p, l: l}
	f.entry = &conntrack.Entry{
		Virtual:     p.Name,
		Proto:       "udp",
		Client:      client,
		VirtualAddr: local,
		Created:     time.Now(),
		IdleTimeout: p.IdleTimeout,
	}
	if mirror {
		f.mirror = p.mirrorUDP(f, local)
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		sc.Close()
		m.Release()
		if f.mirror != nil {
			f.mirror.Close()
		}
		return nil
	}
	u.nextID++
	f.id = u.nextID
	u.flows[fk] = f
	u.byID[f.id] = f
	u.mu.Unlock()
	p.Stats.Active.Add(1)
	p.Stats.Total.Add(1)
	l.conns.Add(1)
	// From here on every path ends the flow through f.end, exactly once.
	p.Conns.Add(f.entry, f.end)
	f.entry.SetServer(m.PoolName(), addrPortOf(sc.LocalAddr()), m.Addr())
	if err := ep.add(f); err != nil {
		f.end()
		if errors.Is(err, net.ErrClosed) {
			return nil // the listener closed meanwhile
		}
		if isLocalFault(err) {
			p.reject("local_resources")
			u.warnLocal(p, "udp flow not created", err)
		} else {
			p.Stats.Errors.Add(1)
		}
		return nil
	}
	return f
}

// end closes the flow and releases what it holds: its table entries, its
// member slot and its socket. Idle reaping, an ICMP error, the listener's
// close and a failed set-up all end flows through here; only the first call
// does anything.
func (f *udpFlow) end() {
	f.ended.Do(func() {
		u := f.l.udp
		u.mu.Lock()
		if u.flows[f.key] == f {
			delete(u.flows, f.key)
		}
		delete(u.byID, f.id)
		u.mu.Unlock()
		// Closing the socket also takes it out of the epoll set (the
		// kernel drops a closed file from every set; nothing else holds
		// the descriptor), so its number cannot be confused with a later
		// socket's: events carry the flow's id, not the descriptor.
		f.server.Close()
		if f.mirror != nil {
			f.mirror.Close()
		}
		f.p.Conns.Remove(f.entry)
		f.p.Stats.Active.Add(-1)
		f.member.Release()
		f.l.conns.Done()
	})
}

// udpPoller returns the listener's epoll set, making it and starting its
// goroutine with the first flow. It returns nil, nil once the flow table is
// closed.
func (l *Listener) udpPoller() (*udpPoller, error) {
	u := l.udp
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, nil
	}
	if u.ep != nil {
		return u.ep, nil
	}
	if time.Now().Before(u.epRetry) {
		return nil, errors.New("epoll set unavailable (retrying shortly)")
	}
	ep, err := newUDPPoller()
	if err != nil {
		u.epRetry = time.Now().Add(time.Second)
		return nil, err
	}
	u.ep = ep
	u.replies.Add(1)
	go func() {
		defer u.replies.Done()
		l.udpReplies(ep)
	}()
	return ep, nil
}

// add registers f's socket, level-triggered, under f's id.
func (ep *udpPoller) add(f *udpFlow) error {
	var err error
	cerr := f.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(uint32(f.id)), Pad: int32(uint32(f.id >> 32))}
		err = unix.EpollCtl(ep.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// udpReplies forwards members' replies to clients until the set is closed.
func (l *Listener) udpReplies(ep *udpPoller) {
	rc, err := ep.f.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, maxDatagram)
	// The callback drains the set without blocking and returns false to
	// wait (in Go's poller) for it to become readable again; Read returns
	// when the set is closed.
	rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return false
			}
			for _, ev := range events[:n] {
				id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				if f := l.udp.byToken(id); f != nil {
					l.flowReplies(f, buf)
				}
			}
		}
	})
}

// flowReplies forwards the replies waiting on f's socket (up to
// repliesPerWake) to its client.
func (l *Listener) flowReplies(f *udpFlow, buf []byte) {
	for range repliesPerWake {
		var n int
		var err error
		// One non-blocking read: the callback always returns true. The
		// descriptor stays valid during it even if the flow is ended
		// meanwhile.
		if rerr := f.raw.Read(func(fd uintptr) bool {
			n, err = unix.Read(int(fd), buf)
			return true
		}); rerr != nil {
			return // ended
		}
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return
		case err != nil:
			l.flowError(f, os.NewSyscallError("read", err))
			return
		}
		if _, err := l.pc.WriteToUDPAddrPort(buf[:n], f.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Dropped on the way to the client: not the member's doing.
			f.p.Stats.Errors.Add(1)
			if isLocalFault(err) {
				l.udp.warnLocal(f.p, "udp reply dropped", err)
			}
			continue
		}
		f.entry.AddOut(int64(n))
		f.member.AddBytes(0, int64(n))
		f.p.Stats.BytesOut.Add(uint64(n))
	}
}

// count is the number of live flows.
func (u *udpFlows) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.flows)
}
