package virtual

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/flowhold"
	"github.com/fulcrum-adc/fulcrum/internal/tcprepair"
	"github.com/fulcrum-adc/fulcrum/mirror"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// ConnMirror mirrors the connections of mirrored virtuals to their traffic
// group's next-active device (mirror.Mirror).
type ConnMirror interface {
	Open(group string, s *mirror.ConnSetup) (*mirror.Conn, error)
	Up(group string) bool // a peer is streaming now (Open would succeed)
	// OnUp calls f once a peer streams (at once if one does now).
	OnUp(group string, f func()) (cancel func())
}

// MirrorMark is the socket mark (SO_MARK) of a mirrored connection's
// sockets while the connection is mirrored. An nftables rule drops FINs
// and resets that carry it: if this process dies, the kernel closes its
// sockets, and without the rule their FINs and resets would end
// connections the standby is about to continue. Fulcrum clears the mark
// before it ends a connection itself (unmark).
const MirrorMark = 0x4d495252 // "MIRR"

// FlowGuard keeps the host from resetting a mirrored connection's flows
// on its own (flowhold.Guard): their inbound packets get MirrorMark, so
// that the kernel's answers to them carry it too.
type FlowGuard interface {
	Add(flows ...flowhold.Flow) error
	Remove(flows ...flowhold.Flow) error
}

// setMark sets SO_MARK (CAP_NET_ADMIN).
func setMark(c net.Conn, mark int) error {
	tc := tcpConnOf(c)
	if tc == nil {
		return errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark) }); err != nil {
		return err
	}
	return serr
}

// guarded is a mirrored connection's sockets while the crash guard covers
// them: marked, and their flows in the guard.
type guarded struct {
	g     FlowGuard
	socks []net.Conn
	flows []flowhold.Flow
	done  atomic.Bool
}

// guard marks the sockets (a proxied connection's two, or an idle http
// client connection's one) and adds their flows to p's guard.
func (p *Plan) guard(socks ...net.Conn) (*guarded, error) {
	gd := &guarded{g: p.Guard}
	for _, x := range socks {
		gd.flows = append(gd.flows, flowhold.Flow{Local: addrPortOf(x.LocalAddr()), Remote: addrPortOf(x.RemoteAddr())})
		if err := setMark(x, MirrorMark); err != nil {
			gd.unmark()
			return nil, err
		}
		gd.socks = append(gd.socks, x)
	}
	if gd.g != nil {
		if err := gd.g.Add(gd.flows...); err != nil {
			gd.unmark()
			return nil, err
		}
	}
	return gd, nil
}

func (gd *guarded) unmark() {
	for _, x := range gd.socks {
		setMark(x, 0)
	}
}

// guardSlot holds a connection's crash guard for whoever ends the
// connection (its relays, the reaper, a closer): a re-mirror may set the
// guard up after the connection began.
type guardSlot struct{ g atomic.Pointer[guarded] }

func (s *guardSlot) set(g *guarded) { s.g.Store(g) }
func (s *guardSlot) get() *guarded  { return s.g.Load() }

// release releases the guard, if there is one (nil-safe).
func (s *guardSlot) release() {
	if s != nil {
		s.get().release()
	}
}

// release lets the connection's own FINs and resets out again: Fulcrum is
// about to end it (or it is no longer mirrored). Once; nil-safe.
func (gd *guarded) release() {
	if gd == nil || gd.done.Swap(true) {
		return
	}
	gd.unmark()
	if gd.g != nil {
		gd.g.Remove(gd.flows...)
	}
}

