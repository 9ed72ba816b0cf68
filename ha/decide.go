package ha

import (
	"fmt"
	"slices"
	"time"
)

// peer is what this device knows of one other device.
type peer struct {
	name        string
	incarnation uint64
	lastSeq     []uint64    // per path: highest sequence accepted (anti-replay)
	maxSeq      uint64      // highest sequence accepted on any path: the newest news
	lastHeard   []time.Time // per path: when an authentic heartbeat last arrived
	pathUp      []bool      // per path: heard within dead_time at the last tick
	pathDowns   []uint64    // per path: times it went silent for dead_time
	upSince     time.Time   // when it last became live (or restarted)
	alive       bool
	claims      map[string]groupClaim
	requests    []failoverRequest
	received    uint64 // authentic heartbeats
}

// heardWithin reports whether any path delivered a heartbeat within d of now.
func (p *peer) heardWithin(now time.Time, d time.Duration) bool {
	for _, t := range p.lastHeard {
		if !t.IsZero() && now.Sub(t) < d {
			return true
		}
	}
	return false
}

// group is this device's state for one traffic group.
type group struct {
	name          string
	order         []string // HA order
	autoFailback  bool
	failbackDelay time.Duration

	active     bool
	generation uint64 // while active: ours; otherwise the highest seen
	since      time.Time
	hold       bool // we moved the group away on request: do not take it back yet
	holdUntil  time.Time
	handoff    string            // the device we released the group to
	handled    map[string]uint64 // failover request IDs already acted on, per requesting device
	local      *failoverRequest  // a request made through this device's API

	reason     string // why the last change happened
	changed    time.Time
	failovers  uint64 // times this device took the group over
	nextActive string
}

// verdict is what decide wants done with a group.
type verdict struct {
	activate bool // take the group
	release  bool // give it up
	handoff  string
	reason   string
}

// decider holds what decide reads: this device, its peers, the clock.
type decider struct {
	self     string
	peers    map[string]*peer
	now      time.Time
	starting bool // in the start-up wait: learn before taking anything
	holdFor  time.Duration
}

// live reports whether a device is live as far as this device knows
// (itself always is).
func (d *decider) live(name string) bool {
	if name == d.self {
		return true
	}
	p := d.peers[name]
	return p != nil && p.alive
}

// holding reports whether a device says it will not take g.
func (d *decider) holding(g *group, name string) bool {
	if name == d.self {
		return g.hold
	}
	if p := d.peers[name]; p != nil {
		return p.claims[g.name].Hold
	}
	return false
}

// nextAfter is the first live device after `after` in g's HA order that is
// neither `after` nor holding back (wrapping round); "" when none.
func (d *decider) nextAfter(g *group, after string) string {
	i := slices.Index(g.order, after)
	for k := 1; k <= len(g.order); k++ {
		n := g.order[(i+k+len(g.order))%len(g.order)]
		if n != after && d.live(n) && !d.holding(g, n) {
			return n
		}
	}
	return ""
}

// preferred is the first live, non-holding device of g's HA order.
func (d *decider) preferred(g *group) string {
	for _, n := range g.order {
		if d.live(n) && !d.holding(g, n) {
			return n
		}
	}
	return ""
}

// rank orders two claims of one group: the higher generation wins, then
// the earlier device in HA order.
func rank(g *group, gen uint64, name string) (uint64, int) {
	i := slices.Index(g.order, name)
	if i < 0 {
		i = len(g.order)
	}
	return gen, -i
}

func beats(g *group, genA uint64, a string, genB uint64, b string) bool {
	ga, oa := rank(g, genA, a)
	gb, ob := rank(g, genB, b)
	return ga > gb || ga == gb && oa > ob
}

// decide applies the rule in the package doc to one group.
func (d *decider) decide(g *group) verdict {
	// The highest generation anyone live has shown, and who holds the group.
	holder, holderGen, seen := "", uint64(0), uint64(0)
	for _, name := range sortedPeers(d.peers) {
		p := d.peers[name]
		if !p.alive {
			continue
		}
		c, ok := p.claims[g.name]
		if !ok {
			continue
		}
		seen = max(seen, c.Generation)
		if c.Active && (holder == "" || beats(g, c.Generation, name, holderGen, holder)) {
			holder, holderGen = name, c.Generation
		}
	}
	inOrder := slices.Contains(g.order, d.self)
	if !g.active {
		g.generation = max(g.generation, seen)
	}

	if g.active {
		switch {
		case !inOrder:
			return verdict{release: true, reason: "this device is not in the group's ha_order"}
		case holder != "" && beats(g, holderGen, holder, g.generation, d.self):
			return verdict{release: true, reason: fmt.Sprintf("%s holds the group with generation %d (ours %d)", holder, holderGen, g.generation)}
		}
		if r, from := d.request(g); r != nil {
			target := r.Target
			if target == "" {
				target = d.nextAfter(g, d.self)
			}
			if target != "" && target != d.self && d.live(target) {
				return verdict{release: true, handoff: target, reason: fmt.Sprintf("operator failover requested on %s, to %s", from, target)}
			}
		}
		if g.autoFailback {
			if pref := d.preferred(g); pref != "" && pref != d.self && slices.Index(g.order, pref) < slices.Index(g.order, d.self) {
				if p := d.peers[pref]; p != nil && d.now.Sub(p.upSince) >= g.failbackDelay {
					return verdict{release: true, handoff: pref, reason: fmt.Sprintf("auto failback to %s (up for %s)", pref, d.now.Sub(p.upSince).Round(time.Millisecond))}
				}
			}
		}
		return verdict{}
	}

	// Standby.
	if holder != "" {
		g.nextActive = ""
		if g.hold {
			g.hold = false // someone took it: the hand-over is done
		}
		g.handoff = ""
		return verdict{}
	}
	if g.hold && d.now.After(g.holdUntil) {
		g.hold = false
	}
	if d.starting || !inOrder || g.hold {
		return verdict{}
	}
	// A live peer that just released the group names who gets it.
	for _, name := range sortedPeers(d.peers) {
		p := d.peers[name]
		if c, ok := p.claims[g.name]; ok && p.alive && c.Handoff != "" && !c.Active {
			if c.Handoff == d.self {
				return verdict{activate: true, reason: fmt.Sprintf("handed over by %s", name)}
			}
			if d.live(c.Handoff) {
				return verdict{} // it is for another live device
			}
		}
	}
	if d.preferred(g) == d.self {
		return verdict{activate: true, reason: "no live device holds the group and this device is the first available in ha_order"}
	}
	return verdict{}
}

// request returns a failover request for g that this device (the holder)
// has not acted on yet, and the device it came from.
func (d *decider) request(g *group) (*failoverRequest, string) {
	return nextRequest(g, d.self, d.peers)
}

// nextRequest takes a failover request for g not acted on yet: one made
// on this device (g.local) or one a live peer's heartbeat carries; it
// marks it handled and names the device it came from.
func nextRequest(g *group, self string, peers map[string]*peer) (*failoverRequest, string) {
	if g.local != nil {
		r := g.local
		g.local = nil
		return r, self
	}
	for _, name := range sortedPeers(peers) {
		p := peers[name]
		if !p.alive {
			continue
		}
		for i := range p.requests {
			r := &p.requests[i]
			if r.Group != g.name || r.ID <= g.handled[name] {
				continue
			}
			if g.handled == nil {
				g.handled = map[string]uint64{}
			}
			g.handled[name] = r.ID
			return r, name
		}
	}
	return nil, ""
}

func sortedPeers(m map[string]*peer) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
