// Package locate runs the virtual_location monitor (F5: virtual-location):
// it finds whether each pool member is local (on a VLAN of this device) or
// remote (in the other data center, across an EtherIP tunnel) and tells
// the member (pool.Member.SetLocation), which ranks local members first.
//
// How a member is placed, every interval:
//
//  1. its IP in the neighbour table (ARP, ND) gives its MAC and the
//     interface it was learned on;
//  2. if that interface is a bridge (a VLAN group), the bridge's
//     forwarding table gives the port the MAC was last seen on: a tunnel's
//     interface means remote, any other port local. A VM that moves to the
//     other data center announces itself there (the hypervisor's
//     gratuitous ARP or RARP), its frames reach this bridge through the
//     tunnel, and the bridge learns the MAC on the tunnel port at once;
//  3. learned on a tunnel's interface itself: remote; on a plain
//     interface: local.
//
// With no neighbour entry, or no forwarding entry (aged out), the location
// stays what it was and an empty UDP datagram to the member's discard port
// (9) makes the kernel resolve the address again, which refreshes both
// tables for the next round. It reads the kernel's tables only; nothing
// is configured.
package locate

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/pool"
)

// Member is what a Locator places: *pool.Member.
type Member interface {
	Addr() netip.AddrPort
	SetLocation(l pool.Location, reason string) bool
}

// Job is one pool's members and how often to place them.
type Job struct {
	Key      string // the pool's name
	Members  []Member
	Interval time.Duration
}

// Locator runs Jobs. The zero value is not usable: call New.
type Locator struct {
	log     *slog.Logger
	tunnels func() []string // interface names of the tunnels, now

	mu   sync.Mutex
	jobs map[string]*running
}

type running struct {
	job    Job
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Locator whose tunnels are the interfaces tunnels names (it
// is called at each round, so tunnels added by a reload count at once).
func New(log *slog.Logger, tunnels func() []string) *Locator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Locator{log: log, tunnels: tunnels, jobs: map[string]*running{}}
}

// Set reconciles the running jobs with jobs: an unchanged job keeps
// running, others start, missing ones stop (and have stopped when Set
// returns).
func (l *Locator) Set(jobs []Job) {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[string]Job{}
	for _, j := range jobs {
		want[j.Key] = j
	}
	for k, r := range l.jobs {
		if j, ok := want[k]; ok && sameJob(r.job, j) {
			delete(want, k)
			continue
		}
		r.cancel()
		<-r.done
		delete(l.jobs, k)
	}
	for k, j := range want {
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{job: j, cancel: cancel, done: make(chan struct{})}
		l.jobs[k] = r
		go l.run(ctx, r)
	}
}

func sameJob(a, b Job) bool {
	if a.Interval != b.Interval || len(a.Members) != len(b.Members) {
		return false
	}
	for i := range a.Members {
		if a.Members[i] != b.Members[i] {
			return false
		}
	}
	return true
}

// Close stops every job.
func (l *Locator) Close() { l.Set(nil) }

func (l *Locator) run(ctx context.Context, r *running) {
	defer close(r.done)
	every := max(r.job.Interval, 100*time.Millisecond)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.Round(r.job.Members)
		t.Reset(every)
	}
}

// Round places members once.
func (l *Locator) Round(members []Member) {
	tables, err := ReadTables(l.tunnels())
	if err != nil {
		l.log.Warn("virtual_location: cannot read the neighbour tables", "err", err)
		return
	}
	for _, m := range members {
		loc, reason, found := tables.Find(m.Addr().Addr())
		if !found {
			resolve(m.Addr().Addr())
			continue
		}
		m.SetLocation(loc, reason)
	}
}

// resolve makes the kernel resolve a's link-layer address: an empty UDP
// datagram to its discard port.
func resolve(a netip.Addr) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9)))
	if err != nil {
		return
	}
	c.Write(nil)
	c.Close()
}

// Tables is one reading of the kernel's neighbour, forwarding and link
// tables.
type Tables struct {
	links   map[int]netlink.Link
	tunnels map[int]bool
	neigh   map[netip.Addr]netlink.Neigh
	fdb     map[fdbKey]int // (bridge, MAC) -> port
}

type fdbKey struct {
	bridge int
	mac    [6]byte
}

// ReadTables reads the tables; tunnels are the tunnels' interface names.
func ReadTables(tunnels []string) (*Tables, error) {
	t := &Tables{links: map[int]netlink.Link{}, tunnels: map[int]bool{}, neigh: map[netip.Addr]netlink.Neigh{}, fdb: map[fdbKey]int{}}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	byName := map[string]int{}
	for _, l := range links {
		t.links[l.Attrs().Index] = l
		byName[l.Attrs().Name] = l.Attrs().Index
	}
	for _, n := range tunnels {
		if i, ok := byName[n]; ok {
			t.tunnels[i] = true
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := netlink.NeighList(0, fam)
		if err != nil {
			return nil, fmt.Errorf("neighbours: %w", err)
		}
		for _, n := range ns {
			usable := netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
			if len(n.HardwareAddr) != 6 || n.State&usable == 0 {
				continue
			}
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				t.neigh[a.Unmap()] = n
			}
		}
	}
	fdb, err := netlink.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("forwarding table: %w", err)
	}
	for _, f := range fdb {
		if len(f.HardwareAddr) != 6 || f.MasterIndex == 0 || f.LinkIndex == f.MasterIndex {
			continue
		}
		t.fdb[fdbKey{f.MasterIndex, [6]byte(f.HardwareAddr)}] = f.LinkIndex
	}
	return t, nil
}

func (t *Tables) name(i int) string {
	if l := t.links[i]; l != nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("ifindex %d", i)
}

// Find places a: its location and why, or found false when the tables do
// not say.
func (t *Tables) Find(a netip.Addr) (loc pool.Location, reason string, found bool) {
	n, ok := t.neigh[a.Unmap()]
	if !ok {
		return pool.LocationUnknown, "", false
	}
	mac := n.HardwareAddr.String()
	if t.tunnels[n.LinkIndex] {
		return pool.LocationRemote, fmt.Sprintf("MAC %s on tunnel %s", mac, t.name(n.LinkIndex)), true
	}
	l := t.links[n.LinkIndex]
	if l == nil || l.Type() != "bridge" {
		return pool.LocationLocal, fmt.Sprintf("MAC %s on %s", mac, t.name(n.LinkIndex)), true
	}
	port, ok := t.fdb[fdbKey{n.LinkIndex, [6]byte(n.HardwareAddr)}]
	if !ok {
		return pool.LocationUnknown, "", false
	}
	if t.tunnels[port] {
		return pool.LocationRemote, fmt.Sprintf("MAC %s learned on tunnel %s of bridge %s", mac, t.name(port), t.name(n.LinkIndex)), true
	}
	return pool.LocationLocal, fmt.Sprintf("MAC %s learned on %s of bridge %s", mac, t.name(port), t.name(n.LinkIndex)), true
}