// startMirror guards the connection against this process's crash, reads
// both sockets' parameters (TCP repair, on the live sockets) and announces
// the connection to the standby; nil when it is not mirrored (no peer
// streaming now, or the sockets could not be read: it is then served as
// any other).
func (p *Plan) startMirror(c, s net.Conn, m *pool.Member) (*mirror.Conn, *guarded) {
	if p.Mirror == nil {
		return nil, nil
	}
	cl, sv := tcpConnOf(c), tcpConnOf(s)
	if cl == nil || sv == nil {
		p.Stats.Mirror.Unmirrored.Add(1)
		return nil, nil
	}
	gd, err := p.guard(cl, sv)
	var cs, ss *tcprepair.State
	if err == nil {
		cs, err = tcprepair.Snapshot(cl)
	}
	if err == nil {
		ss, err = tcprepair.Snapshot(sv)
	}
	if err == nil {
		setup := &mirror.ConnSetup{Virtual: p.Name, Pool: m.PoolName(), Member: m.Addr(),
			Client: socketOf(cs), Server: socketOf(ss), At: time.Now()}
		var mc *mirror.Conn
		if mc, err = p.Mirror.Open(p.TrafficGroup, setup); err == nil {
			p.Stats.Mirror.Mirrored.Add(1)
			return mc, gd
		}
	}
	gd.release()
	if n := p.Stats.Mirror.Unmirrored.Add(1); n&(n-1) == 0 {
		p.Log.Warn("connection served unmirrored: it will not survive a failover", "virtual", p.Name, "reason", err.Error(), "unmirrored", n)
	}
	return nil, nil
}

// socketOf is the mirrored form of a snapshot: the sequence numbers of the
// next byte written and read are stream offset 0 of each direction.
func socketOf(s *tcprepair.State) mirror.Socket {
	w := s.Window
	return mirror.Socket{Local: s.Local, Remote: s.Remote, SendSeq: s.SendSeq, RecvSeq: s.RecvSeq, MSS: s.MSS,
		SndWscale: s.SndWscale, RcvWscale: s.RcvWscale, WindowScaling: s.WindowScaling, SACK: s.SACK, Timestamps: s.Timestamps,
		Timestamp: s.Timestamp, Window: [5]uint32{w.SndWl1, w.SndWnd, w.MaxWindow, w.RcvWnd, w.RcvWup}, HasWindow: s.HasWindow}
}

// unsentBytes is how many bytes c's kernel holds that the peer has not
// acknowledged (SIOCOUTQ); 0 when it cannot tell, which makes the
// acknowledged count larger only for a socket that is failing anyway.
func unsentBytes(c net.Conn) int64 {
	tc := tcpConnOf(c)
	if tc == nil {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	})
	if err != nil || n < 0 {
		return 0
	}
	return int64(n)
}

// restoredStates rebuilds both sockets of a shadow as the standby knows
// them: each receives from where the mirror's stream ends (the standby
// holds every byte it ever relayed on), and sends from the first byte the
// peer may lack; those bytes, and the ones read and never written, are
// returned as pending, to be written first (a peer that had them drops
// the copies: same bytes, same sequence numbers).
func restoredStates(sh *mirror.Shadow, now time.Time) (client, server *tcprepair.State, pending [2][]byte) {
	st := &sh.Setup
	// The TSval clock went on running on the old active: advance it by
	// the time since it was read and a little more, so that the peer's
	// PAWS check never sees it go back (and not much more: the peer's
	// first echo of an old TSval is the restored socket's first RTT
	// sample).
	tsNow := func(s *mirror.Socket, side int) *tcprepair.State {
		r := &tcprepair.State{Timestamp: s.Timestamp}
		since := st.At
		if sh.Final {
			r.Timestamp, since = sh.Timestamps[side], sh.FinalAt
		}
		r.AdvanceTimestamp(now.Sub(since) + 5*time.Millisecond)
		return r
	}
	build := func(s *mirror.Socket, side int, in, out *mirror.ShadowStream, sentEnd int64) *tcprepair.State {
		r := tsNow(s, side)
		r.Local, r.Remote, r.MSS, r.SndWscale, r.RcvWscale = s.Local, s.Remote, s.MSS, s.SndWscale, s.RcvWscale
		r.WindowScaling, r.SACK, r.Timestamps = s.WindowScaling, s.SACK, s.Timestamps
		r.RecvSeq = s.RecvSeq + uint32(in.End())
		r.SendSeq = s.SendSeq + uint32(out.Base)
		// What may have reached the peer goes back as sent (its
		// acknowledgements must not be for data the socket never sent);
		// the rest is written after.
		r.SendQueue = out.Data[:sentEnd-out.Base]
		if s.HasWindow {
			// Windows as they were at setup, anchored at the restored
			// sequence numbers (the kernel requires rcv_wup <= rcv_nxt);
			// the first ACK each way brings them up to date.
			r.HasWindow = true
			r.Window = tcprepair.Window{SndWl1: r.RecvSeq, SndWnd: s.Window[1], MaxWindow: s.Window[2], RcvWnd: s.Window[3], RcvWup: r.RecvSeq}
		}
		return r
	}
	client = build(&st.Client, 0, &sh.Streams[mirror.ToServer], &sh.Streams[mirror.ToClient], sh.SentEnd(mirror.ToClient))
	if st.Kind != mirror.KindHTTP { // an idle http connection has no server socket
		server = build(&st.Server, 1, &sh.Streams[mirror.ToClient], &sh.Streams[mirror.ToServer], sh.SentEnd(mirror.ToServer))
	}
	for dir := range pending {
		st := &sh.Streams[dir]
		pending[dir] = st.Data[sh.SentEnd(dir)-st.Base:]
	}
	return client, server, pending
}

