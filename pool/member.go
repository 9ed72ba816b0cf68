package pool

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// memberConf is the part of a member that configuration sets. It is
// replaced as a whole on reload and read through an atomic pointer.
type memberConf struct {
	ratio     int
	connLimit int
	priority  int
	state     State // the configured state, to tell config changes from API changes
}

// Member is one pool member (F5: pool member, node:port). A *Member survives
// reloads that keep its address, so its counters and run-time state do too.
type Member struct {
	addr netip.AddrPort
	str  string

	owner atomic.Pointer[Pool] // the newest pool holding this member: clock, logger, pool settings
	conf  atomic.Pointer[memberConf]

	state        atomic.Uint32 // State
	health       atomic.Uint32 // health
	active       atomic.Int64
	passiveUntil atomic.Int64  // unix ns until which the member is passively down; 0 = not down
	rampStart    atomic.Int64  // unix ns when the member last became available; 0 = not ramping
	latency      atomic.Int64  // EWMA of response time in ns; 0 = no sample yet
	failRun      atomic.Int32  // consecutive passive failures in the current window
	halfOpen     atomic.Bool   // recovered from passive-down, no success yet: one failure re-arms
	location     atomic.Uint32 // Location

	total, requests, bytesIn, bytesOut, errors, failures atomic.Uint64

	mu        sync.Mutex // serialises state transitions; guards the fields below
	firstFail time.Time  // start of the current passive failure window
	reason    string
	since     time.Time
	locReason string // why Location is what it is
}

func newMember(addr netip.AddrPort, c *memberConf, p *Pool, now time.Time) *Member {
	m := &Member{addr: addr, str: addr.String(), since: now}
	m.owner.Store(p)
	m.conf.Store(c)
	m.state.Store(uint32(c.state))
	return m
}

// Addr returns the member's address.
func (m *Member) Addr() netip.AddrPort { return m.addr }

// String returns "ip:port", with IPv6 addresses in brackets.
func (m *Member) String() string { return m.str }

// PoolName returns the name of the (newest) pool the member belongs to.
func (m *Member) PoolName() string { return m.owner.Load().name }

// State returns the administrative state.
func (m *Member) State() State { return State(m.state.Load()) }

// Ratio, ConnLimit and Priority return the member's newest configured values.
func (m *Member) Ratio() int     { return m.conf.Load().ratio }
func (m *Member) ConnLimit() int { return m.conf.Load().connLimit }
func (m *Member) Priority() int  { return m.conf.Load().priority }

// Active returns the number of connections currently holding a slot.
func (m *Member) Active() int64 { return m.active.Load() }

// clock reads the owner's time at most once per operation; Pick scans many
// members and calling time.Now for each would be wasted work.
type clock struct {
	now func() time.Time
	ns  int64
}

func (c *clock) nanos() int64 {
	if c.ns == 0 {
		c.ns = c.now().UnixNano()
	}
	return c.ns
}

func (m *Member) clock() clock { return clock{now: m.owner.Load().now} }

// Available reports whether the member may take a NEW load-balanced
// connection: Enabled, not monitor-down, not passively failed. It does not
// consider the connection limit (see Acquire).
func (m *Member) Available() bool {
	c := m.clock()
	return m.available(&c)
}

// PersistOK reports whether the member may take a PERSISTED client: Enabled
// or Disabled, not monitor-down, not passively failed.
func (m *Member) PersistOK() bool {
	if State(m.state.Load()) == ForcedOffline {
		return false
	}
	c := m.clock()
	return m.healthy(&c)
}

func (m *Member) available(c *clock) bool {
	return State(m.state.Load()) == Enabled && m.healthy(c)
}

// healthy: not monitor-down and not passively down. Ends an elapsed
// passive-down period as a side effect.
func (m *Member) healthy(c *clock) bool {
	if health(m.health.Load()) == healthDown {
		return false
	}
	if until := m.passiveUntil.Load(); until != 0 {
		if c.nanos() < until {
			return false
		}
		m.passiveRecover(until)
	}
	return true
}

