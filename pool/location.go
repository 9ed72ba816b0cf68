package pool

import (
	"cmp"
	"slices"
)

// Location is where a member runs relative to this device, as the
// virtual_location monitor sees it (F5: virtual-location): on a local
// VLAN, or across an EtherIP tunnel in the other data center.
type Location uint32

const (
	LocationUnknown Location = iota // not monitored, or not yet found
	LocationLocal
	LocationRemote
)

func (l Location) String() string {
	switch l {
	case LocationLocal:
		return "local"
	case LocationRemote:
		return "remote"
	}
	return "unknown"
}

// Location returns the member's location.
func (m *Member) Location() Location { return Location(m.location.Load()) }

// SetLocation records where the member is and, when it changed, logs it
// with reason and re-ranks the member's pool: inside a priority group,
// local members come before the others, so priority group activation
// (MinActiveMembers) sends new connections to local members while enough
// of them can take one. Connections already open are not touched. It
// reports whether the location changed.
func (m *Member) SetLocation(l Location, reason string) bool {
	if Location(m.location.Swap(uint32(l))) == l {
		return false
	}
	p := m.owner.Load()
	m.mu.Lock()
	m.locReason = reason
	m.mu.Unlock()
	p.log.Info("member location changed", "pool", p.name, "member", m.str, "to", l.String(), "reason", reason)
	p.mu.Lock()
	p.rankLocked()
	p.mu.Unlock()
	return true
}

// LocationReason returns why the member's location is what it is.
func (m *Member) LocationReason() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.locReason
}

// rankLocked (re)builds order and groupEnd: priority groups, highest
// first; inside a group, local members first; otherwise configuration
// order. Without priority group activation all members form one group in
// configuration order. p.mu held, or p not yet shared.
func (p *Pool) rankLocked() {
	n := len(p.members)
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	var groupEnd []int
	if p.minActive > 0 {
		prio := func(i int32) int { return p.members[i].conf.Load().priority }
		local := func(i int32) int {
			if p.members[i].Location() == LocationLocal {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(order, func(a, b int32) int {
			if c := cmp.Compare(prio(b), prio(a)); c != 0 {
				return c
			}
			return cmp.Compare(local(b), local(a))
		})
		key := func(i int32) [2]int { return [2]int{prio(i), local(i)} }
		for i := 1; i < n; i++ {
			if key(order[i]) != key(order[i-1]) {
				groupEnd = append(groupEnd, i)
			}
		}
	}
	p.order, p.groupEnd = order, append(groupEnd, n)
	p.lastPos = -1
}
