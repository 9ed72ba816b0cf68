package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/quorum"
	"github.com/fulcrum-adc/fulcrum/netcfg"
	"golang.org/x/sys/unix"
)

// Lifecycle is what the engine offers HA: start or stop the virtual servers
// of one traffic group. Starting must not depend on the floating addresses
// being present yet (listeners bind with IP_FREEBIND).
type Lifecycle interface {
	SetTrafficGroupActive(group string, active bool) error
}

// HandOffer is implemented by a Lifecycle that moves state to the device
// a traffic group is handed to (connection mirroring's planned handover).
// The manager calls it just before it releases a group it hands to a
// named device (operator failover, failback, shutdown, a quorum's
// reassignment); a release for any other reason (a stall, a split brain
// resolved, a lost majority) has no one to hand to.
type HandOffer interface {
	HandOff(group, to string)
}

// AnnounceWatcher is an Engine that wants to know when a group it made
// active has announced its addresses for the first time (gratuitous ARP,
// unsolicited neighbor advertisement): from then on the group's peers
// send to this device, so connections taken over may send (their peers'
// acknowledgements come here).
type AnnounceWatcher interface {
	Announced(group string)
}

// Addresses adds, renews, removes and announces floating addresses. The
// host's (netcfg) is the default; tests substitute their own.
type Addresses interface {
	Add(a netcfg.Address, lifetime time.Duration) error
	Remove(a netcfg.Address) error
	Announce(a netcfg.Address) error
}

type hostAddresses struct{}

func (hostAddresses) Add(a netcfg.Address, l time.Duration) error { return netcfg.Add(a, l) }
func (hostAddresses) Remove(a netcfg.Address) error               { return netcfg.Remove(a) }
func (hostAddresses) Announce(a netcfg.Address) error             { return netcfg.Announce(a) }

// Authenticator seals and opens heartbeats (device trust: a MAC keyed per
// sending device).
type Authenticator interface {
	// Seal returns msg with its MAC appended (msg's array may be reused).
	Seal(msg []byte) []byte
	// Open checks msg's MAC as sent by sender and returns the payload.
	Open(sender string, msg []byte) ([]byte, bool)
}

// Options configure a Manager.
type Options struct {
	Config    *config.Config // validated, HAEnabled
	Engine    Lifecycle
	Auth      Authenticator
	Log       *slog.Logger
	Addresses Addresses // nil: the host's, through netcfg
	// Quorum is required with three or more devices: which device holds
	// each group is then decided by the raft group (ha/quorum), and a
	// device serves only while it is in touch with a majority.
	Quorum Quorum
}

// Quorum is the consensus a group of three or more devices decides on
// (the ha/quorum package's Node).
type Quorum interface {
	Leader() bool
	LeaderName() string
	InMajority() bool
	Assignments() map[string]quorum.Assignment
	Assign(group, device string, gen uint64, timeout time.Duration) error
}

// Manager runs this device's part of the device group.
type Manager struct {
	self     string
	interval time.Duration
	deadTime time.Duration
	lifetime time.Duration
	port     int
	garpN    int
	garpGap  time.Duration
	engine   Lifecycle
	q        Quorum // nil: a two-device group (decide.go's rule)
	auth     Authenticator
	log      *slog.Logger
	addrs    Addresses

	local      []netip.Addr                  // this device's HA address per path
	peerAddr   map[string][]netip.AddrPort   // peer -> heartbeat address per path
	floating   map[string][]netcfg.Address   // group -> addresses
	conns      []*net.UDPConn                // per path
	in         chan inbound                  // authentic heartbeats, from the readers
	reannounce bool                          // a peer came up: announce the groups held here again
	reqs       chan *localRequest            // operator failover requests
	status     atomic.Pointer[Status]        // published by the loop
	counters   counters                      // refusals, for Status and metrics
	sendErrs   []atomic.Uint64               // per path
	recvd      []atomic.Uint64               // per path: authentic heartbeats
	announce   map[string]context.CancelFunc // group -> its running announcer

	// Owned by the loop goroutine.
	peers         map[string]*peer
	groups        []*group
	incarnation   uint64
	seq           uint64
	lastTick      time.Time
	startUntil    time.Time
	lastRenew     time.Time
	majoritySince time.Time         // quorum mode: in touch with the majority since
	outgoing      []failoverRequest // requests made here for groups held elsewhere
	outExpiry     []time.Time
	bg            sync.WaitGroup
}

