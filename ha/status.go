package ha

import (
	"slices"
	"time"
)

// Status is what `fulcrum show devices|traffic-groups` and the API show.
type Status struct {
	Device   string         `json:"device"` // this device
	Interval time.Duration  `json:"interval_ns"`
	DeadTime time.Duration  `json:"dead_time_ns"`
	Lifetime time.Duration  `json:"address_lifetime_ns"`
	Devices  []DeviceStatus `json:"devices"`
	Groups   []GroupStatus  `json:"traffic_groups"`
	Refused  Refused        `json:"refused"`
	Quorum   *QuorumStatus  `json:"quorum,omitempty"` // groups of three or more devices
}

// QuorumStatus is this device's view of the consensus (3+ devices).
type QuorumStatus struct {
	Leader     string `json:"leader"`      // "" : none known
	InMajority bool   `json:"in_majority"` // this device may serve
}

// DeviceStatus is one device as this device sees it.
type DeviceStatus struct {
	Name    string       `json:"name"`
	Self    bool         `json:"self"`
	Up      bool         `json:"up"`
	UpSince time.Time    `json:"up_since,omitzero"`
	Paths   []PathStatus `json:"paths,omitempty"` // peers only
}

// PathStatus is one HA path to a peer.
type PathStatus struct {
	Local      string    `json:"local"`
	Remote     string    `json:"remote"`
	LastHeard  time.Time `json:"last_heard,omitzero"`
	Received   uint64    `json:"received"`    // authentic heartbeats on this path (every peer)
	SendErrors uint64    `json:"send_errors"` // heartbeats the kernel refused to send
	Up         bool      `json:"up"`          // heard within dead_time
	Downs      uint64    `json:"downs"`       // times the path went silent for dead_time
}

// GroupStatus is one traffic group.
type GroupStatus struct {
	Name         string    `json:"name"`
	State        string    `json:"state"`     // here: active | standby
	ActiveOn     string    `json:"active_on"` // the device holding it as far as this one knows ("" : none)
	NextActive   string    `json:"next_active"`
	Generation   uint64    `json:"generation"`
	Since        time.Time `json:"since,omitzero"` // active here since
	Reason       string    `json:"reason"`         // why the last change here happened
	Changed      time.Time `json:"changed,omitzero"`
	Failovers    uint64    `json:"failovers"` // times this device took the group
	Addresses    []string  `json:"addresses"`
	HAOrder      []string  `json:"ha_order"`
	AutoFailback bool      `json:"auto_failback"`
	Hold         bool      `json:"hold,omitempty"`
}

// Refused counts heartbeats that were not accepted, by reason.
type Refused struct {
	Malformed       uint64 `json:"malformed"`
	Unauthenticated uint64 `json:"unauthenticated"`
	UnknownDevice   uint64 `json:"unknown_device"`
	Replayed        uint64 `json:"replayed"`
	WrongSource     uint64 `json:"wrong_source"`
	Overflow        uint64 `json:"overflow"`
	Late            uint64 `json:"late"` // authentic but older than news another path delivered (ignored)
}

func (s *Status) group(name string) *GroupStatus {
	for i := range s.Groups {
		if s.Groups[i].Name == name {
			return &s.Groups[i]
		}
	}
	return nil
}

// Status returns the latest published state (safe from any goroutine).
func (m *Manager) Status() *Status { return m.status.Load() }

// publish builds the Status from the loop's state (loop goroutine).
func (m *Manager) publish(now time.Time) {
	s := &Status{Device: m.self, Interval: m.interval, DeadTime: m.deadTime, Lifetime: m.lifetime,
		Refused: Refused{
			Malformed: m.counters.malformed.Load(), Unauthenticated: m.counters.unauthenticated.Load(),
			UnknownDevice: m.counters.unknown.Load(), Replayed: m.counters.replayed.Load(),
			WrongSource: m.counters.wrongSource.Load(), Overflow: m.counters.overflow.Load(),
			Late: m.counters.late.Load(),
		}}
	names := append(sortedKeys(m.peers), m.self)
	slices.Sort(names)
	for _, n := range names {
		if n == m.self {
			s.Devices = append(s.Devices, DeviceStatus{Name: n, Self: true, Up: true})
			continue
		}
		p := m.peers[n]
		ds := DeviceStatus{Name: n, Up: p.alive, UpSince: p.upSince}
		for i, ap := range m.peerAddr[n] {
			ds.Paths = append(ds.Paths, PathStatus{Local: m.local[i].String(), Remote: ap.String(),
				LastHeard: p.lastHeard[i], Received: m.recvd[i].Load(), SendErrors: m.sendErrs[i].Load(),
				Up: p.pathUp[i], Downs: p.pathDowns[i]})
		}
		s.Devices = append(s.Devices, ds)
	}
	if m.q != nil {
		s.Quorum = &QuorumStatus{Leader: m.q.LeaderName(), InMajority: m.q.InMajority()}
	}
	for _, g := range m.groups {
		gs := GroupStatus{Name: g.name, State: "standby", Generation: g.generation, Reason: g.reason, Changed: g.changed,
			Failovers: g.failovers, HAOrder: g.order, AutoFailback: g.autoFailback, Hold: g.hold}
		for _, a := range m.floating[g.name] {
			gs.Addresses = append(gs.Addresses, a.String())
		}
		if g.active {
			gs.State, gs.ActiveOn, gs.Since, gs.NextActive = "active", m.self, g.since, g.nextActive
		} else {
			best := uint64(0)
			for _, n := range sortedKeys(m.peers) {
				p := m.peers[n]
				if c, ok := p.claims[g.name]; ok && p.alive && c.Active && (gs.ActiveOn == "" || c.Generation > best) {
					gs.ActiveOn, best = n, c.Generation
				}
			}
		}
		s.Groups = append(s.Groups, gs)
	}
	m.status.Store(s)
}
