package packetlb

import (
	"net/netip"
	"sync"
	"time"
)

// flow is one flow's member, and what to call when it ends.
type flow struct {
	member      netip.AddrPort
	release     func()
	last        time.Time
	closing     bool // a FIN or RST went by: ends after closeWait
	established bool // a packet after the first went by
}

// table is the flow table: bounded, idle flows swept.
type table struct {
	mu   sync.Mutex
	m    map[Key]*flow
	max  int
	idle time.Duration
}

// closeWait is how long a flow lives after its FIN or RST, for the last
// ACKs and retransmissions.
const closeWait = 5 * time.Second

// synWait is how long a flow that has seen only its first packet (a SYN
// nobody followed up: a scan, a spoofed flood) holds its slot and its
// member's connection slot.
const synWait = 10 * time.Second

func newTable(max int, idle time.Duration) *table {
	return &table{m: map[Key]*flow{}, max: max, idle: idle}
}

// get returns k's member, touching the flow; a FIN or RST marks it closing.
func (t *table) get(k Key, flags uint8, now time.Time) (netip.AddrPort, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[k]
	if f == nil {
		return netip.AddrPort{}, false
	}
	f.last = now
	if flags&(FlagSYN|FlagACK) != FlagSYN { // not a retransmitted SYN
		f.established = true
	}
	if flags&(FlagFIN|FlagRST) != 0 {
		f.closing = true
	}
	return f.member, true
}

// add records a new flow; false when the table is full (the caller
// releases the member and drops the packet).
func (t *table) add(k Key, member netip.AddrPort, release func(), now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.m[k]; old != nil {
		// A SYN again (retransmitted, or a new connection on a reused
		// port): keep the flow's member.
		if release != nil {
			release()
		}
		return true
	}
	if len(t.m) >= t.max {
		return false
	}
	t.m[k] = &flow{member: member, release: release, last: now}
	return true
}

// sweep ends idle and closed flows and returns how many.
func (t *table) sweep(now time.Time) int {
	t.mu.Lock()
	var ended []*flow
	for k, f := range t.m {
		if now.Sub(f.last) > t.idle || (f.closing && now.Sub(f.last) > closeWait) || (!f.established && now.Sub(f.last) > synWait) {
			delete(t.m, k)
			ended = append(ended, f)
		}
	}
	t.mu.Unlock()
	for _, f := range ended {
		if f.release != nil {
			f.release()
		}
	}
	return len(ended)
}

// len is the number of flows.
func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// clear ends every flow.
func (t *table) clear() {
	t.sweep(time.Now().Add(100 * 365 * 24 * time.Hour))
}