type counters struct {
	malformed, unauthenticated, unknown, replayed, wrongSource, overflow, late atomic.Uint64
}

type inbound struct {
	hb   *heartbeat
	path int
	at   time.Time
}

type localRequest struct {
	group, target string
	done          chan error
}

// New checks the configuration and opens the heartbeat sockets.
func New(opt Options) (*Manager, error) {
	c := opt.Config
	if c == nil || !c.HAEnabled() {
		return nil, errors.New("ha: the configuration defines no device group")
	}
	if opt.Engine == nil || opt.Auth == nil || opt.Log == nil {
		return nil, errors.New("ha: Engine, Auth and Log are required")
	}
	if len(c.Devices) >= 3 && opt.Quorum == nil {
		return nil, errors.New("ha: a group of three or more devices needs its quorum (ha/quorum)")
	}
	self := c.Local.Device
	me := c.Devices[self]
	if me == nil {
		return nil, fmt.Errorf("ha: local.device %q is not in devices", self)
	}
	m := &Manager{
		self:     self,
		interval: time.Duration(c.Failover.Interval),
		deadTime: time.Duration(c.Failover.DeadTime),
		lifetime: netcfg.Lifetime(time.Duration(c.Failover.DeadTime)),
		port:     c.Failover.Port,
		garpN:    c.Failover.GARPCount,
		garpGap:  time.Duration(c.Failover.GARPInterval),
		engine:   opt.Engine,
		q:        opt.Quorum,
		auth:     opt.Auth,
		log:      opt.Log.With("subsystem", "ha"),
		addrs:    opt.Addresses,
		peerAddr: map[string][]netip.AddrPort{},
		floating: map[string][]netcfg.Address{},
		in:       make(chan inbound, 1024),
		reqs:     make(chan *localRequest),
		announce: map[string]context.CancelFunc{},
		peers:    map[string]*peer{},
	}
	if m.addrs == nil {
		m.addrs = hostAddresses{}
	}
	for _, s := range me.HAAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("ha: devices.%s.ha_addresses: %w", self, err)
		}
		m.local = append(m.local, a.Unmap())
	}
	for name, d := range c.Devices {
		if name == self {
			continue
		}
		var aps []netip.AddrPort
		for _, s := range d.HAAddresses {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("ha: devices.%s.ha_addresses: %w", name, err)
			}
			aps = append(aps, netip.AddrPortFrom(a.Unmap(), uint16(m.port)))
		}
		m.peerAddr[name] = aps
		m.peers[name] = &peer{name: name, lastSeq: make([]uint64, len(aps)), lastHeard: make([]time.Time, len(aps)),
			pathUp: make([]bool, len(aps)), pathDowns: make([]uint64, len(aps))}
	}
	for _, name := range sortedKeys(c.TrafficGroups) {
		tg := c.TrafficGroups[name]
		for i, p := range tg.Prefixes {
			m.floating[name] = append(m.floating[name], netcfg.Address{Prefix: p, Interface: tg.Addresses[i].Interface})
		}
		m.groups = append(m.groups, &group{name: name, order: slices.Clone(tg.HAOrder),
			autoFailback: tg.AutoFailback, failbackDelay: time.Duration(tg.FailbackDelay)})
	}
	m.sendErrs = make([]atomic.Uint64, len(m.local))
	m.recvd = make([]atomic.Uint64, len(m.local))
	for i, a := range m.local {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(m.port))))
		if err != nil {
			for _, c := range m.conns {
				c.Close()
			}
			return nil, fmt.Errorf("ha: heartbeat socket on path %d (%s port %d): %w", i, a, m.port, err)
		}
		m.conns = append(m.conns, conn)
	}
	m.publish(time.Now())
	return m, nil
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Run removes floating addresses a previous run may have left, then runs
// the device's heartbeats and decisions until ctx ends. On the way out it
// releases every group it holds (so a peer takes them at once) and closes
// its sockets.
func (m *Manager) Run(ctx context.Context) error {
	now := time.Now()
	m.incarnation = uint64(now.UnixNano())
	for _, g := range m.groups {
		for _, a := range m.floating[g.name] {
			if err := m.addrs.Remove(a); err != nil {
				m.log.Warn("could not remove a floating address left by an earlier run", "group", g.name, "address", a.String(), "error", err)
			}
		}
	}
	m.lastTick = now
	m.startUntil = now.Add(m.deadTime)
	m.log.Info("device group: listening for peers before taking any traffic group",
		"device", m.self, "interval", m.interval, "dead_time", m.deadTime, "paths", len(m.conns), "address_lifetime", m.lifetime)
	for i, c := range m.conns {
		m.bg.Add(1)
		go func() { defer m.bg.Done(); m.read(i, c) }()
	}
	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	m.tick(now)
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return nil
		case in := <-m.in:
			now := time.Now()
			m.accept(in)
			m.evaluate(now)
		case r := <-m.reqs:
			r.done <- m.request(r, time.Now())
		case <-ticker.C:
			m.tick(time.Now())
		}
	}
}