// restoreRecvBuffer is a restored socket's receive buffer: room for what
// its peer may have in flight in the window the old socket had grown to
// (memory is taken only for bytes actually queued).
const restoreRecvBuffer = 4 << 20

// Adopt takes over a connection mirrored from the previous active device:
// it rebuilds both sockets with TCP repair (the traffic group's addresses
// are held meanwhile, so no packet of the flow meets a socket that is not
// there yet) and relays from where the mirror ends. A connection whose
// peer shows a gap (it sent bytes the old active acknowledged and never
// mirrored) is reset on both sides: it can never be continued.
func (l *Listener) Adopt(sh *mirror.Shadow) error {
	switch sh.Setup.Kind {
	case mirror.KindUDP:
		if l.udp == nil {
			return errors.New("a udp flow for a virtual that is not udp")
		}
		return l.adoptUDP(sh)
	case mirror.KindHTTP:
		return l.adoptHTTP(sh)
	}
	if l.udp != nil {
		return errors.New("a tcp connection for a udp virtual")
	}
	p := l.Plan()
	cs, ss, pending := restoredStates(sh, time.Now())
	if sh.HalfClosed {
		// The FIN relayed on took a sequence number: the reset below must
		// come from just past it to be the one the peer accepts.
		if sh.FinDir == mirror.ToServer {
			ss.SendSeq++
		} else {
			cs.SendSeq++
		}
	}
	p.Log.Debug("restoring mirrored connection", "client", sh.Setup.Client.Remote,
		"final", sh.Final, "client_rcv", cs.RecvSeq, "client_snd", cs.SendSeq, "client_sendq", len(cs.SendQueue),
		"server_rcv", ss.RecvSeq, "server_snd", ss.SendSeq, "server_sendq", len(ss.SendQueue),
		"pending_to_server", len(pending[mirror.ToServer]), "pending_to_client", len(pending[mirror.ToClient]))
	o := tcprepair.RestoreOptions{RecvBuffer: restoreRecvBuffer}
	c, err := tcprepair.Restore(cs, o)
	if err != nil {
		return err
	}
	s, err := tcprepair.Restore(ss, o)
	if err != nil {
		tcprepair.CloseSilently(c)
		return err
	}
	if sh.HalfClosed {
		// A side had sent its FIN: the connection cannot go on here.
		// Reset both sides now rather than leave either peer waiting on
		// a half-open connection (a reset that misses the peer's exact
		// sequence number draws a challenge ACK, which this host answers
		// with an exact reset: the socket is gone by then).
		// The traffic group's hold still drops resets from its addresses
		// while connections are being restored: reset once it is lifted.
		c.SetLinger(0)
		s.SetLinger(0)
		l.startAfterHold(func() {
			c.Close()
			s.Close()
		})
		p.Stats.Mirror.ResetHalfClosed.Add(1)
		return nil
	}
	var m *pool.Member
	if pl := p.Pools[sh.Setup.Pool]; pl != nil {
		m = pl.Member(sh.Setup.Member)
	}
	l.conns.Add(1)
	p.Stats.Active.Add(1)
	p.Stats.Total.Add(1)
	p.Stats.Mirror.Restored.Add(1)
	l.startAfterHold(func() {
		probeInFlight(c)
		probeInFlight(s)
		go func() {
			defer l.conns.Done()
			defer p.Stats.Active.Add(-1)
			l.serveAdopted(p, c, s, m, sh, pending)
		}()
	})
	return nil
}