// passiveRecover ends the passive-down period that ended at until, unless
// someone else already did (or a new period was armed meanwhile).
func (m *Member) passiveRecover(until int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.passiveUntil.Load() != until {
		return
	}
	m.passiveUntil.Store(0)
	m.failRun.Store(0)
	m.halfOpen.Store(true)
	p := m.owner.Load()
	t := time.Unix(0, until)
	if State(m.state.Load()) == Enabled && health(m.health.Load()) != healthDown {
		m.rampStart.Store(until)
	}
	m.noteLocked(t, fmt.Sprintf("passive: retry time %s elapsed, trying again", p.passive.Retry))
	m.logChange(p, "passive", "down", "up", m.reason)
}

// availableAt is the side-effect-free availability used inside transitions.
func (m *Member) availableAt(nowNs int64) bool {
	if State(m.state.Load()) != Enabled || health(m.health.Load()) == healthDown {
		return false
	}
	until := m.passiveUntil.Load()
	return until == 0 || nowNs >= until
}

func (m *Member) noteLocked(t time.Time, reason string) {
	m.reason = reason
	m.since = t
}

func (m *Member) logChange(p *Pool, kind, from, to, reason string) {
	p.log.Info("member status changed",
		"pool", p.name, "member", m.str, "kind", kind, "from", from, "to", to, "reason", reason)
}

