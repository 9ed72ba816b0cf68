package mirror

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Socket is one side of a mirrored connection as the standby needs it to
// rebuild the socket with TCP repair: the addresses, the sequence numbers
// of stream offset 0 in each direction, and the options negotiated in the
// handshake. It is the wire's own type (tcprepair.State is the kernel's).
type Socket struct {
	Local, Remote netip.AddrPort
	// SendSeq is the sequence number of the first byte relayed out of
	// this socket (offset 0 of the stream it sends); RecvSeq that of the
	// first byte relayed in from it.
	SendSeq, RecvSeq uint32
	MSS              uint16
	SndWscale        uint8
	RcvWscale        uint8
	WindowScaling    bool
	SACK             bool
	Timestamps       bool
	Timestamp        uint32 // the socket's TSval when it was read (At)
	// Window is TCP_REPAIR_WINDOW as read then: snd_wl1, snd_wnd,
	// max_window, rcv_wnd, rcv_wup.
	Window    [5]uint32
	HasWindow bool
}

func (s *Socket) valid() bool {
	return s.Local.IsValid() && s.Remote.IsValid() && s.Local.Port() != 0 && s.Remote.Port() != 0 &&
		s.Local.Addr().Is4() == s.Remote.Addr().Is4() && s.SndWscale <= 14 && s.RcvWscale <= 14
}

// ConnSetup is a connection at the moment mirroring starts: both sockets
// at stream offset 0 and the member it goes to.
type ConnSetup struct {
	Kind    byte // KindTCP, KindUDP or KindHTTP
	Virtual string
	Pool    string
	Member  netip.AddrPort
	Client  Socket // Local is the virtual's address, Remote the client
	Server  Socket // Local is the SNAT address, Remote the member
	At      time.Time
}

// Kinds of mirrored connections.
const (
	KindTCP = 0 // a proxied TCP connection: sockets and streams
	KindUDP = 1 // a UDP flow: the client, the member and the translated source (addresses only)
	// KindHTTP is an http virtual's client connection waiting for its
	// next request, everything before it answered and acknowledged: the
	// client socket only (no member, no server socket; the next request
	// is balanced afresh). Streams carry only what a planned handover
	// found queued in the socket.
	KindHTTP = 2
)

// Directions of a mirrored connection's streams.
const (
	ToServer = 0 // client → server
	ToClient = 1 // server → client
)

// Connection-mirroring bounds.
const (
	connQueue = 4096 // messages waiting for the sender, per group
	// MaxShadowConns bounds the connections a standby holds per traffic
	// group; MaxShadowBytes the relayed bytes it keeps for them (bytes
	// the receiving peer may not have yet). Past either, the connection
	// that would grow them is dropped from the mirror (it will not survive
	// a failover) and counted.
	MaxShadowConns = 100000
	MaxShadowBytes = 512 << 20
)

// ErrNotMirrored is returned when a connection is not (or no longer)
// mirrored: the standby cannot continue it after a failover.
var ErrNotMirrored = errors.New("mirror: connection not mirrored")

// Conn is an established connection being mirrored (the active side).
// Its relay calls Data with each chunk it reads, and Wait before it
// writes a chunk to the other side: the write gate. A Conn whose mirror
// is lost (the channel broke, the peer fell behind) stays lost: Wait
// returns false at once and the connection goes on unmirrored.
type Conn struct {
	cs     *connSender
	id     uint64
	stored [2]atomic.Int64 // bytes the standby holds, per direction
	wake   [2]chan struct{}
	lost   chan struct{} // closed when mirroring of this connection ended
	once   sync.Once
	final  chan struct{} // closed when the standby has the final state
	broken atomic.Bool   // lost because the channel went down
	// handedOver: the standby acknowledged the final state; it owns the
	// connection now and Close must not make it forget it.
	handedOver atomic.Bool
	// halfClosed: HalfClose ended the mirroring; Close still tells the
	// standby when the connection ends.
	halfClosed atomic.Bool
}

// Broken reports whether the connection's mirroring was lost because the
// channel to the standby went down (not because the connection ended).
func (c *Conn) Broken() bool { return c.broken.Load() }

type connMsg struct {
	typ   byte
	c     *Conn
	dir   byte
	off   int64
	acked [2]int64
	sent  [2]int64
	ts    [2]uint32
	b     []byte
	setup *ConnSetup
}

// inflight is a data or final message sent and not yet acknowledged.
type inflight struct {
	seq uint64
	c   *Conn
	typ byte
	dir byte
	end int64
}

// connSender is one traffic group's connection mirroring, active side:
// the open connections, the queue the group's sender drains, and what is
// sent and not yet acknowledged.
type connSender struct {
	q chan *connMsg

	mu       sync.Mutex
	up       bool
	open     map[uint64]*Conn
	inflight []inflight
	nextID   uint64
	waiters  map[uint64]func() // OnUp callbacks, called when up next
	nextWait uint64

	opened, lostN, bytes atomic.Uint64
}

func newConnSender() *connSender {
	return &connSender{q: make(chan *connMsg, connQueue), open: map[uint64]*Conn{}}
}