// afterHoldLimit bounds how long a connection taken over waits for
// Announced.
const afterHoldLimit = time.Second

// startAfterHold runs start once the traffic group's packets flow to this
// device (Announced: the hold lifted, the addresses announced from here).
// A connection taken over sends nothing before: its peer's
// acknowledgements would meet the hold, or go to the old device, and the
// restored socket would resend only on its first retransmission timeout
// (a second: it has no round-trip sample yet).
func (l *Listener) startAfterHold(start func()) {
	l.mirMu.Lock()
	defer l.mirMu.Unlock()
	l.afterHold = append(l.afterHold, start)
	if l.afterHoldTimer == nil {
		l.afterHoldTimer = time.AfterFunc(afterHoldLimit, l.Announced)
	}
}

// Announced tells the listener that, after a takeover, its traffic
// group's addresses are announced from here: the connections taken over
// start.
func (l *Listener) Announced() {
	l.mirMu.Lock()
	starts := l.afterHold
	l.afterHold = nil
	if l.afterHoldTimer != nil {
		l.afterHoldTimer.Stop()
		l.afterHoldTimer = nil
	}
	l.mirMu.Unlock()
	for _, start := range starts {
		start()
	}
}

// probeInFlight sends a window probe on a restored socket that holds bytes
// its peer has not acknowledged: the peer had them, most likely, and its
// acknowledgement met the hold; its answer to the probe acknowledges them
// now rather than after the restored socket's first retransmission
// timeout. Nothing else may use c yet.
func probeInFlight(c *net.TCPConn) {
	if unsentBytes(c) > 0 {
		tcprepair.Probe(c)
	}
}

func (l *Listener) serveAdopted(p *Plan, c, s *net.TCPConn, m *pool.Member, sh *mirror.Shadow, pending [2][]byte) {
	e := &conntrack.Entry{Virtual: p.Name, Proto: p.Type, Client: sh.Setup.Client.Remote, VirtualAddr: sh.Setup.Client.Local,
		Created: time.Now(), IdleTimeout: p.IdleTimeout}
	var guard guardSlot // set by a re-mirror
	reap := func() { guard.release(); abortOrClose(c, p.Clientside); abortOrClose(s, p.Serverside) }
	p.Conns.Add(e, reap)
	defer p.Conns.Remove(e)
	defer c.Close()
	defer s.Close()
	e.SetServer(sh.Setup.Pool, sh.Setup.Server.Local, sh.Setup.Member)
	member := func(int64, int64) {}
	if m != nil {
		if m.Acquire() { // counted, unless the member is at its limit: the connection exists either way
			ls := lease{m}
			defer ls.release()
		}
		member = func(in, out int64) { m.AddBytes(in, out) }
	}
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	go watchGap(ctx, p, []*net.TCPConn{c, s}, func() {
		// Both lingers first: aborting one side makes the relay
		// close the other, which must reset too.
		c.SetLinger(0)
		s.SetLinger(0)
		c.Close()
		s.Close()
	})
	l.proxyMirrored(p, e, c, s, member, nil, &guard, pending, memberRef{sh.Setup.Pool, sh.Setup.Member})
}

// Gap detection after a takeover: a peer that keeps sending data while
// nothing arrives in order has bytes the old active acknowledged and never
// mirrored before it failed (TCP will never resend them: they are
// acknowledged). Its segments are out of order, or beyond the window the
// restored socket offers; either way they count as data segments in and
// not as bytes received.
//
// A peer that was kept waiting through the failover retransmits only on
// its backed-off retransmission timer, so the first byte in order may take
// seconds to come: only a silence this long, while data keeps coming,
// counts as a gap.
const (
	gapCheckEvery = 100 * time.Millisecond
	gapWatchFor   = 30 * time.Second
	gapAfter      = 4 * time.Second // no byte in order this long after a takeover
	gapSegments   = 3               // while at least this many data segments came in
)