// SetState changes the administrative state at run time (API, CLI) and
// logs it. Invalid values are ignored and logged.
func (m *Member) SetState(s State, reason string) {
	p := m.owner.Load()
	if !s.valid() {
		p.log.Error("member state change ignored: invalid state", "pool", p.name, "member", m.str, "state", s.String())
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := State(m.state.Load())
	if old == s {
		return
	}
	now := p.now()
	was := m.availableAt(now.UnixNano())
	m.state.Store(uint32(s))
	if !was && m.availableAt(now.UnixNano()) {
		m.rampStart.Store(now.UnixNano())
	}
	m.noteLocked(now, reason)
	m.logChange(p, "state", old.String(), s.String(), reason)
}

// SetHealth records a monitor verdict. Every change is logged with its
// reason; a down→up change starts slow ramp. Repeating the current verdict
// is a no-op.
func (m *Member) SetHealth(up bool, reason string) {
	h := healthDown
	if up {
		h = healthUp
	}
	m.setHealth(h, reason)
}

func (m *Member) setHealth(h health, reason string) {
	p := m.owner.Load()
	m.mu.Lock()
	defer m.mu.Unlock()
	old := health(m.health.Load())
	if old == h {
		return
	}
	now := p.now()
	was := m.availableAt(now.UnixNano())
	m.health.Store(uint32(h))
	if !was && m.availableAt(now.UnixNano()) {
		m.rampStart.Store(now.UnixNano())
	}
	if h == healthUp {
		// A fresh "up" starts a fresh passive failure count (but never ends
		// an active passive-down period: the member failed real traffic).
		m.failRun.Store(0)
	}
	m.noteLocked(now, reason)
	m.logChange(p, "health", old.String(), h.String(), reason)
}

// Acquire reserves one connection slot. It returns false, reserving
// nothing, when the member is at its connection limit. It does not look at
// state or health: callers choose members through Pick, or check PersistOK
// for persisted clients. Every successful Acquire needs one Release.
func (m *Member) Acquire() bool {
	limit := int64(m.conf.Load().connLimit)
	if limit <= 0 {
		m.active.Add(1)
		m.total.Add(1)
		return true
	}
	for {
		cur := m.active.Load()
		if cur >= limit {
			return false
		}
		if m.active.CompareAndSwap(cur, cur+1) {
			m.total.Add(1)
			return true
		}
	}
}

// Release returns a slot taken by Acquire. An unbalanced Release is a
// caller bug; it is ignored rather than driving the count negative, which
// would let the member exceed its limit.
func (m *Member) Release() {
	for {
		cur := m.active.Load()
		if cur <= 0 {
			p := m.owner.Load()
			p.log.Error("pool member released more connections than acquired", "pool", p.name, "member", m.str)
			return
		}
		if m.active.CompareAndSwap(cur, cur-1) {
			return
		}
	}
}

func (m *Member) full() bool {
	limit := int64(m.conf.Load().connLimit)
	return limit > 0 && m.active.Load() >= limit
}

// ReportFailure records a failure seen on live traffic (connect error,
// reset, timeout). With passive detection enabled, Failures consecutive
// failures within Interval mark the member down for Retry; after Retry a
// single further failure marks it down again.
func (m *Member) ReportFailure(reason string) {
	m.failures.Add(1)
	p := m.owner.Load()
	pc := p.passive
	if !pc.Enabled {
		return
	}
	m.mu.Lock()
	now := p.now()
	nowNs := now.UnixNano()
	if until := m.passiveUntil.Load(); until != 0 {
		if nowNs < until {
			m.mu.Unlock()
			return // already down; failures of connections chosen before are expected
		}
		m.mu.Unlock()
		m.passiveRecover(until)
		m.mu.Lock()
	}
	trip := m.halfOpen.Load()
	if !trip {
		n := m.failRun.Load()
		if n == 0 || (pc.Interval > 0 && now.Sub(m.firstFail) > pc.Interval) {
			m.firstFail = now
			n = 0
		}
		n++
		m.failRun.Store(n)
		trip = int(n) >= pc.Failures
	}
	if trip {
		var why string
		if m.halfOpen.Load() {
			why = fmt.Sprintf("passive: failed again after retry, down for %s: %s", pc.Retry, reason)
		} else {
			why = fmt.Sprintf("passive: %d consecutive failures within %s, down for %s: %s", m.failRun.Load(), pc.Interval, pc.Retry, reason)
		}
		m.passiveUntil.Store(nowNs + int64(pc.Retry))
		m.failRun.Store(0)
		m.halfOpen.Store(false)
		m.rampStart.Store(0)
		m.noteLocked(now, why)
		m.logChange(p, "passive", "up", "down", why)
	}
	m.mu.Unlock()
}

// ReportSuccess records a success on live traffic: it resets the
// consecutive-failure count and closes a half-open member.
func (m *Member) ReportSuccess() {
	if m.failRun.Load() == 0 && !m.halfOpen.Load() {
		return // hot path: nothing to reset
	}
	m.mu.Lock()
	m.failRun.Store(0)
	m.halfOpen.Store(false)
	m.mu.Unlock()
}

// clearPassiveLocked ends any passive state (passive detection was turned
// off by a reload).
func (m *Member) clearPassiveLocked() bool {
	was := m.passiveUntil.Load() != 0
	m.passiveUntil.Store(0)
	m.failRun.Store(0)
	m.halfOpen.Store(false)
	return was
}

// latencyShift sets the EWMA weight of a new sample to 1/8 (as TCP's SRTT).
const latencyShift = 3

// ObserveLatency adds a response-time sample to the member's EWMA (used by
// the fastest method).
func (m *Member) ObserveLatency(d time.Duration) {
	s := int64(d)
	if s <= 0 {
		s = 1 // 0 means "no sample"
	}
	for {
		old := m.latency.Load()
		n := s
		if old != 0 {
			n = old + (s-old)>>latencyShift
			if n <= 0 {
				n = 1
			}
		}
		if m.latency.CompareAndSwap(old, n) {
			return
		}
	}
}

// AddRequest counts one request (L7) sent to the member.
func (m *Member) AddRequest() { m.requests.Add(1) }

// AddBytes counts bytes: in = from the client toward the server, out =
// toward the client.
func (m *Member) AddBytes(in, out int64) {
	if in > 0 {
		m.bytesIn.Add(uint64(in))
	}
	if out > 0 {
		m.bytesOut.Add(uint64(out))
	}
}

// AddError counts one error (failed connection or request).
func (m *Member) AddError() { m.errors.Add(1) }

// MemberStats is a snapshot of a member for display and metrics.
type MemberStats struct {
	Address      string        `json:"address"`
	State        string        `json:"state"`        // enabled|disabled|forced-offline
	Health       string        `json:"health"`       // up|down|unchecked (no monitor or no result yet)
	Availability string        `json:"availability"` // available|offline|unknown|disabled (F5 status words)
	Reason       string        `json:"reason"`       // last health/state change reason
	Since        time.Time     `json:"since"`        // time of last health/state change
	Ratio        int           `json:"ratio"`
	Priority     int           `json:"priority"`
	ConnLimit    int           `json:"connection_limit"`
	Active       int64         `json:"active_connections"`
	Total        uint64        `json:"total_connections"`
	Requests     uint64        `json:"requests"`
	BytesIn      uint64        `json:"bytes_in"`
	BytesOut     uint64        `json:"bytes_out"`
	Errors       uint64        `json:"errors"`
	Failures     uint64        `json:"passive_failures"`
	LatencyEWMA  time.Duration `json:"latency_ewma_ns"`
	SlowRampPct  int           `json:"slow_ramp_percent"` // 100 when not ramping
	// Location is local, remote or unknown (virtual_location monitor).
	Location       string `json:"location"`
	LocationReason string `json:"location_reason,omitempty"`
}

// Stats returns a snapshot of the member.
func (m *Member) Stats() MemberStats {
	p := m.owner.Load()
	c := clock{now: p.now}
	healthy := m.healthy(&c) // also ends an elapsed passive-down period
	conf := m.conf.Load()
	st := State(m.state.Load())
	h := health(m.health.Load())

	var avail string
	switch {
	case st != Enabled:
		avail = "disabled"
	case !healthy:
		avail = "offline"
	case h == healthUnchecked:
		avail = "unknown"
	default:
		avail = "available"
	}
	hs := h.String()
	if h != healthDown && !healthy {
		hs = "down" // passively failed: live traffic says it is down
	}

	m.mu.Lock()
	reason, since, locReason := m.reason, m.since, m.locReason
	m.mu.Unlock()

	pct := 100
	if healthy && st == Enabled {
		pct = int(rampPermille(m, p.slowRamp, &c) / 10)
	}
	return MemberStats{
		Address:      m.str,
		State:        st.String(),
		Health:       hs,
		Availability: avail,
		Reason:       reason,
		Since:        since,
		Ratio:        conf.ratio,
		Priority:     conf.priority,
		ConnLimit:    conf.connLimit,
		Active:       m.active.Load(),
		Total:        m.total.Load(),
		Requests:     m.requests.Load(),
		BytesIn:      m.bytesIn.Load(),
		BytesOut:     m.bytesOut.Load(),
		Errors:       m.errors.Load(),
		Failures:     m.failures.Load(),
		LatencyEWMA:  time.Duration(m.latency.Load()),
		SlowRampPct:  pct,

		Location:       m.Location().String(),
		LocationReason: locReason,
	}
}

// rampFloorPermille is the minimum effective weight during slow ramp, in
// thousandths of the ratio: 10%, Envoy's min_weight_percent default.
const rampFloorPermille = 100

// rampPermille returns the member's slow-ramp factor in thousandths
// (1000 = full weight), ending the ramp once it is over.
func rampPermille(m *Member, slowRamp time.Duration, c *clock) int64 {
	start := m.rampStart.Load()
	if start == 0 {
		return 1000
	}
	elapsed := c.nanos() - start
	if slowRamp <= 0 || elapsed >= int64(slowRamp) {
		m.rampStart.CompareAndSwap(start, 0)
		return 1000
	}
	if elapsed < 0 {
		elapsed = 0 // clock stepped back
	}
	pm := elapsed * 1000 / int64(slowRamp)
	if pm < rampFloorPermille {
		pm = rampFloorPermille
	}
	return pm
}