// Open starts mirroring a connection of a virtual in traffic group group;
// ErrNotMirrored when the group has no mirror peer streaming now.
func (m *Mirror) Open(group string, s *ConnSetup) (*Conn, error) {
	g := m.groups[group]
	if g == nil {
		return nil, ErrNotMirrored
	}
	cs := g.conns
	cs.mu.Lock()
	if !cs.up {
		cs.mu.Unlock()
		return nil, ErrNotMirrored
	}
	cs.nextID++
	c := &Conn{cs: cs, id: cs.nextID, lost: make(chan struct{}), final: make(chan struct{})}
	c.wake[0], c.wake[1] = make(chan struct{}, 1), make(chan struct{}, 1)
	cs.open[c.id] = c
	cs.mu.Unlock()
	cs.opened.Add(1)
	if !c.send(&connMsg{typ: frameConnOpen, c: c, setup: s}) {
		return nil, ErrNotMirrored
	}
	return c, nil
}

// Up reports whether group's connections are mirrored now: a peer is
// streaming (Open would succeed). A cheap check before the work of
// reading a socket for Open.
func (m *Mirror) Up(group string) bool {
	g := m.groups[group]
	if g == nil {
		return false
	}
	g.conns.mu.Lock()
	defer g.conns.mu.Unlock()
	return g.conns.up
}

// OnUp calls f, in a goroutine of its own, once group's connections can be
// mirrored: at once if a peer streams now, otherwise when one next does
// (a connection waiting unmirrored is mirrored from there). cancel
// forgets f (the connection ended or stopped waiting); f may still run
// if it was about to.
func (m *Mirror) OnUp(group string, f func()) (cancel func()) {
	g := m.groups[group]
	if g == nil {
		return func() {}
	}
	cs := g.conns
	cs.mu.Lock()
	if cs.up {
		cs.mu.Unlock()
		go f()
		return func() {}
	}
	if cs.waiters == nil {
		cs.waiters = map[uint64]func(){}
	}
	cs.nextWait++
	id := cs.nextWait
	cs.waiters[id] = f
	cs.mu.Unlock()
	return func() {
		cs.mu.Lock()
		delete(cs.waiters, id)
		cs.mu.Unlock()
	}
}

// Done is closed when c is no longer mirrored (Lost).
func (c *Conn) Done() <-chan struct{} { return c.lost }

// send queues msg for the sender; false when the connection is lost.
func (c *Conn) send(msg *connMsg) bool {
	select {
	case <-c.lost:
		return false
	default:
	}
	select {
	case c.cs.q <- msg:
		return true
	case <-c.lost:
		return false
	}
}

// Data mirrors b, the bytes at stream offset off of direction dir, read
// from one side and not yet written to the other; acked is how many bytes
// of dir the receiving side has acknowledged. b is copied.
func (c *Conn) Data(dir int, off int64, b []byte, acked int64) bool {
	// A count read while a write was under way may run ahead of what the
	// relay has counted as written: never below 0, never past what came
	// before these bytes.
	acked = min(max(acked, 0), off)
	for len(b) > 0 {
		n := min(len(b), maxConnData)
		msg := &connMsg{typ: frameConnData, c: c, dir: byte(dir), off: off, b: append([]byte(nil), b[:n]...)}
		msg.acked[0] = acked
		if !c.send(msg) {
			return false
		}
		c.cs.bytes.Add(uint64(n))
		b, off = b[n:], off+int64(n)
	}
	return true
}

