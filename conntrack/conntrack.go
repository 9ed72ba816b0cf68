package conntrack

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
)

// Entry is one proxied connection. The proxy fills the exported fields before
// Add; after Add, ID, Virtual, Proto, Client, VirtualAddr, Created and
// IdleTimeout must not change, and Pool, ServerLocal and Server change only
// through SetServer. Other goroutines read a consistent view with Snapshot.
type Entry struct {
	ID          uint64
	Virtual     string
	Proto       string         // "tcp" | "udp" | "http" | "https" | "fastl4"
	Client      netip.AddrPort // client address
	VirtualAddr netip.AddrPort // the listener address the client reached (clientside local)
	ServerLocal netip.AddrPort // serverside local (SNAT or kernel-chosen); zero until connected
	Server      netip.AddrPort // pool member; zero until chosen
	Pool        string
	Created     time.Time
	IdleTimeout time.Duration // 0 = no reaping

	// last is the time of the last activity as nanoseconds since Created.
	// Measuring from Created (which carries Go's monotonic clock when it
	// comes from time.Now) makes idle time immune to wall-clock steps.
	last    atomic.Int64
	in, out atomic.Uint64
	mu      sync.Mutex // guards Pool, ServerLocal, Server once the entry is shared
	closer  func()
	reaped  atomic.Bool
	detail  atomic.Pointer[func() any]
	state   atomic.Uint32 // stateNew, stateLive, stateRemoved
	table   *Table        // set by Add; read-only afterwards
}

const (
	stateNew uint32 = iota
	stateLive
	stateRemoved
)

// touchGranularity is the resolution of idle time. Within it, Touch only
// reads the shared word: both directions of a busy connection touch the same
// entry from different goroutines (often different CPUs), and skipping the
// store keeps that cache line shared instead of bouncing it on every read.
const touchGranularity = int64(time.Millisecond)

// Touch records activity at now. It is an atomic load and, at most once per
// millisecond, an atomic store: call it freely on the hot path. The recorded
// activity never moves backwards (a racing caller with an older now is
// ignored).
func (e *Entry) Touch(now time.Time) {
	d := int64(now.Sub(e.Created))
	if d-e.last.Load() < touchGranularity {
		return
	}
	e.last.Store(d)
}

// AddIn counts n bytes from client to server and records activity.
func (e *Entry) AddIn(n int64) {
	if n > 0 {
		e.in.Add(uint64(n))
	}
	e.Touch(time.Now())
}

// AddOut counts n bytes from server to client and records activity.
func (e *Entry) AddOut(n int64) {
	if n > 0 {
		e.out.Add(uint64(n))
	}
	e.Touch(time.Now())
}

// BytesIn is the number of bytes counted from client to server.
func (e *Entry) BytesIn() uint64 { return e.in.Load() }

// BytesOut is the number of bytes counted from server to client.
func (e *Entry) BytesOut() uint64 { return e.out.Load() }

// Idle is how long the entry has seen no activity at now.
func (e *Entry) Idle(now time.Time) time.Duration {
	d := now.Sub(e.Created) - time.Duration(e.last.Load())
	if d < 0 {
		return 0
	}
	return d
}

// SetDetail installs a function that describes the connection in more depth
// (proxy buffers, socket options, the kernel's TCP_INFO); Detail calls it.
// The data path sets it once, before or after Add.
func (e *Entry) SetDetail(fn func() any) { e.detail.Store(&fn) }

// Detail returns the connection's detailed view, or nil.
func (e *Entry) Detail() any {
	if fn := e.detail.Load(); fn != nil {
		return (*fn)()
	}
	return nil
}

// SetServer records the serverside of the connection (for HTTP it changes
// with each request as requests are balanced) and publishes an Updated event
// if the entry is in a table and the serverside really changed.
func (e *Entry) SetServer(pool string, local, server netip.AddrPort) {
	e.mu.Lock()
	if e.Pool == pool && e.ServerLocal == local && e.Server == server {
		// A keep-alive client reusing the same server connection: nothing
		// changed, nothing to publish.
		e.mu.Unlock()
		return
	}
	e.Pool, e.ServerLocal, e.Server = pool, local, server
	e.mu.Unlock()
	if t := e.table; t != nil && e.state.Load() == stateLive && t.hub.Active() {
		t.hub.Publish(events.Updated, e.Snapshot(time.Now()))
	}
}