// shutdown releases every group, tells the peers, and stops the readers.
func (m *Manager) shutdown() {
	now := time.Now()
	d := m.decider(now)
	for _, g := range m.groups {
		if g.active {
			m.release(g, d.nextAfter(g, m.self), "this device is shutting down", now)
		}
	}
	m.send()
	for _, cancel := range m.announce {
		cancel()
	}
	for _, c := range m.conns {
		c.Close()
	}
	m.bg.Wait()
	m.publish(now)
}

// read receives heartbeats on one path, checks them and hands them to the loop.
func (m *Manager) read(path int, c *net.UDPConn) {
	buf := make([]byte, maxHeartbeat+64)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		at := time.Now()
		hb, err := m.open(path, buf[:n], from)
		if err != nil {
			continue
		}
		m.recvd[path].Add(1)
		select {
		case m.in <- inbound{hb: hb, path: path, at: at}:
		default:
			m.counters.overflow.Add(1)
		}
	}
}

// open authenticates and decodes one datagram from a peer.
func (m *Manager) open(path int, pkt []byte, from netip.AddrPort) (*heartbeat, error) {
	// The sender's name, needed to choose the key, is at a fixed place.
	if len(pkt) < 5 || pkt[0] != 'F' || pkt[1] != 'H' || len(pkt) < 5+int(pkt[4]) {
		m.counters.malformed.Add(1)
		return nil, errHeartbeat
	}
	sender := string(pkt[5 : 5+int(pkt[4])])
	addrs, known := m.peerAddr[sender]
	if !known {
		if n := m.counters.unknown.Add(1); n&(n-1) == 0 { // log the 1st, 2nd, 4th, 8th...
			m.log.Warn("heartbeat from an unknown device refused", "sender", sender, "from", from.String(), "refused", n)
		}
		return nil, errors.New("unknown device")
	}
	payload, ok := m.auth.Open(sender, pkt)
	if !ok {
		if n := m.counters.unauthenticated.Add(1); n&(n-1) == 0 {
			m.log.Warn("heartbeat with a bad MAC refused (wrong heartbeat key, or forged)", "sender", sender, "from", from.String(), "refused", n)
		}
		return nil, errors.New("bad MAC")
	}
	hb, err := unmarshal(payload)
	if err != nil {
		m.counters.malformed.Add(1)
		return nil, err
	}
	if int(hb.Path) != path || path >= len(addrs) || addrs[path].Addr() != from.Addr().Unmap() {
		m.counters.wrongSource.Add(1)
		return nil, errors.New("wrong source")
	}
	return hb, nil
}