// watchGap resets (reset) a restored connection whose either peer (socks:
// client, then server if there is one) shows a gap.
func watchGap(ctx context.Context, p *Plan, socks []*net.TCPConn, reset func()) {
	t := time.NewTicker(gapCheckEvery)
	defer t.Stop()
	start := time.Now()
	stuck := make([]bool, len(socks))
	for now := range t.C {
		if ctx.Err() != nil || now.Sub(start) > gapWatchFor {
			return
		}
		done := true
		for i, conn := range socks {
			if stuck[i] {
				continue
			}
			info, err := tcpInfoOf(conn)
			if err != nil {
				return
			}
			if info.Bytes_received > 0 {
				stuck[i] = true // bytes in order: no gap on this side
				continue
			}
			if info.Data_segs_in >= gapSegments && now.Sub(start) >= gapAfter {
				p.Stats.Mirror.Resets.Add(1)
				p.Log.Warn("taken-over connection reset: its peer sent bytes the previous active device acknowledged and never mirrored",
					"client", socks[0].RemoteAddr().String(), "side", [2]string{"client", "server"}[i], "segments", info.Data_segs_in)
				reset()
				return
			}
			done = false
		}
		if done {
			return
		}
	}
}

// tcpInfoOf reads TCP_INFO.
func tcpInfoOf(c *net.TCPConn) (*unix.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return nil, err
	}
	return info, ierr
}

// freezeReq asks a mirrored connection's goroutine to stop where it is and
// hand the connection over (or, abandon, to close it silently).
type freezeReq struct {
	abandon bool
	done    chan error
}

// abandon closes a frozen connection's sockets silently.
func (mm *mirrored) abandon() error {
	if mm.c == nil || mm.s == nil {
		return errors.New("not a TCP connection")
	}
	if mc := mm.mc.Load(); mc != nil {
		mc.Leave()
	}
	tcprepair.CloseSilently(mm.c)
	tcprepair.CloseSilently(mm.s)
	return nil
}

// memberRef names the member a mirrored connection goes to (for the
// standby, which may not have the member object).
type memberRef struct {
	pool string
	addr netip.AddrPort
}

// mirrored is a connection of a mirrored virtual: mirrored now (mc), or
// waiting to be (re-mirrored once a peer streams: remirror).
type mirrored struct {
	c, s               *net.TCPConn
	mc                 atomic.Pointer[mirror.Conn] // nil: not mirrored now
	guard              *guardSlot                  // the crash guard
	ref                memberRef
	toServer, toClient *relay
	cancel             context.CancelFunc // ends the relays' write-gate waits
	freeze             chan freezeReq     // a handover or abandon asks; the connection's goroutine answers
}

// trackMirrored registers a connection of a mirrored virtual for handovers
// and points its relays at the mirror (mc; nil: not mirrored yet).
func (l *Listener) trackMirrored(c, s net.Conn, mc *mirror.Conn, guard *guardSlot, ref memberRef, toServer, toClient *relay) *mirrored {
	mm := &mirrored{c: tcpConnOf(c), s: tcpConnOf(s), guard: guard, ref: ref, toServer: toServer, toClient: toClient,
		freeze: make(chan freezeReq)}
	mm.mc.Store(mc)
	mm.arm(l.ctx)
	l.mirMu.Lock()
	if l.mirrored == nil {
		l.mirrored = map[*mirrored]struct{}{}
	}
	l.mirrored[mm] = struct{}{}
	l.mirMu.Unlock()
	return mm
}

// arm points the relays at the current mirror with a fresh context for
// their write-gate waits (the relays are not running).
func (mm *mirrored) arm(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	mm.cancel = cancel
	if mc := mm.mc.Load(); mc != nil {
		mm.toServer.mirrorTo(ctx, mc, mirror.ToServer)
		mm.toClient.mirrorTo(ctx, mc, mirror.ToClient)
	}
}

// Re-mirroring: a connection of a mirrored virtual that is not mirrored
// now (its standby was absent when it began, the channel broke, or it was
// taken over in a failover) is mirrored from where it is as soon as a
// peer streams (ConnMirror.OnUp); an attempt that fails (a socket that
// cannot be read, the channel lost meanwhile) is retried after
// remirrorRetry.
const remirrorRetry = 2 * time.Second