// Info is the JSON view of an Entry used by the API and by events. It is a
// self-contained value that carries everything needed to show the connection
// or recreate it on a peer.
type Info struct {
	ID                 uint64    `json:"id"`
	Virtual            string    `json:"virtual"`
	Proto              string    `json:"proto"`
	Pool               string    `json:"pool"`
	Client             string    `json:"client"`       // ip:port
	VirtualAddr        string    `json:"virtual_addr"` // ip:port
	ServerLocal        string    `json:"server_local"` // ip:port, "" until connected
	Server             string    `json:"server"`       // ip:port, "" until chosen
	Created            time.Time `json:"created"`
	AgeSeconds         float64   `json:"age_s"`
	IdleSeconds        float64   `json:"idle_s"`
	BytesIn            uint64    `json:"bytes_in"`
	BytesOut           uint64    `json:"bytes_out"`
	IdleTimeoutSeconds float64   `json:"idle_timeout_s"`
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Snapshot returns a consistent view of the entry at now.
func (e *Entry) Snapshot(now time.Time) Info {
	e.mu.Lock()
	pool, local, server := e.Pool, e.ServerLocal, e.Server
	e.mu.Unlock()
	age := now.Sub(e.Created)
	if age < 0 {
		age = 0
	}
	return Info{
		ID:                 e.ID,
		Virtual:            e.Virtual,
		Proto:              e.Proto,
		Pool:               pool,
		Client:             addrString(e.Client),
		VirtualAddr:        addrString(e.VirtualAddr),
		ServerLocal:        addrString(local),
		Server:             addrString(server),
		Created:            e.Created,
		AgeSeconds:         age.Seconds(),
		IdleSeconds:        e.Idle(now).Seconds(),
		BytesIn:            e.in.Load(),
		BytesOut:           e.out.Load(),
		IdleTimeoutSeconds: e.IdleTimeout.Seconds(),
	}
}

// numShards spreads entries over independent locks; IDs are sequential, so
// ID modulo a power of two spreads them evenly.
const numShards = 64

// DefaultReapInterval is used by Run when it is given a non-positive interval.
const DefaultReapInterval = time.Second

type shard struct {
	mu sync.Mutex
	m  map[uint64]*Entry
	_  [48]byte // keep neighbouring shard locks off one cache line
}

// Table is the connection table, sharded by ID. All methods are safe for
// concurrent use.
type Table struct {
	nextID atomic.Uint64
	n      atomic.Int64
	shards [numShards]shard
	hub    events.Hub[Info]
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*Entry)
	}
	return t
}

func (t *Table) shard(id uint64) *shard { return &t.shards[id&(numShards-1)] }

// Events is the stream of changes: Created on Add, Updated on SetServer,
// Expired on Remove.
func (t *Table) Events() *events.Hub[Info] { return &t.hub }

// Len is the number of entries.
func (t *Table) Len() int { return int(t.n.Load()) }

// Add inserts e, assigning e.ID if it is zero (or already used by another
// entry) and e.Created if it is zero, and remembers closer, which the reaper
// calls once to close an idle connection (the proxy closes its sockets and
// then calls Remove). closer must not block for long: it runs on the reaper.
// The entry starts with its last activity at Created. Adding an entry twice
// or after Remove does nothing. Publishes Created.
func (t *Table) Add(e *Entry, closer func()) {
	if !e.state.CompareAndSwap(stateNew, stateLive) {
		return
	}
	if e.Created.IsZero() {
		e.Created = time.Now()
		e.last.Store(0)
	}
	e.closer = closer
	e.table = t
	for {
		if e.ID == 0 {
			e.ID = t.nextID.Add(1)
		} else {
			t.bumpID(e.ID)
		}
		s := t.shard(e.ID)
		s.mu.Lock()
		if _, taken := s.m[e.ID]; taken {
			s.mu.Unlock()
			e.ID = 0
			continue
		}
		s.m[e.ID] = e
		t.n.Add(1)
		s.mu.Unlock()
		break
	}
	if t.hub.Active() {
		t.hub.Publish(events.Created, e.Snapshot(time.Now()))
	}
}