// accept records an authentic heartbeat (loop goroutine).
func (m *Manager) accept(in inbound) {
	p := m.peers[in.hb.Sender]
	hb := in.hb
	switch {
	case hb.Incarnation < p.incarnation:
		m.counters.replayed.Add(1)
		return
	case hb.Incarnation > p.incarnation:
		if p.incarnation != 0 {
			m.log.Info("peer restarted", "peer", p.name)
		}
		p.incarnation = hb.Incarnation
		clear(p.lastSeq)
		p.maxSeq = 0
		p.alive = false
	case hb.Seq <= p.lastSeq[in.path]:
		m.counters.replayed.Add(1)
		return
	}
	p.lastSeq[in.path] = hb.Seq
	if hb.Seq < p.maxSeq {
		// Sent before a heartbeat another path already delivered: a
		// path that was down releases what the kernel queued for it.
		// Its news is old; it proves nothing about now.
		m.counters.late.Add(1)
		return
	}
	fresh := hb.Seq > p.maxSeq
	p.maxSeq = hb.Seq
	if !p.lastHeard[in.path].IsZero() && in.at.Sub(p.lastHeard[in.path]) >= m.deadTime {
		m.log.Info("HA path delivers heartbeats again", "peer", p.name, "path", in.path)
	}
	p.lastHeard[in.path] = in.at
	p.pathUp[in.path] = true
	p.received++
	if !p.alive {
		p.alive = true
		p.upSince = in.at
		m.log.Info("peer up", "peer", p.name, "path", in.path)
		// A peer that was cut off or stalled may have held our groups and
		// pointed neighbours at itself: announce ours again.
		m.reannounce = true
	}
	if !fresh {
		return // the same round on another path: same news
	}
	p.claims = make(map[string]groupClaim, len(hb.Groups))
	for _, g := range hb.Groups {
		p.claims[g.Name] = g
	}
	p.requests = hb.Requests
}

// pending reports whether heartbeats are waiting to be read, so that a
// late loop never declares a peer dead whose heartbeats are queued here.
func (m *Manager) pending() bool {
	if len(m.in) > 0 {
		return true
	}
	for _, c := range m.conns {
		rc, err := c.SyscallConn()
		if err != nil {
			continue
		}
		n := 0
		rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		if n > 0 {
			return true
		}
	}
	return false
}

// tick runs every interval: stall check, liveness, decisions, heartbeats,
// address renewal.
func (m *Manager) tick(now time.Time) {
	if gap := now.Sub(m.lastTick); gap >= m.deadTime {
		// Peers stopped hearing us as long: they may hold our groups now.
		held := false
		for _, g := range m.groups {
			if g.active {
				held = true
				m.release(g, "", fmt.Sprintf("this device was stalled for %s (dead_time %s): peers may have taken the group over", gap.Round(time.Millisecond), m.deadTime), now)
			}
		}
		if held {
			m.startUntil = now.Add(m.deadTime)
		}
	}
	m.lastTick = now
	for drained := false; !drained; {
		select {
		case in := <-m.in:
			m.accept(in)
		default:
			drained = true
		}
	}
	for _, name := range sortedKeys(m.peers) {
		p := m.peers[name]
		for i, t := range p.lastHeard {
			up := !t.IsZero() && now.Sub(t) < m.deadTime
			if p.pathUp[i] && !up && !m.pending() {
				p.pathDowns[i]++
				m.log.Warn("HA path silent: no heartbeat on it for dead_time (a failover needs every path silent)",
					"peer", p.name, "path", i, "remote", m.peerAddr[p.name][i].String(), "dead_time", m.deadTime)
				p.pathUp[i] = false
			}
		}
		if p.alive && !p.heardWithin(now, m.deadTime) {
			if m.pending() {
				continue // our reader is behind, not the peer
			}
			p.alive = false
			m.log.Warn("peer down: no heartbeat on any HA path", "peer", p.name, "dead_time", m.deadTime)
		}
	}
	for i := 0; i < len(m.outgoing); {
		if now.After(m.outExpiry[i]) {
			m.outgoing = slices.Delete(m.outgoing, i, i+1)
			m.outExpiry = slices.Delete(m.outExpiry, i, i+1)
			continue
		}
		i++
	}
	m.evaluate(now)
	m.send()
	if now.Sub(m.lastRenew) >= netcfg.RenewEvery(m.lifetime) {
		m.lastRenew = now
		for _, g := range m.groups {
			if g.active {
				m.addAddresses(g)
			}
		}
	}
}

func (m *Manager) decider(now time.Time) *decider {
	return &decider{self: m.self, peers: m.peers, now: now, starting: now.Before(m.startUntil), holdFor: m.holdFor()}
}

// holdFor is how long a device that handed a group over waits for the
// target to take it before it may take it back.
func (m *Manager) holdFor() time.Duration { return max(2*m.deadTime, time.Second) }

