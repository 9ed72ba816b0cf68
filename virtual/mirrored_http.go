package virtual

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/internal/tcprepair"
	"github.com/fulcrum-adc/fulcrum/mirror"
)

// Mirroring of http virtuals happens at message boundaries. A client
// connection is mirrored while it waits for its next request with
// everything before it answered and acknowledged: the standby then holds
// its client socket (mirror.KindHTTP) and, after a failover, rebuilds it
// and waits for that request itself (a new server connection serves it).
// The moment a request starts to arrive the standby is told to forget the
// connection: it cannot continue an exchange half-way, so a crash then
// leaves the client to the device that takes over, which resets it.
// A WebSocket (Upgrade) tunnel becomes a mirrored TCP connection once the
// 101 response and the request before it are acknowledged (tunnel).
//
// The kernel acknowledges a request's bytes as they arrive, before
// Fulcrum reads them, and the standby learns that the connection is busy
// a moment later (one message on the mirroring channel). A crash inside
// that moment leaves the standby with a connection it thinks idle whose
// client has sent a request: after the failover that client waits for a
// response that never comes (until its own timeout), or, if it sends on,
// is reset by the gap check. docs/ha.md says so.

// httpMirror is the mirroring state of one client connection of a
// mirrored http virtual. Its lock orders before the parker's.
type httpMirror struct {
	mu     sync.Mutex
	gen    uint64 // bumped whenever the connection stops waiting for a request
	idle   bool   // waiting for a request (parked or about to be)
	ended  bool
	mc     *mirror.Conn // the standby holds the connection (idle)
	queued int          // response bytes not yet acknowledged when mc was opened
	gd     *guarded
	timer  *time.Timer
	tries  int
	// stopWaiting forgets the wait for a mirror peer (ConnMirror.OnUp)
	// of a connection waiting unmirrored because none streams.
	stopWaiting func()
	// countedOK, countedNot: counted in the virtual's mirrored and
	// unmirrored stats (each once)
	countedOK, countedNot bool
}

// idleCheckAfter are the delays of the checks of a connection waiting for
// a request, from the moment it starts waiting, until it is parked (then
// it is mirrored); a mirrored connection is re-checked every idleRecheck:
// its mirror may have been lost, or may hold response bytes the client has
// acknowledged since (it is then mirrored afresh, without them).
var idleCheckAfter = [...]time.Duration{time.Millisecond, 5 * time.Millisecond, 25 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, time.Second}

const idleRecheck = 2 * time.Second

// httpQuiesce bounds how long a planned handover waits for busy http
// connections to finish their exchange and become movable.
const httpQuiesce = 500 * time.Millisecond

var errBusy = errors.New("the connection is in the middle of an exchange")

// mirrorIdle notes that h waits for its next request (the previous
// response written): it is mirrored once the client acknowledged it all.
func (h *httpConn) mirrorIdle() {
	m := h.mir
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return
	}
	m.gen++
	m.idle, m.tries = true, 0
	h.scheduleLocked(idleCheckAfter[0])
}

func (h *httpConn) scheduleLocked(d time.Duration) {
	m := h.mir
	gen := m.gen
	if m.timer != nil {
		m.timer.Stop()
	}
	m.timer = time.AfterFunc(d, func() { h.idleCheck(gen) })
}

// mirrorBusy notes that h stopped waiting (a request arrived, or the
// connection ends): the standby forgets it, and its FINs and resets may
// leave again.
func (h *httpConn) mirrorBusy(end bool) {
	m := h.mir
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.idle = false
	m.ended = m.ended || end
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.stopWaiting != nil {
		m.stopWaiting()
		m.stopWaiting = nil
	}
	h.unmirrorLocked()
}

func (h *httpConn) unmirrorLocked() {
	m := h.mir
	if m.mc == nil {
		return
	}
	if m.mc.Broken() {
		h.p.Stats.Mirror.Lost.Add(1)
	}
	m.gd.release()
	m.mc.Close()
	m.mc, m.gd = nil, nil
}