// bumpID makes sure automatically assigned IDs stay above a caller-chosen
// one (for example entries recreated from a peer).
func (t *Table) bumpID(id uint64) {
	for {
		cur := t.nextID.Load()
		if cur >= id || t.nextID.CompareAndSwap(cur, id) {
			return
		}
	}
}

// Remove deletes e from the table and publishes Expired with its final
// counters. It is idempotent and ignores entries that were never added.
func (t *Table) Remove(e *Entry) {
	if e == nil || !e.state.CompareAndSwap(stateLive, stateRemoved) {
		return
	}
	s := t.shard(e.ID)
	s.mu.Lock()
	if cur, ok := s.m[e.ID]; ok && cur == e {
		delete(s.m, e.ID)
		t.n.Add(-1)
	}
	s.mu.Unlock()
	if t.hub.Active() {
		t.hub.Publish(events.Expired, e.Snapshot(time.Now()))
	}
}

// Get returns the entry with id.
func (t *Table) Get(id uint64) (*Entry, bool) {
	s := t.shard(id)
	s.mu.Lock()
	e, ok := s.m[id]
	s.mu.Unlock()
	return e, ok
}

// Range calls fn for every entry until fn returns false. Each shard is copied
// under its lock and fn runs with no lock held, so fn may call Remove or
// SetServer. Entries added or removed during Range may or may not be seen.
func (t *Table) Range(fn func(*Entry) bool) {
	var buf []*Entry
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		buf = buf[:0]
		for _, e := range s.m {
			buf = append(buf, e)
		}
		s.mu.Unlock()
		for _, e := range buf {
			if !fn(e) {
				return
			}
		}
	}
}

// Reap calls the closer of every entry idle for longer than its IdleTimeout
// at now, at most once per entry, and returns how many it reaped. Closers run
// after the shard locks are released, so they may call Remove. An entry added
// without a closer has nothing to close and is removed directly.
func (t *Table) Reap(now time.Time) int {
	var due []*Entry
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, e := range s.m {
			if e.IdleTimeout > 0 && e.Idle(now) > e.IdleTimeout && !e.reaped.Load() {
				due = append(due, e)
			}
		}
		s.mu.Unlock()
	}
	n := 0
	for _, e := range due {
		if e.state.Load() != stateLive || !e.reaped.CompareAndSwap(false, true) {
			continue // removed meanwhile, or a concurrent Reap got it first
		}
		n++
		if e.closer != nil {
			e.closer()
		} else {
			t.Remove(e)
		}
	}
	return n
}

// CloseAll calls the closer of every live entry once (shutdown: connections
// still open when the drain time is over). It returns how many it closed.
func (t *Table) CloseAll() int {
	n := 0
	t.Range(func(e *Entry) bool {
		if e.state.Load() != stateLive || !e.reaped.CompareAndSwap(false, true) {
			return true
		}
		n++
		if e.closer != nil {
			e.closer()
		} else {
			t.Remove(e)
		}
		return true
	})
	return n
}

// Kill closes the connection with id through its closer, as the reaper
// does for an idle one (F5: delete sys connection): the proxy aborts both
// sides and then calls Remove. It reports whether a live entry was found and
// its closer had not run yet; a second Kill of the same id, or a Kill racing
// the reaper or CloseAll, closes nothing and returns false.
func (t *Table) Kill(id uint64) bool {
	e, ok := t.Get(id)
	if !ok || e.state.Load() != stateLive || !e.reaped.CompareAndSwap(false, true) {
		return false
	}
	if e.closer != nil {
		e.closer()
	} else {
		t.Remove(e)
	}
	return true
}

// Run reaps idle entries every interval (DefaultReapInterval if every <= 0)
// until ctx is done.
func (t *Table) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultReapInterval
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.Reap(now)
		}
	}
}
