package mirror

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"github.com/fulcrum-adc/fulcrum/internal/events"
	"github.com/fulcrum-adc/fulcrum/persist"
)

// Tuning.
const (
	dialTimeout    = time.Second
	writeTimeout   = 5 * time.Second
	ackTimeout     = 5 * time.Second // unacknowledged data this old: reconnect
	ackEvery       = 50 * time.Millisecond
	eventQueue     = 1 << 16 // events buffered per sender before it must resynchronise
	maxBackoff     = 2 * time.Second
	handshakeLimit = 5 * time.Second
	// maxPending bounds connections per listener that have not proven to
	// be the peer yet (each has handshakeLimit to do so); maxPeerConns
	// bounds the peer's authenticated connections per group. Kept apart so
	// that strangers holding handshakes open cannot lock the peer out.
	maxPending   = 64
	maxPeerConns = 4
)

// Configs gives the running configuration (the engine): which virtuals
// belong to which traffic group and which persistence profiles mirror can
// change on reload.
type Configs interface {
	Config() *config.Config
}

// Options configure a Mirror.
type Options struct {
	Config  *config.Config // the device group (local, devices, traffic groups, failover.mirror_port)
	Configs Configs
	Table   *persist.Table
	Trust   *trust.Store
	Log     *slog.Logger
}

// Mirror runs this device's persistence mirroring: a sender per traffic
// group active here, a listener per traffic group on each of this
// device's mirror addresses.
type Mirror struct {
	self    string
	configs Configs
	table   *persist.Table
	trust   *trust.Store
	log     *slog.Logger
	groups  map[string]*group
	allowed map[netip.Addr]bool // the peers' mirror addresses: the only sources accepted
	lns     []net.Listener
	ctx     context.Context
	bg      sync.WaitGroup
	mu      sync.Mutex // senders
	scope   atomic.Pointer[scope]
}

// group is one traffic group's mirroring state.
type group struct {
	name  string
	port  int
	links []*link      // one per other device of the group, in HA order
	local []netip.Addr // this device's mirror addresses: the i-th dials a peer's i-th

	mu       sync.Mutex // receiving side, below
	recvAt   time.Time
	recvFrom string

	received, refused, inbound atomic.Uint64
	active                     atomic.Bool

	conns   *connSender // connection mirroring, active side (to links[0])
	shadows *shadows    // connection mirroring, standby side
	streams atomic.Uint64
}

// link is the sender of one group to one peer: with two devices there is
// one; with more, the device where the group is active mirrors to every
// other, so whichever the majority picks next has the records.
type link struct {
	peer  string           // the device mirrored to
	addrs []netip.AddrPort // its mirror addresses (primary, secondary), at the group's port

	stop context.CancelFunc // running sender, nil when none
	done chan struct{}

	mu        sync.Mutex
	connected string // address the sender is connected to, "" when not
	lastErr   string
	resyncAt  time.Time
	ackAt     time.Time

	sent, acked, resyncs, snapshotN atomic.Uint64
}

// New opens the listeners. It fails when an address cannot be bound.
func New(opt Options) (*Mirror, error) {
	c := opt.Config
	me := c.Devices[c.Local.Device]
	if me == nil || len(me.MirrorAddresses) == 0 {
		return nil, errors.New("mirror: this device has no mirror_addresses")
	}
	m := &Mirror{self: c.Local.Device, configs: opt.Configs, table: opt.Table, trust: opt.Trust,
		log: opt.Log.With("subsystem", "mirror"), groups: map[string]*group{}, allowed: map[netip.Addr]bool{}}
	var local []netip.Addr
	for _, s := range me.MirrorAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("mirror: devices.%s.mirror_addresses: %w", m.self, err)
		}
		local = append(local, a.Unmap())
	}
	for name, d := range c.Devices {
		if name == m.self {
			continue
		}
		for _, s := range d.MirrorAddresses {
			if a, err := netip.ParseAddr(s); err == nil {
				m.allowed[a.Unmap()] = true
			}
		}
	}
	for name, tg := range c.TrafficGroups {
		g := &group{name: name, port: c.Failover.MirrorPort + tg.Index, local: local, conns: newConnSender(), shadows: newShadows()}
		for _, d := range tg.HAOrder {
			if d == m.self {
				continue
			}
			l := &link{peer: d}
			for _, s := range c.Devices[d].MirrorAddresses {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return nil, fmt.Errorf("mirror: devices.%s.mirror_addresses: %w", d, err)
				}
				l.addrs = append(l.addrs, netip.AddrPortFrom(a.Unmap(), uint16(g.port)))
			}
			if len(l.addrs) > 0 {
				g.links = append(g.links, l)
			}
		}
		m.groups[name] = g
		for _, s := range me.MirrorAddresses {
			addr := net.JoinHostPort(s, strconv.Itoa(g.port))
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				m.Close()
				return nil, fmt.Errorf("mirror: traffic group %s: listen on %s: %w", name, addr, err)
			}
			m.lns = append(m.lns, ln)
		}
	}
	return m, nil
}

