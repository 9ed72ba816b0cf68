package pool

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// PassiveConfig configures passive failure detection from live traffic
// (F5: inband monitor).
type PassiveConfig struct {
	Enabled  bool
	Failures int           // consecutive failures within Interval that mark the member down
	Interval time.Duration // failure counting window; 0 = no window (any consecutive run counts)
	Retry    time.Duration // how long a passively failed member stays down before it is tried again
}

// Passive detection defaults; they match the configuration defaults. New
// applies the Failures and Retry defaults to an enabled PassiveConfig that
// leaves them zero (a zero Interval means "no window").
const (
	DefaultPassiveFailures = 3
	DefaultPassiveInterval = 10 * time.Second
	DefaultPassiveRetry    = 30 * time.Second
)

// MaxRatio is the largest member ratio; larger values are clamped. It keeps
// weight arithmetic (ratio × 1000 × active connections) far from overflow.
const MaxRatio = 1_000_000

// MemberConfig is one member of a Config.
type MemberConfig struct {
	Addr      netip.AddrPort
	Ratio     int // 1..MaxRatio; values outside are clamped
	ConnLimit int // 0 = unlimited
	Priority  int // priority group, higher preferred
	State     State
}

// Config is a compiled pool.
type Config struct {
	Name             string
	Method           string // "round-robin" | "ratio" | "least-connections" | "fastest" | "consistent-hash" | "power-of-two"
	Members          []MemberConfig
	MinActiveMembers int           // priority group activation; 0 = off (all priorities used together)
	SlowRamp         time.Duration // 0 = off
	Passive          PassiveConfig
	Monitored        bool // pool has health monitors
}

// Load-balancing method names.
const (
	MethodRoundRobin       = "round-robin"
	MethodRatio            = "ratio"
	MethodLeastConnections = "least-connections"
	MethodFastest          = "fastest"
	MethodConsistentHash   = "consistent-hash"
	MethodPowerOfTwo       = "power-of-two"
)

// Methods returns the supported load-balancing method names.
func Methods() []string {
	return []string{MethodRoundRobin, MethodRatio, MethodLeastConnections, MethodFastest, MethodConsistentHash, MethodPowerOfTwo}
}

// ValidMethod reports whether name is a supported method ("" counts: it
// means round-robin).
func ValidMethod(name string) bool {
	_, ok := parseMethod(name)
	return ok
}

type method uint8

const (
	mRoundRobin method = iota
	mRatio
	mLeastConn
	mFastest
	mHash
	mP2C
)

func parseMethod(s string) (method, bool) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-") {
	case "", MethodRoundRobin:
		return mRoundRobin, true
	case MethodRatio:
		return mRatio, true
	case MethodLeastConnections:
		return mLeastConn, true
	case MethodFastest:
		return mFastest, true
	case MethodConsistentHash:
		return mHash, true
	case MethodPowerOfTwo:
		return mP2C, true
	}
	return mRoundRobin, false
}

func (m method) String() string {
	switch m {
	case mRatio:
		return MethodRatio
	case mLeastConn:
		return MethodLeastConnections
	case mFastest:
		return MethodFastest
	case mHash:
		return MethodConsistentHash
	case mP2C:
		return MethodPowerOfTwo
	}
	return MethodRoundRobin
}

// ErrNoMember means no member can take a new connection: all are down,
// disabled or forced offline (or the pool is empty).
var ErrNoMember = errors.New("pool: no member available")

// ErrAllBusy means members are up but every one is at its connection limit.
var ErrAllBusy = errors.New("pool: all available members are at their connection limit")

// Hint carries per-request input for the load-balancing method.
type Hint struct {
	Key []byte // consistent-hash key (e.g. client IP bytes, URI); nil => method falls back to round-robin
	// Exclude are members this flow already failed to reach (reselect):
	// Pick treats them as unavailable, so a priority group they exhaust
	// spills over into the next group.
	Exclude []*Member
}

func (h *Hint) excludes(m *Member) bool {
	for _, x := range h.Exclude {
		if x == m {
			return true
		}
	}
	return false
}

// Pool is an immutable pool configuration plus the small mutable
// load-balancing state its method needs. Build one with New.
type Pool struct {
	name      string
	meth      method
	members   []*Member
	byAddr    map[netip.AddrPort]*Member
	ratio     []int64 // per member index, this configuration's ratio
	order     []int32 // member indices, priority groups in descending order (config order inside a group)
	groupEnd  []int   // end offsets in order of each priority group
	minActive int
	slowRamp  time.Duration
	passive   PassiveConfig
	monitored bool
	log       *slog.Logger
	now       func() time.Time // injectable clock; time.Now in production

	mu sync.Mutex // guards everything below: per-Pick scratch and method state
	// Candidates of the current Pick, rebuilt by collect.
	elig    []int32 // available members of the active priority groups
	cand    []int32 // those of elig below their connection limit
	candPos []int32 // position in order of each cand
	w       []int64 // effective weight of each cand (weighted methods only)
	candIdx []int32 // by member index: its index in cand, or -1
	// Method state.
	lastPos int32   // rotation cursor: position in order of the last pick
	cw      []int64 // smooth weighted round-robin current weights, by member index
	rng     *rand.Rand
	mg      *maglev
}

