package virtual

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/mirror"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// maxConnectAttempts is how many members a flow tries before giving up
// (F5 reselect tries); each failure also feeds passive detection.
const maxConnectAttempts = 3

// serveTCP is the L4 full proxy: terminate the client connection, pick a
// member, connect, and pump bytes both ways until both sides are done. A
// fastl4 virtual's flow is set up the same way and its bytes then move in
// the kernel (relayFastL4).
func (l *Listener) serveTCP(p *Plan, c net.Conn) {
	now := time.Now()
	clientAP := addrPortOf(c.RemoteAddr())
	endClient := func(c net.Conn) { abortOrClose(c, p.Clientside) }
	endServer := func(s net.Conn) { abortOrClose(s, p.Serverside) }
	if p.Type == "fastl4" {
		// Idle flows end as the fastl4 profile says (F5 reset-on-timeout).
		endClient = func(c net.Conn) { closeOrReset(c, p.FastL4.ResetOnTimeout) }
		endServer = endClient
	}
	e := &conntrack.Entry{
		Virtual:     p.Name,
		Proto:       p.Type,
		Client:      clientAP,
		VirtualAddr: addrPortOf(c.LocalAddr()),
		Created:     now,
		IdleTimeout: p.IdleTimeout,
	}
	raw := c
	var server net.Conn
	var guard guardSlot // mirrored: the crash guard's hold on the sockets
	var mu sync.Mutex
	closeAll := func() {
		mu.Lock()
		s := server
		mu.Unlock()
		guard.release()
		c.Close()
		if s != nil {
			s.Close()
		}
	}
	// The reaper ends idle connections: with reset-on-timeout, by RST.
	reap := func() {
		mu.Lock()
		s := server
		mu.Unlock()
		guard.release()
		endClient(raw)
		if s != nil {
			endServer(s)
		}
	}
	p.Conns.Add(e, reap)
	defer p.Conns.Remove(e)
	defer closeAll()

	if p.ClientTLS != nil {
		tc := tls.Server(c, p.ClientTLS)
		c.SetDeadline(now.Add(p.ConnectTimeout + 5*time.Second))
		if err := tc.HandshakeContext(l.ctx); err != nil {
			p.reject("tls_handshake")
			p.Log.Debug("client-ssl handshake failed", "client", clientAP, "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		c = tc
	}

	id := ident{client: clientAP.Addr(), local: e.VirtualAddr.Addr()}
	dctx := l.ctx
	if p.lbspOn() {
		id.lbsp = p.readLBSP(raw)
		dctx = p.lbspDialContext(l.ctx, id.lbsp)
	}
	if p.Persist != nil {
		if maxBytes, wait, ok := p.Persist.Peek(); ok {
			var alive bool
			if id.payload, alive = p.peekFirst(c, maxBytes, wait, clientAP); !alive {
				return
			}
		}
	}

	if p.ISession != nil {
		setServer := func(s net.Conn) {
			mu.Lock()
			server = s
			mu.Unlock()
		}
		if l.serveISession(p, e, c, clientAP, setServer) {
			return
		}
		if p.ISession.Local == nil {
			p.Stats.ISession.Refused.Add(1)
			p.reject("no_tunnel")
			p.Log.Debug("connection refused: no iSession tunnel and no local pool", "client", clientAP)
			return
		}
		p.Stats.ISession.LocalFallback.Add(1)
		p.Log.Debug("no iSession tunnel: serving from the local pool", "client", clientAP, "pool", p.ISession.Local.Pool.Name())
		p = p.ISession.Local
	}
	var key []byte
	if p.HashKey.Kind == HashSourceAddr {
		b := clientAP.Addr().As16()
		key = b[:]
	}
	// Reselect (F5) / redispatch (HAProxy): a member that refuses the
	// connection before any byte moved is skipped for this flow, and a
	// persisted client is re-persisted to the member that answers.
	var tried []*pool.Member
	var ls lease
	defer func() { ls.release() }() // every path, panics included
	for {
		ch, err := p.choose(id, key, time.Now(), tried)
		if err != nil {
			if len(tried) > 0 {
				p.Stats.Errors.Add(1)
				p.Log.Warn("connection failed: no member reachable", "virtual", p.Name, "client", clientAP)
				return
			}
			p.reject("no_member")
			p.Log.Debug("no pool member for connection", "client", clientAP, "err", err)
			return
		}
		ls = lease{ch.member}
		m := ch.member
		s, err := p.dialMember(dctx, clientAP.Addr(), p.clientMSS(raw), m, l.seed, nil)
		if err == nil && len(id.payload) > 0 {
			err = p.forwardPeeked(s, e, m, id.payload)
		}
		if err != nil {
			ls.release()
			if p.connectFailed(l.ctx, m, clientAP, err) {
				return // Fulcrum's own resources: another member would fail the same way
			}
			tried = append(tried, m)
			if len(tried) >= maxConnectAttempts {
				p.Stats.Errors.Add(1)
				p.Log.Warn("connection failed: no member reachable", "virtual", p.Name, "client", clientAP, "err", shortErr(err))
				return
			}
			continue
		}
		mu.Lock()
		server = s
		mu.Unlock()
		e.SetServer(m.PoolName(), addrPortOf(s.LocalAddr()), m.Addr())
		if p.lbspOn() {
			p.lbspReply(raw, id.lbsp, m.Addr())
		}
		if len(id.payload) > 0 && p.Persist.LearnsFromServer() {
			if err := p.learnFromServer(c, s, e, m, id); err != nil {
				p.Log.Debug("connection ended during the TLS hellos", "client", clientAP, "member", m.String(), "err", err)
				ls.release()
				return
			}
		}
		member := func(in, out int64) { m.AddBytes(in, out) }
		switch {
		case p.Type == "fastl4":
			l.relayFastL4(p, e, c, s, member)
		case p.Mirror != nil:
			mc, g := p.startMirror(c, s, m)
			guard.set(g)
			l.proxyMirrored(p, e, c, s, member, mc, &guard, [2][]byte{}, memberRef{m.PoolName(), m.Addr()})
		default:
			l.proxyStreams(p, e, c, s, member)
		}
		ls.release()
		return
	}
}

// readFirst reads c's first bytes until done says more cannot change what
// they mean, maxBytes arrived, wait passed or c stopped sending. Every pass
// reads at least one byte or ends, and the passes are bounded by maxBytes
// even for a Read that returns nothing. A timeout or EOF is not an error
// here: the caller carries on with what arrived.
func readFirst(c net.Conn, maxBytes int, wait time.Duration, done func([]byte) bool) ([]byte, error) {
	buf := make([]byte, maxBytes)
	n := 0
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	var err error
	for range maxBytes {
		var k int
		k, err = c.Read(buf[n:])
		n += k
		if done(buf[:n]) || err != nil || n == maxBytes {
			break
		}
	}
	var ne net.Error
	if err == io.EOF || errors.As(err, &ne) && ne.Timeout() {
		err = nil
	}
	return buf[:n], err
}

// peekFirst reads the client's first bytes for a persistence profile that
// keys on them (msrdp, sip, ssl), within the profile's bounds. The bytes
// are forwarded to the member before the relay starts. A client that sends
// nothing or garbage costs only this connection's wait; it is then balanced
// without the key (counted in Stats.PersistFallbacks). alive is false when
// the client broke the connection (a reset): nothing is left to forward to.
func (p *Plan) peekFirst(c net.Conn, maxBytes int, wait time.Duration, client netip.AddrPort) (b []byte, alive bool) {
	b, err := readFirst(c, maxBytes, wait, func(b []byte) bool { done, _ := p.Persist.Inspect(b); return done })
	if err != nil {
		p.reject("client_aborted")
		p.Log.Debug("client gone while its first bytes were read for persistence", "client", client, "err", err)
		return nil, false
	}
	if _, found := p.Persist.Inspect(b); !found {
		p.Stats.PersistFallbacks.Add(1)
		why := "no " + p.Persist.Type() + " identity in the first bytes"
		if len(b) == 0 {
			why = "nothing sent in time"
		}
		p.Log.Debug("persistence key not found: balancing without it", "client", client, "profile", p.Persist.Name(), "bytes", len(b), "reason", why)
	}
	return b, true
}

// learnFromServer is for ssl persistence: the member's first bytes (its
// ServerHello, read within the profile's bounds while the client waits for
// it) are forwarded to the client and the session ID they assign is
// recorded for the member. A member that says nothing in time is simply
// relayed; its failure to answer is the relay's business.
func (p *Plan) learnFromServer(c, s net.Conn, e *conntrack.Entry, m *pool.Member, id ident) error {
	maxBytes, wait, _ := p.Persist.Peek()
	b, err := readFirst(s, maxBytes, wait, func(b []byte) bool { done, _ := p.Persist.InspectServer(b); return done })
	if len(b) > 0 {
		// Record before the client sees the ServerHello: it may resume the
		// session on a new connection the moment it has the ID.
		req := &persist.Request{Virtual: p.Name, Pool: p.Pool.Name(), Client: id.client, Local: id.local, Payload: id.payload}
		p.Persist.LearnServer(p.PersistTable, req, b, persist.Target{Pool: m.PoolName(), Member: m.Addr()}, time.Now())
		if p.ConnectTimeout > 0 {
			c.SetWriteDeadline(time.Now().Add(p.ConnectTimeout))
			defer c.SetWriteDeadline(time.Time{})
		}
		if _, werr := c.Write(b); werr != nil {
			return werr
		}
		n := int64(len(b))
		e.AddOut(n)
		p.Stats.BytesOut.Add(uint64(n))
		m.AddBytes(0, n)
	}
	return err
}

// forwardPeeked sends the bytes peekFirst read to the member, unchanged,
// before the relay takes over.
func (p *Plan) forwardPeeked(s net.Conn, e *conntrack.Entry, m *pool.Member, b []byte) error {
	if p.ConnectTimeout > 0 {
		s.SetWriteDeadline(time.Now().Add(p.ConnectTimeout))
		defer s.SetWriteDeadline(time.Time{})
	}
	if _, err := s.Write(b); err != nil {
		s.Close()
		return err
	}
	n := int64(len(b))
	e.AddIn(n)
	p.Stats.BytesIn.Add(uint64(n))
	m.AddBytes(n, 0)
	return nil
}

// proxyStreams relays both directions through their proxy buffers. When one
// side finishes sending, the other side gets a FIN (half-close); from then
// on the profiles' close timers run: the socket that received the FIN is in
// CLOSE_WAIT, the one we sent our FIN on in FIN_WAIT, and the connection is
// ended when the shorter of the two timers expires first. The flow ends when
// both directions are done or either fails.
func (l *Listener) proxyStreams(p *Plan, e *conntrack.Entry, c, s net.Conn, member func(in, out int64)) {
	l.proxyMirrored(p, e, c, s, member, nil, nil, [2][]byte{}, memberRef{})
}

// proxyMirrored is proxyStreams for a connection of a mirrored virtual
// (ref names its member; zero: not mirrored at all): mirrored through mc,
// or not yet (nil: mirrored from where it is once a peer streams), or
// taken over from another device with bytes pending for each direction
// (written before anything read).
func (l *Listener) proxyMirrored(p *Plan, e *conntrack.Entry, c, s net.Conn, member func(in, out int64), mc *mirror.Conn, guard *guardSlot, pending [2][]byte, ref memberRef) {
	toServerBuf, toClientBuf := p.ToServer, p.ToClient
	autoProxyBuffers(p, c, s, &toServerBuf, &toClientBuf)
	toServer := newRelay(s, c, toServerBuf.High, toServerBuf.Low, func(n int64) {
		e.AddIn(n)
		p.Stats.BytesIn.Add(uint64(n))
		member(n, 0)
	}, &RelayStats{}, &l.chunks)
	toClient := newRelay(c, s, toClientBuf.High, toClientBuf.Low, func(n int64) {
		e.AddOut(n)
		p.Stats.BytesOut.Add(uint64(n))
		member(0, n)
	}, &RelayStats{}, &l.chunks)
	toServer.tune(p.Clientside, p.Serverside)
	toClient.tune(p.Serverside, p.Clientside)
	toServer.pending, toClient.pending = pending[mirror.ToServer], pending[mirror.ToClient]
	var mm *mirrored
	if p.Mirror != nil && ref.addr.IsValid() && tcpConnOf(c) != nil && tcpConnOf(s) != nil {
		if guard == nil {
			guard = new(guardSlot)
		}
		mm = l.trackMirrored(c, s, mc, guard, ref, toServer, toClient)
		// The crash guard goes before any FIN or RST leaves (it may be
		// set up later, by a re-mirror).
		toServer.ending = guard.release
		toClient.ending = guard.release
		defer l.untrackMirrored(mm)
		defer func() {
			if cur := mm.mc.Load(); cur != nil {
				if cur.Broken() {
					p.Stats.Mirror.Lost.Add(1)
				}
				cur.Close()
			}
		}()
	}
	e.SetDetail(func() any { return streamDetail(p, c, s, toServer, toClient) })
	type ended struct {
		r      *relay
		frozen bool
	}
	done := make(chan ended, 2)
	running := 0
	start := func(r *relay) {
		running++
		go func() {
			err := r.run()
			done <- ended{r, errors.Is(err, errFrozen)}
		}()
	}
	start(toClient)
	start(toServer)
	var first *relay
	if mm == nil {
		first = (<-done).r
		running--
	} else {
		// Not mirrored (never, or its mirror was lost): mirrored from
		// where it is as soon as a peer streams (wake); a failed attempt
		// is retried after remirrorRetry.
		wake := make(chan struct{}, 1)
		var stopWaiting func()
		defer func() {
			if stopWaiting != nil {
				stopWaiting()
			}
		}()
		var retry <-chan time.Time
	loop:
		for {
			var lost <-chan struct{}
			if cur := mm.mc.Load(); cur != nil && !cur.Lost() {
				lost = cur.Done()
			} else if stopWaiting == nil && retry == nil {
				stopWaiting = p.Mirror.OnUp(p.TrafficGroup, func() { kick(wake) })
			}
			select {
			case x := <-done:
				running--
				first = x.r
				break loop
			case <-lost:
				continue // wait for a peer to stream again
			case <-retry:
				retry = nil
				continue
			case req := <-mm.freeze:
				// A planned handover: stop both directions where they are and
				// give the connection to the peer.
				toServer.freeze()
				toClient.freeze()
				mm.cancel() // after freeze: a writer whose gate wait ends must see it frozen
				<-done
				<-done
				var err error
				if !req.abandon {
					err = l.handOver(p, mm)
				}
				if req.abandon || err != nil {
					// Its group is leaving this device either way: a FIN or
					// reset from here could end it where it goes on.
					mm.abandon()
				}
				req.done <- err
				return
			case <-wake:
				stopWaiting = nil
				if !p.Mirror.Up(p.TrafficGroup) {
					continue // down again meanwhile
				}
				toServer.freeze()
				toClient.freeze()
				mm.cancel()
				a, b := <-done, <-done
				running -= 2
				if a.frozen && b.frozen {
					if err := l.remirror(p, mm); err != nil {
						p.Log.Debug("connection not re-mirrored", "client", e.Client, "err", err)
						retry = time.After(remirrorRetry)
					}
				}
				mm.arm(l.ctx)
				for _, x := range []ended{a, b} {
					if x.frozen {
						x.r.thaw()
						start(x.r)
					} else if first == nil {
						first = x.r // it ended on its own meanwhile
					}
				}
				if first != nil {
					break loop
				}
			}
		}
		l.untrackMirrored(mm)
		// Half-closed: TCP repair restores only established sockets, so
		// the connection can no longer move; the device that takes over
		// resets it (the connection's own close, when it comes, tells
		// the standby to forget it... once the channel carries it: the
		// half frame went first).
		dir := mirror.ToServer
		if first == toClient {
			dir = mirror.ToClient
		}
		if cur := mm.mc.Load(); cur != nil {
			cur.HalfClose(dir)
		}
	}
	// first's source sent its FIN (CLOSE_WAIT on that socket); we sent ours
	// on first's destination (FIN_WAIT).
	recvProfile, sentProfile := p.Clientside, p.Serverside
	if first == toClient {
		recvProfile, sentProfile = p.Serverside, p.Clientside
	}
	if d := closingTimeout(recvProfile, sentProfile); d > 0 {
		t := time.AfterFunc(d, func() {
			abortOrClose(c, p.Clientside)
			abortOrClose(s, p.Serverside)
		})
		defer t.Stop()
	}
	for ; running > 0; running-- {
		<-done
	}
}

// closingTimeout is the shorter of the CLOSE_WAIT timer of the socket that
// received a FIN and the FIN_WAIT timer of the socket we sent ours on
// (0: neither is set).
func closingTimeout(recv, sent *tcp.Profile) time.Duration {
	var d time.Duration
	for _, v := range []time.Duration{profileDur(recv, func(p *tcp.Profile) time.Duration { return p.CloseWaitTimeout }),
		profileDur(sent, func(p *tcp.Profile) time.Duration { return p.FinWaitTimeout })} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	return d
}

func profileDur(p *tcp.Profile, f func(*tcp.Profile) time.Duration) time.Duration {
	if p == nil {
		return 0
	}
	return f(p)
}

// abortOrClose ends a connection with RST when its profile resets on
// timeout (F5 reset-on-timeout), else with a FIN.
func abortOrClose(c net.Conn, prof *tcp.Profile) {
	if prof != nil && prof.ResetOnTimeout {
		if tc, ok := c.(*net.TCPConn); ok {
			tcp.Abort(tc)
			return
		}
	}
	c.Close()
}

// autoProxyBuffers sizes the proxy buffers of profiles with auto proxy
// buffers from both sides' measured bandwidth-delay products (TCP_INFO after
// the handshakes), once, when the flow starts.
func autoProxyBuffers(p *Plan, c, s net.Conn, toServer, toClient *BufferLimits) {
	cl, sv := tcpConnOf(c), tcpConnOf(s)
	if cl == nil || sv == nil {
		return
	}
	auto := func(prof *tcp.Profile) bool { return prof != nil && prof.AutoProxyBuffer }
	if !auto(p.Clientside) && !auto(p.Serverside) {
		return
	}
	ci, err1 := tcp.GetInfo(cl)
	si, err2 := tcp.GetInfo(sv)
	if err1 != nil || err2 != nil {
		return
	}
	if auto(p.Clientside) {
		h, l := tcp.AutoProxyBuffer(ci, si, p.Clientside.AutoBufferCeiling)
		*toClient = BufferLimits{High: int64(h), Low: int64(l)}
	}
	if auto(p.Serverside) {
		h, l := tcp.AutoProxyBuffer(si, ci, p.Serverside.AutoBufferCeiling)
		*toServer = BufferLimits{High: int64(h), Low: int64(l)}
	}
}