// idleCheck mirrors a waiting connection once it is parked, or re-checks
// a mirrored one.
func (h *httpConn) idleCheck(gen uint64) {
	m := h.mir
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen != gen || !m.idle || m.ended {
		return
	}
	p := h.p
	if m.mc != nil && !m.mc.Lost() && (m.queued == 0 || unsentBytes(h.pre.TCPConn) > 0) {
		h.scheduleLocked(idleRecheck)
		return
	}
	next := idleRecheck
	if m.tries+1 < len(idleCheckAfter) {
		next = idleCheckAfter[m.tries+1] - idleCheckAfter[m.tries]
	}
	m.tries++
	if !p.Mirror.Up(p.TrafficGroup) {
		// A mirror lost with its channel is kept (and the crash guard
		// with it): the standby may still hold the connection and take it
		// over, so this device must let it go silently (abandonHTTP).
		if m.mc == nil {
			h.countMirror(false, errors.New("no mirror peer streaming"))
		}
		if m.stopWaiting == nil {
			// Checked again as soon as a peer streams.
			m.stopWaiting = p.Mirror.OnUp(p.TrafficGroup, func() {
				m.mu.Lock()
				if m.gen == gen {
					m.stopWaiting = nil
				}
				m.mu.Unlock()
				h.idleCheck(gen)
			})
		}
		h.scheduleLocked(idleRecheck)
		return
	}
	st, err := h.idleSnapshot()
	switch {
	case errors.Is(err, errBusy):
		// Not parked yet (a request arriving ends the checks: mirrorBusy).
		h.scheduleLocked(next)
		return
	case err != nil:
		if m.mc == nil {
			h.countMirror(false, err)
		}
		h.scheduleLocked(idleRecheck)
		return
	}
	old, oldGuard := m.mc, m.gd
	gd := oldGuard
	if gd == nil {
		if gd, err = p.guard(h.pre.TCPConn); err != nil {
			h.countMirror(false, err)
			return
		}
	}
	// The new state goes before the old one is forgotten: the standby is
	// never without the connection.
	setup := &mirror.ConnSetup{Kind: mirror.KindHTTP, Virtual: p.Name, Client: socketOf(st), At: time.Now()}
	mc, err := p.Mirror.Open(p.TrafficGroup, setup)
	if err == nil && !mc.Data(mirror.ToClient, 0, st.SendQueue, 0) {
		mc.Close()
		err = mirror.ErrNotMirrored
	}
	if old != nil {
		if old.Broken() {
			p.Stats.Mirror.Lost.Add(1)
		}
		old.Close()
	}
	if err != nil {
		gd.release()
		m.mc, m.gd = nil, nil
		h.countMirror(false, err)
		h.scheduleLocked(idleRecheck)
		return
	}
	m.mc, m.gd, m.queued = mc, gd, len(st.SendQueue)
	h.countMirror(true, nil)
	h.scheduleLocked(idleRecheck)
}

// countMirror counts the connection in the virtual's stats: once as
// mirrored when it first is, once as unmirrored when it first waits
// unmirrored (a connection can be both: served unmirrored until the peer
// came up, say).
func (h *httpConn) countMirror(ok bool, err error) {
	m, s := h.mir, &h.p.Stats.Mirror
	switch {
	case ok && !m.countedOK:
		m.countedOK = true
		s.Mirrored.Add(1)
	case !ok && !m.countedNot:
		m.countedNot = true
		if n := s.Unmirrored.Add(1); n&(n-1) == 0 {
			h.p.Log.Warn("http connection waiting unmirrored: it will not survive a failover", "reason", err.Error(), "unmirrored", n)
		}
	}
}

// idleSnapshot reads the client socket's parameters and the response bytes
// it holds unacknowledged (TCP repair, live) while the connection is
// parked: no goroutine reads or writes it meanwhile, since the parker hands
// it out only under its lock, held here.
func (h *httpConn) idleSnapshot() (*tcprepair.State, error) {
	pk := h.l.parker
	if pk == nil || h.pre == nil {
		return nil, errors.New("no parker: idle connections are not mirrored")
	}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pc := h.parked.Load()
	if pc == nil || pk.parked[pc.fd] != pc || h.pre.hasData() {
		return nil, errBusy
	}
	tc := h.pre.TCPConn
	if n, err := queuedBytes(tc); err != nil || n > 0 {
		return nil, errBusy // the next request is arriving
	}
	return tcprepair.SnapshotSent(tc)
}