// New builds a pool. When prev is non-nil (reload), members whose Addr
// appears in both keep their *Member object and all runtime state (health,
// active connection count, statistics, runtime state changes); their config
// (ratio, limit, priority) is updated. A member's runtime State is replaced
// by the config's State only if the config's State differs from what the
// previous config said, so an API state change survives a reload that did
// not touch that member.
//
// Invalid input is repaired and logged rather than rejected (package config
// validates first): an unknown method becomes round-robin, a ratio is
// clamped to 1..MaxRatio, a duplicate member address is ignored, enabled
// passive detection with zero Failures or Retry gets
// DefaultPassiveFailures or DefaultPassiveRetry.
func New(cfg Config, prev *Pool, log *slog.Logger) *Pool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	meth, ok := parseMethod(cfg.Method)
	if !ok {
		log.Warn("unknown load-balancing method, using round-robin", "pool", cfg.Name, "method", cfg.Method)
	}
	pc := cfg.Passive
	if pc.Enabled {
		if pc.Failures <= 0 {
			pc.Failures = DefaultPassiveFailures
		}
		if pc.Retry <= 0 {
			pc.Retry = DefaultPassiveRetry
		}
		pc.Interval = max(pc.Interval, 0)
	}
	p := &Pool{
		name:      cfg.Name,
		meth:      meth,
		byAddr:    make(map[netip.AddrPort]*Member, len(cfg.Members)),
		minActive: cfg.MinActiveMembers,
		slowRamp:  max(cfg.SlowRamp, 0),
		passive:   pc,
		monitored: cfg.Monitored,
		log:       log,
		now:       time.Now,
		lastPos:   -1,
		rng:       rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	now := p.now()
	for _, mc := range cfg.Members {
		if _, dup := p.byAddr[mc.Addr]; dup {
			log.Warn("duplicate pool member ignored", "pool", cfg.Name, "member", mc.Addr.String())
			continue
		}
		st := mc.State
		if !st.valid() {
			log.Warn("invalid member state, using enabled", "pool", cfg.Name, "member", mc.Addr.String(), "state", st.String())
			st = Enabled
		}
		conf := &memberConf{ratio: min(max(mc.Ratio, 1), MaxRatio), connLimit: max(mc.ConnLimit, 0), priority: mc.Priority, state: st}
		var m *Member
		if prev != nil {
			m = prev.byAddr[mc.Addr]
		}
		if m != nil {
			old := m.conf.Load()
			m.conf.Store(conf)
			m.owner.Store(p)
			if conf.state != old.state {
				m.SetState(conf.state, "configuration reload")
			}
			p.reconcile(m, prev)
		} else {
			m = newMember(mc.Addr, conf, p, now)
		}
		p.members = append(p.members, m)
		p.byAddr[mc.Addr] = m
		p.ratio = append(p.ratio, int64(conf.ratio))
	}

	n := len(p.members)
	p.rankLocked()

	p.elig = make([]int32, 0, n)
	p.cand = make([]int32, 0, n)
	p.candPos = make([]int32, 0, n)
	p.w = make([]int64, 0, n)
	p.candIdx = make([]int32, n)
	p.cw = make([]int64, n)
	if meth == mHash {
		p.mg = newMaglev(p.members)
	}
	return p
}

// reconcile adjusts a carried-over member's run-time state to pool-level
// settings that changed in this reload.
func (p *Pool) reconcile(m *Member, prev *Pool) {
	if prev.monitored && !p.monitored {
		// Nobody will report health any more; a stale "down" would strand
		// the member forever.
		m.setHealth(healthUnchecked, "configuration reload: pool has no monitors")
	}
	if prev.passive.Enabled && !p.passive.Enabled {
		m.mu.Lock()
		if m.clearPassiveLocked() {
			reason := "configuration reload: passive detection disabled"
			m.noteLocked(p.now(), reason)
			m.logChange(p, "passive", "down", "up", reason)
		}
		m.mu.Unlock()
	}
}

// Name returns the pool name.
func (p *Pool) Name() string { return p.name }

// Method returns the canonical load-balancing method name.
func (p *Pool) Method() string { return p.meth.String() }

// Members returns the members in configuration order. The slice is a copy.
func (p *Pool) Members() []*Member { return slices.Clone(p.members) }

// Member returns the member with address addr, or nil.
func (p *Pool) Member(addr netip.AddrPort) *Member { return p.byAddr[addr] }

// Len returns the number of members.
func (p *Pool) Len() int { return len(p.members) }

// AvailableCount returns how many members are Available now.
func (p *Pool) AvailableCount() int {
	c := clock{now: p.now}
	n := 0
	for _, m := range p.members {
		if m.available(&c) {
			n++
		}
	}
	return n
}