// evaluate runs decide on every group and carries out its verdicts.
func (m *Manager) evaluate(now time.Time) {
	if m.q != nil {
		m.evaluateQuorum(now)
		return
	}
	d := m.decider(now)
	changed := false
	for _, g := range m.groups {
		v := d.decide(g)
		switch {
		case v.activate:
			m.activate(g, v.reason, now)
			changed = true
		case v.release:
			m.release(g, v.handoff, v.reason, now)
			changed = true
		}
		if g.active {
			g.nextActive = d.nextAfter(g, m.self)
		}
	}
	if changed {
		m.send()
	}
	if m.reannounce {
		m.reannounce = false
		for _, g := range m.groups {
			if g.active {
				m.startAnnounce(g)
			}
		}
	}
	m.publish(now)
}

func (m *Manager) addAddresses(g *group) bool {
	ok := true
	for _, a := range m.floating[g.name] {
		if err := m.addrs.Add(a, m.lifetime); err != nil {
			ok = false
			m.log.Error("could not add a floating address", "group", g.name, "address", a.String(), "error", err)
		}
	}
	return ok
}

func (m *Manager) activate(g *group, reason string, now time.Time) {
	g.generation++
	g.active, g.since, g.hold, g.handoff = true, now, false, ""
	g.reason, g.changed = reason, now
	g.failovers++
	m.addAddresses(g)
	stop := m.keepBeating()
	err := m.engine.SetTrafficGroupActive(g.name, true)
	stop()
	if err != nil {
		m.log.Error("traffic group cannot serve here: releasing it", "group", g.name, "error", err)
		m.release(g, "", "its virtual servers could not start here: "+err.Error(), now)
		g.hold, g.holdUntil = true, now.Add(m.holdFor())
		return
	}
	m.log.Info("traffic group active", "group", g.name, "generation", g.generation, "reason", reason)
	m.startAnnounce(g)
}

// keepBeating sends heartbeats every interval from another goroutine while
// the loop waits for the engine (a planned handover of mirrored
// connections, or their restore, may take longer than dead_time); the
// heartbeats say what the loop last decided. stop returns once that
// goroutine has ended, before the loop changes anything again.
//
// Peers heard this device all along unless the heartbeats themselves
// stalled (the whole process stopped): then the loop's stall check must
// still see the gap; otherwise the time spent waiting is not a stall.
func (m *Manager) keepBeating() (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	start := time.Now()
	var maxGap time.Duration
	go func() {
		defer close(ended)
		t := time.NewTicker(m.interval)
		defer t.Stop()
		last := start
		for {
			select {
			case <-done:
				maxGap = max(maxGap, time.Since(last))
				return
			case now := <-t.C:
				maxGap = max(maxGap, now.Sub(last))
				last = now
				m.send()
			}
		}
	}()
	return func() {
		close(done)
		<-ended
		if maxGap < m.deadTime && m.lastTick.Before(start) {
			m.lastTick = time.Now()
		}
	}
}

// startAnnounce (re)starts the announcements of g's addresses.
func (m *Manager) startAnnounce(g *group) {
	if cancel := m.announce[g.name]; cancel != nil {
		cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.announce[g.name] = cancel
	addrs := m.floating[g.name]
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.announceLoop(ctx, g.name, addrs)
	}()
}

// announceLoop sends garp_count announcements per address, garp_interval apart.
func (m *Manager) announceLoop(ctx context.Context, group string, addrs []netcfg.Address) {
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; i < m.garpN; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, a := range addrs {
			if err := m.addrs.Announce(a); err != nil && i == 0 {
				m.log.Warn("could not announce a floating address", "group", group, "address", a.String(), "error", err)
			}
		}
		if w, ok := m.engine.(AnnounceWatcher); ok && i == 0 {
			w.Announced(group)
		}
		t.Reset(m.garpGap)
	}
}

func (m *Manager) release(g *group, handoff, reason string, now time.Time) {
	m.releaseTo(g, handoff, handoff, reason, now)
}

// releaseTo is release that hands the group's state to device to first
// ("" : to no one).
func (m *Manager) releaseTo(g *group, handoff, to, reason string, now time.Time) {
	if cancel := m.announce[g.name]; cancel != nil {
		cancel()
		delete(m.announce, g.name)
	}
	stop := m.keepBeating()
	if h, ok := m.engine.(HandOffer); ok && to != "" {
		h.HandOff(g.name, to)
	}
	err := m.engine.SetTrafficGroupActive(g.name, false)
	stop()
	if err != nil {
		m.log.Error("could not stop the traffic group's virtual servers", "group", g.name, "error", err)
	}
	for _, a := range m.floating[g.name] {
		if err := m.addrs.Remove(a); err != nil {
			m.log.Error("could not remove a floating address", "group", g.name, "address", a.String(), "error", err)
		}
	}
	g.active = false
	g.reason, g.changed = reason, now
	if handoff != "" {
		g.handoff, g.hold, g.holdUntil = handoff, true, now.Add(m.holdFor())
	}
	m.log.Info("traffic group standby", "group", g.name, "handoff", handoff, "reason", reason)
}