// queuedBytes is SIOCINQ: bytes received and not read.
func queuedBytes(tc *net.TCPConn) (int, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

// trackHTTP registers a client connection of a mirrored http virtual for
// planned handovers.
func (l *Listener) trackHTTP(h *httpConn) {
	l.mirMu.Lock()
	if l.httpMirrored == nil {
		l.httpMirrored = map[*httpConn]struct{}{}
	}
	l.httpMirrored[h] = struct{}{}
	l.mirMu.Unlock()
}

func (l *Listener) untrackHTTP(h *httpConn) {
	l.mirMu.Lock()
	delete(l.httpMirrored, h)
	l.mirMu.Unlock()
}

func (l *Listener) httpList() []*httpConn {
	l.mirMu.Lock()
	defer l.mirMu.Unlock()
	list := make([]*httpConn, 0, len(l.httpMirrored))
	for h := range l.httpMirrored {
		list = append(list, h)
	}
	return list
}

// takeParked takes h from the parker if it is parked (waiting for a
// request): the caller then owns it alone.
func (h *httpConn) takeParked() bool {
	pc := h.parked.Load()
	return pc != nil && h.l.parker != nil && h.l.parker.take(pc)
}

// Quiesce prepares a planned handover (before the traffic group's packets
// are held): the http connections of the listener's mirrored virtual stop
// taking new requests (a request that arrives stays in its socket and
// moves with it), and the exchanges under way get up to httpQuiesce to
// finish, while their member's responses can still arrive. It returns how
// many are still busy. HandOver ends the quiescence (so does Resume).
func (l *Listener) Quiesce(ctx context.Context) (busy int) {
	pk := l.parker
	if pk == nil {
		return 0
	}
	pk.mu.Lock()
	pk.holding = true
	pk.mu.Unlock()
	deadline := time.Now().Add(httpQuiesce)
	for {
		busy = 0
		for _, h := range l.httpList() {
			if h.parked.Load() == nil {
				busy++
			}
		}
		if busy == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	// A response just written is not acknowledged yet, and its client's
	// acknowledgement would meet the hold: the restored socket would then
	// resend it only on its first retransmission timeout (1 s: it has no
	// round-trip sample). Give the clients a moment (their delayed ACK) to
	// acknowledge, so the handover moves connections with nothing in flight.
	deadline = time.Now().Add(httpAckWait)
	for l.responsesInFlight() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	return busy
}

// httpAckWait bounds how long a quiescence waits for the clients of parked
// connections to acknowledge their last response (Linux delays an ACK by
// up to 40 ms).
const httpAckWait = 50 * time.Millisecond

// responsesInFlight reports whether a parked connection has response bytes
// its client has not acknowledged.
func (l *Listener) responsesInFlight() bool {
	for _, h := range l.httpList() {
		if h.parked.Load() != nil && h.pre != nil && unsentBytes(h.pre.TCPConn) > 0 {
			return true
		}
	}
	return false
}

// Resume ends a quiescence: parked connections whose client sent a request
// meanwhile are served.
func (l *Listener) Resume() {
	pk := l.parker
	if pk == nil {
		return
	}
	pk.mu.Lock()
	held := pk.holding
	pk.holding = false
	var ready []*parkedConn
	if held {
		for _, pc := range pk.parked {
			if pc.h.pre != nil && pc.h.l == l {
				if n, err := queuedBytes(pc.h.pre.TCPConn); err != nil || n > 0 {
					ready = append(ready, pc)
				}
			}
		}
	}
	for _, pc := range ready {
		if pk.takeLocked(pc) {
			pk.dispatch(pc.h, pc.first)
		}
	}
	pk.mu.Unlock()
}

// handOverHTTP moves the listener's http client connections that wait for
// a request to the standby (a planned failover; the traffic group's
// packets are held, after Quiesce). Those still in an exchange cannot
// move: the device that takes over resets them when their client next
// sends. Counted in t (with the tcp connections); returns the totals.
func (l *Listener) handOverHTTP(ctx context.Context, t *handOverTally) (moved, failed int, firstErr error) {
	defer l.Resume()
	for _, h := range l.httpList() {
		if !h.takeParked() {
			t.add(errBusy)
			continue
		}
		t.add(h.handOver(ctx))
	}
	return t.moved, t.failed, t.first
}

// reset ends h with a reset to its client.
func (h *httpConn) reset() {
	h.mirrorBusy(true)
	if tc := tcpConnOf(h.raw); tc != nil {
		tc.SetLinger(0)
	}
	h.kill()
}

// handOver moves h, taken from the parker, to the standby: its client
// socket is read whole in repair mode (queues included: a response not yet
// acknowledged, a request that arrived meanwhile), sent as a final state,
// and closed silently once the standby has it.
func (h *httpConn) handOver(ctx context.Context) error {
	p := h.p
	h.mirrorBusy(false) // the old idle state is replaced by this one
	defer h.end()
	tc := h.pre.TCPConn
	if h.pre.hasData() {
		return errBusy
	}
	st, err := tcprepair.Dump(tc)
	if err != nil {
		h.forget()
		tcprepair.CloseSilently(tc)
		return err
	}
	setup := &mirror.ConnSetup{Kind: mirror.KindHTTP, Virtual: p.Name, Client: socketOf(st), At: time.Now()}
	mc, err := p.Mirror.Open(p.TrafficGroup, setup)
	if err == nil && (!mc.Data(mirror.ToClient, 0, st.SendQueue, 0) || !mc.Data(mirror.ToServer, 0, st.RecvQueue, 0)) {
		err = mirror.ErrNotMirrored
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, handOverWait)
		err = mc.Final(ctx, [2]int64{}, [2]int64{0, int64(len(st.SendQueue) - st.Unsent)}, [2]uint32{st.Timestamp, 0})
		cancel()
	}
	h.forget() // before the descriptor closes
	if err != nil {
		if mc != nil {
			mc.Close()
		}
		// The group leaves this device either way: a FIN from here could
		// not be answered; the device that takes over resets the client
		// when it next sends.
		tcprepair.CloseSilently(tc)
		return err
	}
	tcprepair.CloseSilently(tc)
	p.Stats.Mirror.HandedOver.Add(1)
	return nil
}

// abandonHTTP lets go of the mirrored waiting connections silently (no
// FIN, no RST), leaving them to the standby, which keeps them (also those
// whose mirror was lost with its channel: the standby may have taken them
// over from what it held).
func (l *Listener) abandonHTTP() int {
	n := 0
	for _, h := range l.httpList() {
		m := h.mir
		m.mu.Lock()
		mirrored := m.mc != nil
		m.mu.Unlock()
		if !mirrored || !h.takeParked() {
			continue
		}
		m.mu.Lock()
		if m.mc != nil {
			m.mc.Leave()
		}
		m.mu.Unlock()
		h.mirrorBusy(true)
		h.forget()
		tcprepair.CloseSilently(h.pre.TCPConn)
		h.end()
		n++
	}
	return n
}

// adoptHTTP takes over an http client connection mirrored while it waited
// for a request: the socket is rebuilt and waits here for that request
// (bytes a planned handover found queued are written, or read, first).
func (l *Listener) adoptHTTP(sh *mirror.Shadow) error {
	p := l.Plan()
	if p.Type != "http" || p.ClientTLS != nil {
		return errors.New("an http connection for a virtual that is not plain http")
	}
	cs, _, pending := restoredStates(sh, time.Now())
	c, err := tcprepair.Restore(cs, tcprepair.RestoreOptions{RecvBuffer: restoreRecvBuffer})
	if err != nil {
		return err
	}
	p.Stats.Active.Add(1)
	p.Stats.Total.Add(1)
	p.Stats.Mirror.Restored.Add(1)
	l.conns.Add(1)
	h := l.newHTTPConn(p, c)
	if b := pending[mirror.ToServer]; len(b) > 0 && h.pre != nil {
		h.pre.pending = append([]byte(nil), b...) // a request that had arrived
	}
	l.startAfterHold(func() { l.startAdoptedHTTP(h, c, pending[mirror.ToClient]) })
	return nil
}

// startAdoptedHTTP starts an http connection taken over, once its packets
// flow: response bytes the old socket had not sent go out first.
func (l *Listener) startAdoptedHTTP(h *httpConn, c *net.TCPConn, unsent []byte) {
	p := h.p
	probeInFlight(c)
	if len(unsent) > 0 {
		c.SetWriteDeadline(time.Now().Add(handOverWait))
		_, err := c.Write(unsent)
		c.SetWriteDeadline(time.Time{})
		if err != nil {
			h.end()
			return
		}
	}
	go watchGap(l.ctx, p, []*net.TCPConn{c}, h.reset)
	h.waitUntil = time.Now().Add(p.HTTP.KeepAliveTimeout)
	if l.parker != nil {
		l.parker.dispatch(h, false)
	} else {
		go h.run(false)
	}
}