// Pick chooses a member for a new connection according to the pool's
// method and reserves a connection slot on it (Acquire); the caller must
// Release it. It returns ErrNoMember when no member is available and
// ErrAllBusy when available members exist but all are at their limit.
func (p *Pool) Pick(h Hint) (*Member, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := clock{now: p.now}
	if p.meth == mRoundRobin && len(p.groupEnd) == 1 {
		// Fast path for the default method without priority groups: the
		// next member in rotation that can take the connection wins, so a
		// healthy pool costs one member check instead of a scan. When none
		// can, the full path below tells ErrNoMember from ErrAllBusy.
		n := int32(len(p.order))
		for j := range n {
			pos := p.lastPos + 1 + j
			if pos >= n {
				pos -= n
			}
			if m := p.members[p.order[pos]]; m.available(&c) && !h.excludes(m) && m.Acquire() {
				p.lastPos = pos
				return m, nil
			}
		}
	}
	if p.collect(&c, &h) == 0 {
		return nil, ErrNoMember
	}
	for len(p.cand) > 0 {
		k := p.choose(h)
		mi := p.cand[k]
		if m := p.members[mi]; m.Acquire() {
			p.lastPos = p.candPos[k]
			return m, nil
		}
		// Another pick (from another plan or a persisted client) filled
		// it since collect looked. Drop it and choose again.
		p.dropCand(k)
	}
	return nil, ErrAllBusy
}

// collect fills elig, cand, candPos, w and candIdx for one Pick, applying
// priority group activation, and returns len(elig).
func (p *Pool) collect(c *clock, h *Hint) int {
	p.elig, p.cand, p.candPos, p.w = p.elig[:0], p.cand[:0], p.candPos[:0], p.w[:0]
	for i := range p.candIdx {
		p.candIdx[i] = -1
	}
	weighted := p.meth == mRatio || p.meth == mLeastConn || p.meth == mFastest || p.meth == mP2C
	start := 0
	for _, end := range p.groupEnd {
		for pos := start; pos < end; pos++ {
			mi := p.order[pos]
			m := p.members[mi]
			if !m.available(c) || h.excludes(m) {
				continue
			}
			p.elig = append(p.elig, mi)
			if m.full() {
				continue
			}
			p.candIdx[mi] = int32(len(p.cand))
			p.cand = append(p.cand, mi)
			p.candPos = append(p.candPos, int32(pos))
			if weighted {
				w := p.ratio[mi] * rampPermille(m, p.slowRamp, c)
				p.w = append(p.w, w)
			}
		}
		start = end
		// Members at their limit do not count toward MinActiveMembers, so
		// a saturated group spills over into the next one.
		if p.minActive <= 0 || len(p.cand) >= p.minActive {
			break
		}
	}
	return len(p.elig)
}

func (p *Pool) dropCand(k int) {
	p.candIdx[p.cand[k]] = -1
	p.cand = slices.Delete(p.cand, k, k+1)
	p.candPos = slices.Delete(p.candPos, k, k+1)
	if len(p.w) > k {
		p.w = slices.Delete(p.w, k, k+1)
	}
	for j := k; j < len(p.cand); j++ {
		p.candIdx[p.cand[j]] = int32(j)
	}
}

// choose returns an index into p.cand (which is not empty).
func (p *Pool) choose(h Hint) int {
	switch p.meth {
	case mRatio:
		return p.chooseRatio()
	case mLeastConn:
		return p.chooseLeastConn()
	case mFastest:
		return p.chooseFastest()
	case mHash:
		if h.Key != nil {
			return p.chooseHash(h.Key)
		}
	case mP2C:
		return p.chooseP2C()
	}
	return p.rotationStart()
}

// PoolStats is a snapshot of a pool for display and metrics.
type PoolStats struct {
	Name         string        `json:"name"`
	Method       string        `json:"method"`
	Available    int           `json:"available"`    // members that may take new connections
	Total        int           `json:"total"`        // members
	Availability string        `json:"availability"` // available|offline
	Active       int64         `json:"active_connections"`
	TotalConns   uint64        `json:"total_connections"`
	Requests     uint64        `json:"requests"`
	BytesIn      uint64        `json:"bytes_in"`
	BytesOut     uint64        `json:"bytes_out"`
	Errors       uint64        `json:"errors"`
	Members      []MemberStats `json:"members"`
}

// Stats returns the aggregate of the member statistics and an availability
// summary.
func (p *Pool) Stats() PoolStats {
	s := PoolStats{
		Name:    p.name,
		Method:  p.Method(),
		Total:   len(p.members),
		Members: make([]MemberStats, 0, len(p.members)),
	}
	for _, m := range p.members {
		ms := m.Stats()
		if ms.Availability == "available" || ms.Availability == "unknown" {
			s.Available++
		}
		s.Active += ms.Active
		s.TotalConns += ms.Total
		s.Requests += ms.Requests
		s.BytesIn += ms.BytesIn
		s.BytesOut += ms.BytesOut
		s.Errors += ms.Errors
		s.Members = append(s.Members, ms)
	}
	s.Availability = "offline"
	if s.Available > 0 {
		s.Availability = "available"
	}
	return s
}