// send sends one heartbeat on every path to every peer.
func (m *Manager) send() {
	hb := heartbeat{Sender: m.self, Incarnation: m.incarnation}
	for _, g := range m.groups {
		hb.Groups = append(hb.Groups, groupClaim{Name: g.name, Active: g.active, Hold: g.hold, Generation: g.generation, Handoff: g.handoff})
	}
	hb.Requests = m.outgoing
	var buf [maxHeartbeat + 64]byte
	// One sequence number per round, the same on every path: a receiver
	// orders news across paths by it.
	m.seq++
	for path, c := range m.conns {
		hb.Seq, hb.Path = m.seq, uint8(path)
		msg, err := hb.marshal(buf[:0])
		if err != nil {
			m.log.Error("heartbeat not sent", "error", err)
			return
		}
		msg = m.auth.Seal(msg)
		for _, name := range sortedKeys(m.peerAddr) {
			if _, err := c.WriteToUDPAddrPort(msg, m.peerAddr[name][path]); err != nil && !errors.Is(err, syscall.EAGAIN) {
				m.sendErrs[path].Add(1)
			}
		}
	}
}

// request carries out an operator's failover of a group (loop goroutine).
func (m *Manager) request(r *localRequest, now time.Time) error {
	var g *group
	for _, x := range m.groups {
		if x.name == r.group {
			g = x
		}
	}
	if g == nil {
		return fmt.Errorf("%w: traffic group %q does not exist", api.ErrNotFound, r.group)
	}
	if r.target != "" && !slices.Contains(g.order, r.target) {
		return fmt.Errorf("%w: device %q is not in traffic group %s's ha_order (%v)", api.ErrBadRequest, r.target, g.name, g.order)
	}
	if g.active && r.target == m.self {
		return fmt.Errorf("%w: traffic group %s is already active on %s", api.ErrBadRequest, g.name, m.self)
	}
	if m.q != nil && m.q.Leader() {
		// The quorum's leader assigns: at once, from here.
		g.local = &failoverRequest{Group: g.name, Target: r.target}
		m.evaluate(now)
		return nil
	}
	if g.active && m.q == nil {
		g.local = &failoverRequest{Group: g.name, Target: r.target}
		m.evaluate(now)
		if g.active {
			return fmt.Errorf("%w: traffic group %s stays on %s: no other live device can take it", api.ErrBadRequest, g.name, m.self)
		}
		return nil
	}
	m.outgoing = append(m.outgoing, failoverRequest{Group: g.name, Target: r.target, ID: uint64(now.UnixNano())})
	m.outExpiry = append(m.outExpiry, now.Add(m.holdFor()))
	if len(m.outgoing) > maxRequests {
		m.outgoing, m.outExpiry = m.outgoing[1:], m.outExpiry[1:]
	}
	m.send()
	return nil
}

// Failover asks that a traffic group leave the device holding it, for
// target or (target "") the next live device in HA order (F5: Force to
// Standby / `run sys failover standby traffic-group`). It waits until the
// group is held by another device, or fails after twice the dead time.
func (m *Manager) Failover(ctx context.Context, group, target string) error {
	before := m.Status().group(group)
	r := &localRequest{group: group, target: target, done: make(chan error, 1)}
	select {
	case m.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := <-r.done; err != nil {
		return err
	}
	deadline := time.Now().Add(m.holdFor() + time.Second)
	for time.Now().Before(deadline) {
		g := m.Status().group(group)
		if g != nil && g.ActiveOn != "" && (before == nil || g.ActiveOn != before.ActiveOn) && (target == "" || g.ActiveOn == target) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(m.interval):
		}
	}
	g := m.Status().group(group)
	on := "no device"
	if g != nil && g.ActiveOn != "" {
		on = g.ActiveOn
	}
	return fmt.Errorf("traffic group %s did not move within %s: it is active on %s", group, m.holdFor()+time.Second, on)
}