// remirror mirrors a connection whose relays are frozen (both goroutines
// returned) from where it is: the sockets are read live (TCP repair, with
// the bytes each peer has not acknowledged), stream offset 0 of each
// direction becomes the first byte its receiving peer may lack, and the
// standby gets those bytes and the ones read and not yet written before
// the relays go on through the write gate.
func (l *Listener) remirror(p *Plan, mm *mirrored) error {
	if mm.toServer.srcEOF.Load() || mm.toClient.srcEOF.Load() {
		return errors.New("half-closed")
	}
	cs, err := tcprepair.SnapshotSent(mm.c)
	if err != nil {
		return err
	}
	ss, err := tcprepair.SnapshotSent(mm.s)
	if err != nil {
		return err
	}
	toServer := append(append([]byte(nil), ss.SendQueue...), mm.toServer.unwritten()...)
	toClient := append(append([]byte(nil), cs.SendQueue...), mm.toClient.unwritten()...)
	client, server := socketOf(cs), socketOf(ss)
	client.RecvSeq -= uint32(len(toServer)) // offset 0 of what was read from the client
	server.RecvSeq -= uint32(len(toClient))
	gd := mm.guard.get()
	if gd == nil {
		if gd, err = p.guard(mm.c, mm.s); err != nil {
			return err
		}
	}
	setup := &mirror.ConnSetup{Virtual: p.Name, Pool: mm.ref.pool, Member: mm.ref.addr, Client: client, Server: server, At: time.Now()}
	mc, err := p.Mirror.Open(p.TrafficGroup, setup)
	if err == nil && (!mc.Data(mirror.ToServer, 0, toServer, 0) || !mc.Data(mirror.ToClient, 0, toClient, 0)) {
		mc.Close()
		err = mirror.ErrNotMirrored
	}
	if err != nil {
		if mm.guard.get() == nil {
			gd.release()
		}
		return err
	}
	if old := mm.mc.Swap(mc); old != nil {
		old.Close()
	}
	mm.guard.set(gd)
	p.Log.Debug("connection re-mirrored", "client", cs.Remote,
		"client_rcv", cs.RecvSeq, "client_snd", cs.SendSeq, "client_sendq", len(cs.SendQueue),
		"server_rcv", ss.RecvSeq, "server_snd", ss.SendSeq, "server_sendq", len(ss.SendQueue),
		"unwritten_to_server", len(toServer)-len(ss.SendQueue), "unwritten_to_client", len(toClient)-len(cs.SendQueue))
	mm.toServer.readOff, mm.toClient.readOff = int64(len(toServer)), int64(len(toClient))
	mm.toServer.wrote.Store(int64(len(ss.SendQueue)))
	mm.toClient.wrote.Store(int64(len(cs.SendQueue)))
	p.Stats.Mirror.Remirrored.Add(1)
	return nil
}

func (l *Listener) untrackMirrored(mm *mirrored) {
	l.mirMu.Lock()
	delete(l.mirrored, mm)
	l.mirMu.Unlock()
	mm.cancel()
}