// Wait blocks until the standby holds direction dir up to end (true), or
// the connection's mirroring is lost or ctx ends (false).
func (c *Conn) Wait(ctx context.Context, dir int, end int64) bool {
	for c.stored[dir].Load() < end {
		select {
		case <-c.wake[dir]:
		case <-c.lost:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Lost reports whether the connection is no longer mirrored.
func (c *Conn) Lost() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// Close ends the connection's mirroring: it ended, or can no longer be
// resumed (half-closed); the standby forgets it.
func (c *Conn) Close() {
	if (!c.Lost() || c.halfClosed.Load() && !c.broken.Load()) && !c.handedOver.Load() {
		select {
		case c.cs.q <- &connMsg{typ: frameConnClose, c: c}:
		default: // the queue is full: the standby drops it when the stream resets
		}
	}
	c.cs.forget(c)
}

// Final sends a frozen connection's final state for a planned handover and
// waits until the standby has it: acked is, per direction, how many bytes
// the receiving side acknowledged, sent how many went out to it; ts the
// sockets' TSvals (client, server).
func (c *Conn) Final(ctx context.Context, acked, sent [2]int64, ts [2]uint32) error {
	if !c.send(&connMsg{typ: frameConnFinal, c: c, acked: acked, sent: sent, ts: ts}) {
		return ErrNotMirrored
	}
	select {
	case <-c.final:
		c.handedOver.Store(true)
		return nil
	case <-c.lost:
		return ErrNotMirrored
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HalfClose tells the standby that the sender of direction dir sent its
// FIN (and it was relayed on): the connection
// can no longer move, and the device that takes over resets both sides.
// Mirroring of the connection ends here (the rest of it goes unmirrored).
func (c *Conn) HalfClose(dir int) {
	if !c.Lost() {
		select {
		case c.cs.q <- &connMsg{typ: frameConnHalf, c: c, dir: byte(dir)}:
		default:
		}
	}
	c.halfClosed.Store(true)
	c.cs.forget(c) // the gate stops waiting: the rest goes unmirrored
}

// Leave lets go of the connection here without telling the standby, which
// keeps it: it may continue it after a failover.
func (c *Conn) Leave() { c.handedOver.Store(true) }

// ID is the connection's mirroring identifier (unique per traffic group
// and sender).
func (c *Conn) ID() uint64 { return c.id }

func (cs *connSender) forget(c *Conn) {
	c.once.Do(func() { close(c.lost) })
	cs.mu.Lock()
	delete(cs.open, c.id)
	cs.mu.Unlock()
}

// setUp marks the group's connection channel streaming (up) or not; going
// down loses every open connection: what they relay next is unmirrored.
func (cs *connSender) setUp(up bool) {
	cs.mu.Lock()
	cs.up = up
	var lost []*Conn
	waiters := cs.waiters
	if up {
		cs.waiters = nil
	} else {
		waiters = nil
		for _, c := range cs.open {
			lost = append(lost, c)
		}
		cs.open = map[uint64]*Conn{}
		cs.inflight = nil
	}
	cs.mu.Unlock()
	for _, f := range waiters {
		go f()
	}
	for _, c := range lost {
		c.broken.Store(true)
		c.once.Do(func() { close(c.lost) })
		cs.lostN.Add(1)
	}
	if !up {
		// Messages of lost connections must not reach a later stream.
		for {
			select {
			case <-cs.q:
				continue
			default:
			}
			break
		}
	}
}

// frameOf turns a queued message into its frame (the sender's goroutine).
func (msg *connMsg) frame(seq uint64) *frame {
	f := &frame{typ: msg.typ, seq: seq, id: msg.c.id, dir: msg.dir, setup: msg.setup, data: msg.b, ts: msg.ts}
	f.offset = uint64(msg.off)
	f.acked[0], f.acked[1] = uint64(msg.acked[0]), uint64(msg.acked[1])
	f.sent[0], f.sent[1] = uint64(msg.sent[0]), uint64(msg.sent[1])
	return f
}

// sent records a data or final message awaiting its acknowledgement.
func (cs *connSender) sent(seq uint64, msg *connMsg) {
	if msg.typ != frameConnData && msg.typ != frameConnFinal {
		return
	}
	cs.mu.Lock()
	cs.inflight = append(cs.inflight, inflight{seq: seq, c: msg.c, typ: msg.typ, dir: msg.dir, end: msg.off + int64(len(msg.b))})
	cs.mu.Unlock()
}

// acked releases the write gates of everything up to seq.
func (cs *connSender) acked(seq uint64) {
	cs.mu.Lock()
	n := 0
	for n < len(cs.inflight) && cs.inflight[n].seq <= seq {
		n++
	}
	done := cs.inflight[:n]
	cs.inflight = cs.inflight[n:]
	cs.mu.Unlock()
	for _, x := range done {
		if x.typ == frameConnFinal {
			select {
			case <-x.c.final:
			default:
				close(x.c.final)
			}
			continue
		}
		if x.c.stored[x.dir].Load() < x.end {
			x.c.stored[x.dir].Store(x.end)
		}
		select {
		case x.c.wake[x.dir] <- struct{}{}:
		default:
		}
	}
}

// ConnStats is connection mirroring as `fulcrum show mirroring` prints it.
type ConnStats struct {
	Up       bool   `json:"channel_up"`             // active side: new connections are mirrored now (the channel streams)
	Mirrored uint64 `json:"connections_mirrored"`   // connections whose mirroring started (active side)
	Open     int    `json:"connections_open"`       // mirrored now (active side)
	Lost     uint64 `json:"connections_lost"`       // mirroring ended before the connection did (channel broke)
	Bytes    uint64 `json:"bytes_mirrored"`         // relayed bytes sent to the standby
	Shadows  int    `json:"resumable_now"`          // standby: connections it could resume now
	Received uint64 `json:"connections_received"`   // standby: connections announced by the peer
	Dropped  uint64 `json:"connections_dropped"`    // standby: dropped for its limits or a broken stream
	Restored uint64 `json:"connections_taken_over"` // standby: shadows handed to the engine when the group went active here
}

func (g *group) connStats() ConnStats {
	cs := g.conns
	cs.mu.Lock()
	open, up := len(cs.open), cs.up
	cs.mu.Unlock()
	st := ConnStats{Up: up, Mirrored: cs.opened.Load(), Open: open, Lost: cs.lostN.Load(), Bytes: cs.bytes.Load()}
	st.Shadows, st.Received, st.Dropped, st.Restored = g.shadows.stats()
	return st
}