// Close closes the listeners (Run's context ends the rest).
func (m *Mirror) Close() {
	for _, ln := range m.lns {
		ln.Close()
	}
}

// Run accepts mirroring connections until ctx ends, then stops every
// sender and waits for them.
func (m *Mirror) Run(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	for _, g := range m.groups {
		m.startLocked(g) // groups that went active before Run
	}
	m.mu.Unlock()
	for _, ln := range m.lns {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		var g *group
		for _, x := range m.groups {
			if strconv.Itoa(x.port) == port {
				g = x
			}
		}
		m.bg.Add(1)
		go func() { defer m.bg.Done(); m.accept(ctx, ln, g) }()
	}
	<-ctx.Done()
	m.Close()
	m.mu.Lock()
	for _, g := range m.groups {
		for _, l := range g.links {
			if l.stop != nil {
				l.stop()
			}
		}
	}
	m.mu.Unlock()
	m.bg.Wait()
}

// SetActive starts (active) or stops the sender of a traffic group. The
// ha package calls it from its loop when the group moves, so it never
// waits: a new sender waits for the old one to finish instead.
func (m *Mirror) SetActive(name string, active bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[name]
	if g == nil {
		return
	}
	g.active.Store(active)
	if m.ctx != nil {
		m.startLocked(g)
	}
}

// startLocked replaces g's senders with ones for its current state (m.mu held).
func (m *Mirror) startLocked(g *group) {
	for _, l := range g.links {
		prev := l.done
		if l.stop != nil {
			l.stop()
			l.stop, l.done = nil, nil
		}
		if !g.active.Load() || m.ctx.Err() != nil {
			continue
		}
		ctx, cancel := context.WithCancel(m.ctx)
		done := make(chan struct{})
		l.stop, l.done = cancel, done
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			defer close(done)
			if prev != nil {
				<-prev
			}
			m.sender(ctx, g, l)
		}()
	}
}

// scope maps records to traffic groups under one configuration.
type scope struct {
	cfg     *config.Config
	mirrors map[string]bool   // persistence profile -> mirror: true
	groupOf map[string]string // virtual -> traffic group
}

// groupOf is the traffic group whose channel carries r ("" : none).
func (m *Mirror) groupOf(r *persist.Record) string {
	c := m.configs.Config()
	s := m.scope.Load()
	if s == nil || s.cfg != c {
		s = &scope{cfg: c, mirrors: map[string]bool{}, groupOf: map[string]string{}}
		if c != nil {
			for n, p := range c.Profiles.Persistence {
				s.mirrors[n] = p.Mirror
			}
			for n, v := range c.Virtuals {
				s.groupOf[n] = v.TrafficGroup
			}
		}
		m.scope.Store(s)
	}
	if !s.mirrors[r.Profile] {
		return ""
	}
	return s.groupOf[r.Virtual]
}