// HandOver freezes every mirrored connection of the listener and hands it
// to the standby (a planned failover): the caller holds the traffic
// group's packets (flowhold) so that nothing changes meanwhile. It returns
// how many moved and how many could not (they are left to the listener's
// drain and will be reset by the peer that takes over).
func (l *Listener) HandOver(ctx context.Context) (moved, failed int, firstErr error) {
	l.leaveUDP() // the standby has the flows already: they need no final state
	var t handOverTally
	if l.parker != nil {
		defer func() { moved, failed, firstErr = l.handOverHTTP(ctx, &t) }()
	}
	l.mirMu.Lock()
	list := make([]*mirrored, 0, len(l.mirrored))
	for mm := range l.mirrored {
		list = append(list, mm)
	}
	l.mirMu.Unlock()
	results := make([]chan error, len(list))
	for i, mm := range list {
		results[i] = make(chan error, 1)
		if mm.mc.Load() == nil {
			results[i] <- mirror.ErrNotMirrored // the standby does not have it
			continue
		}
		select {
		case mm.freeze <- freezeReq{done: results[i]}:
		case <-ctx.Done():
			results[i] <- ctx.Err()
		case <-time.After(100 * time.Millisecond):
			results[i] <- errors.New("the connection was ending") // half-closed or closing: not movable
		}
	}
	for _, r := range results {
		var err error
		select {
		case err = <-r:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.add(err)
	}
	return t.moved, t.failed, t.first
}

// handOverTally counts a handover's connections: moved, or not (and the
// first reason).
type handOverTally struct {
	moved, failed int
	first         error
}

func (t *handOverTally) add(err error) {
	if err == nil {
		t.moved++
		return
	}
	t.failed++
	if t.first == nil {
		t.first = err
	}
}

// Abandon closes every mirrored connection of the listener silently (no
// FIN, no RST): its traffic group was released with no one to hand them
// to, and the device that takes it over may continue them from the
// mirror; a FIN or reset from here, later, would end them there.
func (l *Listener) Abandon() int {
	l.leaveUDP()
	n := 0
	if l.parker != nil {
		n = l.abandonHTTP()
	}
	l.mirMu.Lock()
	list := make([]*mirrored, 0, len(l.mirrored))
	for mm := range l.mirrored {
		list = append(list, mm)
	}
	l.mirMu.Unlock()
	for _, mm := range list {
		if mm.mc.Load() == nil {
			continue // the standby does not have it: it ends when its client next sends
		}
		res := make(chan error, 1)
		select {
		case mm.freeze <- freezeReq{abandon: true, done: res}:
			<-res
			n++
		case <-time.After(100 * time.Millisecond): // ending on its own
		}
	}
	return n
}

// handOver finishes a frozen connection's handover (its own goroutine):
// both sockets go into repair mode and are read whole (the peers' packets
// are held, so nothing changes any more); what they received and the
// relays never read is mirrored as the streams' next bytes, the
// acknowledged counts and timestamps go to the standby as the final
// state, and once it has them both sockets close silently (no FIN, no
// RST).
func (l *Listener) handOver(p *Plan, mm *mirrored) error {
	if mm.c == nil || mm.s == nil {
		return errors.New("not a TCP connection")
	}
	for _, r := range []*relay{mm.toServer, mm.toClient} {
		if r.srcEOF.Load() {
			return errors.New("half-closed")
		}
	}
	cs, err := tcprepair.Dump(mm.c)
	if err != nil {
		tcprepair.Resume(mm.c)
		return err
	}
	ss, err := tcprepair.Dump(mm.s)
	if err != nil {
		tcprepair.Resume(mm.c)
		tcprepair.Resume(mm.s)
		return err
	}
	resume := func(err error) error {
		tcprepair.Resume(mm.c)
		tcprepair.Resume(mm.s)
		return err
	}
	var acked, sent [2]int64
	for dir, x := range []struct {
		r    *relay
		in   *tcprepair.State // the socket it reads
		out  *tcprepair.State // the socket it writes
		name string
	}{{mm.toServer, cs, ss, "client"}, {mm.toClient, ss, cs, "server"}} {
		if len(x.in.RecvQueue) > 0 && !mm.mc.Load().Data(dir, x.r.readOff, x.in.RecvQueue, 0) {
			return resume(mirror.ErrNotMirrored)
		}
		x.r.readOff += int64(len(x.in.RecvQueue))
		acked[dir] = x.r.wrote.Load() - int64(len(x.out.SendQueue))
		sent[dir] = acked[dir] + int64(len(x.out.SendQueue)-x.out.Unsent)
	}
	ctx, cancel := context.WithTimeout(l.ctx, handOverWait)
	defer cancel()
	if err := mm.mc.Load().Final(ctx, acked, sent, [2]uint32{cs.Timestamp, ss.Timestamp}); err != nil {
		return resume(err)
	}
	tcprepair.CloseSilently(mm.c)
	tcprepair.CloseSilently(mm.s)
	p.Stats.Mirror.HandedOver.Add(1)
	return nil
}

// handOverWait bounds the wait for the standby's acknowledgement of one
// connection's final state.
const handOverWait = 2 * time.Second
