package ha

import (
	"fmt"
	"slices"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/quorum"
)

// Groups of three or more devices: the raft leader assigns each traffic
// group to a device through the replicated log; every device serves the
// groups assigned to it while, and only while, it is in touch with a
// majority. The leader moves a group when its device has been silent on
// every HA path for dead_time — longer than the lease after which a
// device cut off in a minority has already let its groups go — or when an
// operator or auto failback asks.

// liveDevice reports whether a device is up as far as this one knows.
func (m *Manager) liveDevice(name string) bool {
	if name == m.self {
		return true
	}
	p := m.peers[name]
	return p != nil && p.alive
}

// firstLive is the first live device of g's HA order after `after`
// (wrapping; "" after: from the start), "" when none.
func (m *Manager) firstLive(g *group, after string) string {
	start := 0
	if i := slices.Index(g.order, after); i >= 0 {
		start = i + 1
	}
	for k := 0; k < len(g.order); k++ {
		n := g.order[(start+k)%len(g.order)]
		if n != after && m.liveDevice(n) {
			return n
		}
	}
	return ""
}

// leadQuorum is the leader's part: (re)assign groups.
func (m *Manager) leadQuorum(now time.Time, as map[string]quorum.Assignment) {
	for _, g := range m.groups {
		a := as[g.name]
		target, reason := "", ""
		if r, from := nextRequest(g, m.self, m.peers); r != nil {
			target = r.Target
			if target == "" {
				target = m.firstLive(g, a.Device)
			}
			reason = fmt.Sprintf("operator failover requested on %s", from)
			if !m.liveDevice(target) {
				m.log.Warn("operator failover not possible: the target device is down", "group", g.name, "target", target)
				target = ""
			}
		}
		if target == "" {
			switch {
			case a.Device == "" || !slices.Contains(g.order, a.Device):
				target, reason = m.firstLive(g, ""), "no device holds the group"
			case !m.liveDevice(a.Device):
				target, reason = m.firstLive(g, a.Device), fmt.Sprintf("%s is down: silent on every HA path for %s", a.Device, m.deadTime)
			case g.autoFailback:
				if pref := m.firstLive(g, ""); pref != a.Device && slices.Index(g.order, pref) < slices.Index(g.order, a.Device) {
					if p := m.peers[pref]; pref == m.self || p != nil && now.Sub(p.upSince) >= g.failbackDelay {
						target, reason = pref, "auto failback to "+pref
					}
				}
			}
		}
		if target == "" || target == a.Device {
			continue
		}
		if err := m.q.Assign(g.name, target, a.Generation+1, m.deadTime); err != nil {
			m.log.Warn("could not record a traffic group's new device in the quorum", "group", g.name, "target", target, "error", err)
			continue
		}
		m.log.Info("traffic group assigned", "group", g.name, "device", target, "generation", a.Generation+1, "reason", reason)
		as[g.name] = quorum.Assignment{Device: target, Generation: a.Generation + 1}
	}
}

// evaluateQuorum serves what the quorum assigns here, while in touch with
// a majority.
func (m *Manager) evaluateQuorum(now time.Time) {
	starting := now.Before(m.startUntil)
	as := m.q.Assignments()
	if m.q.Leader() && !starting {
		m.leadQuorum(now, as)
	}
	// Taking a group needs settled raft contact and no live device
	// claiming the group with the same or a later generation: a device
	// that rejoins the majority hears the leader before it has the log
	// entries it missed, so a stale assignment must not make it serve
	// beside the new holder (whose heartbeats say so; the catch-up takes
	// milliseconds, the settling three heartbeat intervals or dead_time,
	// whichever is less). Keeping a group needs contact with a
	// majority by raft or by heartbeats heard within half of dead_time: a
	// leader election (raft contact lost for a moment) does not drop the
	// group, and a device cut off in a minority lets go after half of
	// dead_time, before the majority's leader (which waits for dead_time
	// of silence) gives the group to another device.
	raftIn := m.q.InMajority()
	switch {
	case !raftIn:
		m.majoritySince = time.Time{}
	case m.majoritySince.IsZero():
		m.majoritySince = now
	}
	settled := raftIn && now.Sub(m.majoritySince) >= min(m.deadTime, 3*m.interval)
	heard := 1
	for _, p := range m.peers {
		if p.heardWithin(now, m.deadTime/2) {
			heard++
		}
	}
	keep := raftIn || 2*heard > len(m.peers)+1
	changed := false
	for _, g := range m.groups {
		a := as[g.name]
		mine := a.Device == m.self && !starting
		switch {
		case mine && !g.active && settled && !m.claimedElsewhere(g.name, a.Generation):
			g.generation = a.Generation - 1 // activate counts it up to the assignment's
			m.activate(g, fmt.Sprintf("assigned here by the quorum (generation %d)", a.Generation), now)
			changed = true
		case g.active && (!mine || !keep):
			why, to := fmt.Sprintf("the quorum assigned it to %s", a.Device), a.Device
			if !keep {
				why, to = "this device lost touch with the majority of the group", ""
			}
			m.releaseTo(g, "", to, why, now)
			changed = true
		}
		if !g.active {
			g.generation = max(g.generation, a.Generation)
		}
		g.nextActive = m.firstLive(g, a.Device)
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

// claimedElsewhere reports whether a live peer says it holds group with
// generation gen or later.
func (m *Manager) claimedElsewhere(group string, gen uint64) bool {
	for _, p := range m.peers {
		if c, ok := p.claims[group]; ok && p.alive && c.Active && c.Generation >= gen {
			return true
		}
	}
	return false
}