// sender keeps a connection to the group's peer and streams to it until
// ctx ends.
func (m *Mirror) sender(ctx context.Context, g *group, l *link) {
	backoff := 100 * time.Millisecond
	logged := ""
	for ctx.Err() == nil {
		conn, addr, err := m.dial(ctx, g, l)
		if err == nil {
			l.setConn(addr.String(), "")
			m.log.Info("mirroring to peer", "traffic_group", g.name, "peer", l.peer, "address", addr.String())
			logged = ""
			err = m.stream(ctx, g, l, conn)
			conn.Close()
			backoff = 100 * time.Millisecond
		}
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("connection ended")
		}
		l.setConn("", err.Error())
		if err.Error() != logged { // once per distinct failure, not every retry
			logged = err.Error()
			m.log.Warn("mirroring to peer interrupted; records are kept and resent in full on reconnect",
				"traffic_group", g.name, "peer", l.peer, "error", logged)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
	l.setConn("", "")
}

func (l *link) setConn(addr, errText string) {
	l.mu.Lock()
	l.connected, l.lastErr = addr, errText
	l.mu.Unlock()
}

// dial connects to the peer's primary mirror address, else its secondary.
func (m *Mirror) dial(ctx context.Context, g *group, l *link) (*tls.Conn, netip.AddrPort, error) {
	var errs []error
	for i, a := range l.addrs {
		nd := &net.Dialer{Timeout: dialTimeout}
		if i < len(g.local) {
			// From our i-th mirror address: the peer accepts only those.
			nd.LocalAddr = &net.TCPAddr{IP: g.local[i].AsSlice()}
		}
		d := tls.Dialer{NetDialer: nd, Config: m.trust.ClientTLS(l.peer)}
		dctx, cancel := context.WithTimeout(ctx, handshakeLimit)
		c, err := d.DialContext(dctx, "tcp", a.String())
		cancel()
		if err == nil {
			return c.(*tls.Conn), a, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return nil, netip.AddrPort{}, errors.Join(errs...)
}

// stream sends the hello, then snapshots and events until ctx ends or the
// connection fails; a subscription that dropped events starts a new
// snapshot on the same connection.
func (m *Mirror) stream(ctx context.Context, g *group, l *link, conn *tls.Conn) error {
	bw := bufio.NewWriterSize(conn, 64<<10)
	var buf []byte
	var seq uint64
	write := func(f *frame) error {
		var err error
		if buf, err = appendFrame(buf[:0], f, time.Now()); err != nil {
			return err
		}
		_, err = bw.Write(buf)
		return err
	}
	flush := func() error {
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		return bw.Flush()
	}
	l.sent.Store(0)
	l.acked.Store(0)
	// Connections are mirrored to the group's next device in HA order
	// (F5: the traffic group's next-active device).
	var conns *connSender
	if l == g.links[0] {
		conns = g.conns
		defer conns.setUp(false)
	}
	l.mu.Lock()
	l.ackAt = time.Now()
	l.mu.Unlock()
	if err := write(&frame{typ: frameHello, version: wireVersion, group: g.name, device: m.self}); err != nil {
		return err
	}
	// Acknowledgements, read beside the writes.
	ackErr := make(chan error, 1)
	go func() {
		br := bufio.NewReader(conn)
		var rb []byte
		for {
			f, b, err := readFrame(br, rb, time.Now)
			rb = b
			if err == nil && f.typ != frameAck {
				err = fmt.Errorf("%w: type %d from the receiver", errMalformed, f.typ)
			}
			if err != nil {
				ackErr <- err
				return
			}
			l.acked.Store(f.seq)
			if conns != nil {
				conns.acked(f.seq)
			}
			l.mu.Lock()
			l.ackAt = time.Now()
			l.mu.Unlock()
		}
	}()
	defer conn.Close() // ends the ack reader
	keep := func(r persist.Record) bool { return m.groupOf(&r) == g.name }
	check := time.NewTicker(ackEvery)
	defer check.Stop()
	for {
		snap, sub := m.table.Follow(eventQueue, keep)
		seq++
		if err := write(&frame{typ: frameBegin, seq: seq}); err != nil {
			sub.Close()
			return err
		}
		for i := range snap {
			seq++
			if err := write(&frame{typ: frameRecord, seq: seq, rec: snap[i]}); err != nil {
				if errors.Is(err, errMalformed) {
					continue
				}
				sub.Close()
				return err
			}
			if bw.Buffered() > 48<<10 {
				if err := flush(); err != nil {
					sub.Close()
					return err
				}
			}
		}
		seq++
		if err := write(&frame{typ: frameEnd, seq: seq, count: uint64(len(snap))}); err != nil {
			sub.Close()
			return err
		}
		if err := flush(); err != nil {
			sub.Close()
			return err
		}
		l.sent.Store(seq)
		l.resyncs.Add(1)
		l.snapshotN.Store(uint64(len(snap)))
		l.mu.Lock()
		l.resyncAt = time.Now()
		l.mu.Unlock()
		if conns != nil {
			conns.setUp(true)
		}
		err := m.follow(ctx, g, l, conns, sub, &seq, write, flush, ackErr, check.C)
		sub.Close()
		if !errors.Is(err, errResync) {
			return err
		}
		m.log.Warn("mirroring fell behind the table's changes; sending a full snapshot", "traffic_group", g.name, "dropped", sub.Dropped())
	}
}

var errResync = errors.New("resynchronise")

// follow streams events after a snapshot; errResync asks for a new one.
func (m *Mirror) follow(ctx context.Context, g *group, l *link, conns *connSender, sub *events.Subscription[persist.Record], seq *uint64,
	write func(*frame) error, flush func() error, ackErr <-chan error, tick <-chan time.Time) error {
	var connQ chan *connMsg
	if conns != nil {
		connQ = conns.q
	}
	for {
		select {
		case msg := <-connQ:
			*seq++
			// Recorded before it is written: its acknowledgement may come
			// back before write returns.
			conns.sent(*seq, msg)
			if err := write(msg.frame(*seq)); err != nil {
				return err
			}
			if len(connQ) == 0 || *seq%64 == 0 {
				if err := flush(); err != nil {
					return err
				}
				l.sent.Store(*seq)
			}
		case <-ctx.Done():
			flush()
			return nil
		case err := <-ackErr:
			return fmt.Errorf("receiver: %w", err)
		case <-tick:
			if sub.Dropped() > 0 {
				return errResync
			}
			l.mu.Lock()
			ackAt := l.ackAt
			l.mu.Unlock()
			if l.acked.Load() < l.sent.Load() && time.Since(ackAt) > ackTimeout {
				return fmt.Errorf("no acknowledgement for %s", ackTimeout)
			}
		case ev, ok := <-sub.C:
			if !ok {
				return errResync
			}
			r := ev.Record
			if m.groupOf(&r) != g.name || r.Origin == l.peer {
				continue
			}
			*seq++
			f := &frame{typ: frameRecord, seq: *seq, rec: r}
			if ev.Kind == events.Expired {
				f = &frame{typ: frameDelete, seq: *seq, key: r.Key}
			}
			if err := write(f); err != nil && !errors.Is(err, errMalformed) {
				return err
			}
			if len(sub.C) == 0 || *seq%256 == 0 {
				if err := flush(); err != nil {
					return err
				}
				l.sent.Store(*seq)
			}
		}
	}
}

// accept serves one listener of group g.
func (m *Mirror) accept(ctx context.Context, ln net.Listener, g *group) {
	pending := make(chan struct{}, maxPending)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err != nil || !m.allowed[ap.Addr().Unmap()] {
			c.Close() // not from a peer's mirror address
			if n := g.refused.Add(1); n&(n-1) == 0 {
				m.log.Warn("mirroring connection refused: not from a peer's mirror address", "traffic_group", g.name, "remote", c.RemoteAddr().String(), "refused", n)
			}
			continue
		}
		select {
		case pending <- struct{}{}:
		default:
			c.Close() // a flood of unauthenticated connections
			g.refused.Add(1)
			continue
		}
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			if err := m.receive(c, g, func() { <-pending }); err != nil && ctx.Err() == nil {
				m.log.Warn("mirroring connection from peer ended", "traffic_group", g.name, "remote", c.RemoteAddr().String(), "error", err.Error())
			}
		}()
	}
}

// receive authenticates a peer and applies what it mirrors; authenticated
// is called once the connection has proven to be the peer, or when it
// ends before that.
func (m *Mirror) receive(c net.Conn, g *group, authenticated func()) error {
	var once sync.Once
	proven := func() { once.Do(authenticated) }
	defer proven()
	tc := tls.Server(c, m.trust.ServerTLS())
	tc.SetDeadline(time.Now().Add(handshakeLimit))
	if err := tc.Handshake(); err != nil {
		g.refused.Add(1)
		return fmt.Errorf("device trust: %w", err)
	}
	peer := trust.PeerDevice(tc.ConnectionState())
	br := bufio.NewReader(tc)
	var buf []byte
	f, buf, err := readFrame(br, buf, time.Now)
	if err != nil {
		g.refused.Add(1)
		return err
	}
	if f.typ != frameHello || f.version != wireVersion || f.group != g.name || f.device != peer || peer == m.self {
		g.refused.Add(1)
		return fmt.Errorf("refused hello from %q: type %d version %d group %q device %q", peer, f.typ, f.version, f.group, f.device)
	}
	tc.SetDeadline(time.Time{})
	proven()
	// A new stream from the peer: the connections of the one before were
	// lost with it (the sender goes on with them unmirrored).
	stream := g.streams.Add(1)
	g.shadows.reset(stream)
	if n := g.inbound.Add(1); n > maxPeerConns {
		g.inbound.Add(^uint64(0))
		g.refused.Add(1)
		return fmt.Errorf("more than %d mirroring connections from %s", maxPeerConns, peer)
	}
	defer g.inbound.Add(^uint64(0))
	g.mu.Lock()
	g.recvFrom = peer
	g.mu.Unlock()
	var seen map[string]struct{} // keys of the snapshot in progress
	var ack []byte
	var lastAck time.Time
	unacked := 0
	limit := m.table.MaxEntries()
	for {
		f, buf, err = readFrame(br, buf, time.Now)
		if err != nil {
			return err
		}
		switch f.typ {
		case frameBegin:
			seen = map[string]struct{}{}
		case frameRecord:
			if m.groupOf(&f.rec) != g.name {
				g.refused.Add(1) // not a mirrored record of this group here
				break
			}
			f.rec.Origin = peer
			m.table.Store(f.rec)
			g.received.Add(1)
			if seen != nil {
				seen[f.rec.Key] = struct{}{}
				if limit > 0 && len(seen) > 2*limit {
					return fmt.Errorf("snapshot of more than %d records", 2*limit)
				}
			}
		case frameDelete:
			if r, ok := m.table.Get(f.key); ok && m.groupOf(&r) == g.name {
				m.table.Delete(f.key)
			}
		case frameEnd:
			if seen != nil {
				// Records of this group the peer sent before and no
				// longer has. Records made here stay: with every HA
				// path cut both devices serve the group.
				var stale []string
				m.table.Range(func(r persist.Record) bool {
					if _, ok := seen[r.Key]; !ok && r.Origin == peer && m.groupOf(&r) == g.name {
						stale = append(stale, r.Key)
					}
					return true
				})
				for _, k := range stale {
					m.table.Delete(k)
				}
				seen = nil
			}
		case frameConnOpen, frameConnData, frameConnClose, frameConnFinal, frameConnHalf:
			if g.active.Load() {
				break // the group is active here: nothing to stand by for
			}
			if err := g.shadows.apply(stream, f, time.Now()); err != nil {
				g.refused.Add(1)
				return err
			}
		default:
			g.refused.Add(1)
			return fmt.Errorf("%w: type %d from the sender", errMalformed, f.typ)
		}
		g.mu.Lock()
		g.recvAt = time.Now()
		g.mu.Unlock()
		// Connections' write gates wait for these: acknowledge at once when
		// nothing more is buffered, and at least every 32 frames.
		unacked++
		if br.Buffered() == 0 || unacked >= 32 || time.Since(lastAck) > ackEvery {
			unacked = 0
			lastAck = time.Now()
			ack, _ = appendFrame(ack[:0], &frame{typ: frameAck, seq: f.seq}, lastAck)
			tc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := tc.Write(ack); err != nil {
				return err
			}
		}
	}
}

// Status is mirroring as `fulcrum show mirroring` prints it.
type Status struct {
	Device string        `json:"device"`
	Groups []GroupStatus `json:"traffic_groups"`
}

// GroupStatus is one traffic group's channel. The sender fields sum up
// Peers (every other device, when the group is active here): the peers'
// names and connected addresses joined, the first error, the largest lag,
// the smallest sent and acknowledged counts, the snapshots added up.
type GroupStatus struct {
	Name         string       `json:"name"`
	Port         int          `json:"port"`
	Role         string       `json:"role"` // sending (active here) | receiving | idle
	Peer         string       `json:"peer"`
	Connected    string       `json:"connected,omitempty"` // sender: the peer address(es) in use
	Error        string       `json:"error,omitempty"`     // sender: why the last connection failed
	Sent         uint64       `json:"sent"`                // sender: messages sent this connection
	Acked        uint64       `json:"acked"`               // sender: messages the peer applied
	Lag          uint64       `json:"lag"`                 // sent - acked
	LastAck      time.Time    `json:"last_ack,omitzero"`
	Resyncs      uint64       `json:"resyncs"` // full snapshots sent
	Snapshot     uint64       `json:"snapshot_records"`
	LastResync   time.Time    `json:"last_resync,omitzero"`
	Peers        []PeerStatus `json:"peers,omitempty"`
	Received     uint64       `json:"received"` // receiver: records applied
	From         string       `json:"from,omitempty"`
	LastReceived time.Time    `json:"last_received,omitzero"`
	Refused      uint64       `json:"refused"` // connections and records refused
	Inbound      uint64       `json:"inbound_connections"`
	Connections  ConnStats    `json:"connection_mirroring"`
}

// PeerStatus is the sender to one peer.
type PeerStatus struct {
	Peer       string    `json:"peer"`
	Connected  string    `json:"connected,omitempty"`
	Error      string    `json:"error,omitempty"`
	Sent       uint64    `json:"sent"`
	Acked      uint64    `json:"acked"`
	Lag        uint64    `json:"lag"`
	LastAck    time.Time `json:"last_ack,omitzero"`
	Resyncs    uint64    `json:"resyncs"`
	Snapshot   uint64    `json:"snapshot_records"`
	LastResync time.Time `json:"last_resync,omitzero"`
}

func (l *link) status() PeerStatus {
	l.mu.Lock()
	ps := PeerStatus{Peer: l.peer, Connected: l.connected, Error: l.lastErr, LastAck: l.ackAt, LastResync: l.resyncAt}
	l.mu.Unlock()
	ps.Sent, ps.Acked = l.sent.Load(), l.acked.Load()
	if ps.Sent > ps.Acked {
		ps.Lag = ps.Sent - ps.Acked
	}
	ps.Resyncs, ps.Snapshot = l.resyncs.Load(), l.snapshotN.Load()
	return ps
}

// Status reports every group.
func (m *Mirror) Status() *Status {
	s := &Status{Device: m.self}
	names := make([]string, 0, len(m.groups))
	for n := range m.groups {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		g := m.groups[n]
		g.mu.Lock()
		gs := GroupStatus{Name: n, Port: g.port, From: g.recvFrom, LastReceived: g.recvAt}
		g.mu.Unlock()
		var peers, conns []string
		for i, l := range g.links {
			ps := l.status()
			gs.Peers = append(gs.Peers, ps)
			peers = append(peers, ps.Peer)
			if ps.Connected != "" {
				conns = append(conns, ps.Connected)
			}
			if gs.Error == "" {
				gs.Error = ps.Error
			}
			if i == 0 || ps.Sent < gs.Sent {
				gs.Sent = ps.Sent
			}
			if i == 0 || ps.Acked < gs.Acked {
				gs.Acked = ps.Acked
			}
			gs.Lag = max(gs.Lag, ps.Lag)
			if i == 0 || ps.LastAck.Before(gs.LastAck) {
				gs.LastAck = ps.LastAck
			}
			gs.Resyncs += ps.Resyncs
			gs.Snapshot = max(gs.Snapshot, ps.Snapshot)
			if ps.LastResync.After(gs.LastResync) {
				gs.LastResync = ps.LastResync
			}
		}
		gs.Peer = strings.Join(peers, ",")
		if len(conns) == len(g.links) {
			gs.Connected = strings.Join(conns, ",") // "" unless every peer is connected
		}
		gs.Received, gs.Refused, gs.Inbound = g.received.Load(), g.refused.Load(), g.inbound.Load()
		gs.Connections = g.connStats()
		switch {
		case g.active.Load():
			gs.Role = "sending"
		case gs.Inbound > 0:
			gs.Role = "receiving"
		default:
			gs.Role = "idle"
		}
		s.Groups = append(s.Groups, gs)
	}
	return s
}
