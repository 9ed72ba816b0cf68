package persist

import (
	"context"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
)

// Record is one persistence entry. It is a self-contained value: everything a
// peer device needs to recreate the entry is in it (the key, the member and
// the expiry), which is what the HA mirror sends.
type Record struct {
	Key     string         `json:"key"`     // full table key (scope + type + value)
	Type    string         `json:"type"`    // the profile type: source_addr, dest_addr, cookie_passive, universal, msrdp, sip or ssl
	Value   string         `json:"value"`   // human-readable identity (masked client address, cookie value, header value)
	Profile string         `json:"profile"` // profile that created it
	Virtual string         `json:"virtual"` // virtual that created it
	Pool    string         `json:"pool"`
	Member  netip.AddrPort `json:"member"`
	Created time.Time      `json:"created"`
	Expires time.Time      `json:"expires"`    // zero when Timeout <= 0 (never expires)
	Timeout time.Duration  `json:"timeout_ns"` // lifetime after the last use; <= 0 means the record never expires
	// Origin is the peer device whose mirror channel last wrote the record;
	// "" when this device made or last used it. A mirror sender does not
	// send a peer's own records back to it, and the first local use makes
	// a record this device's again.
	Origin string `json:"origin,omitempty"`
}

// expired reports whether r has timed out at now. Records without a timeout
// never expire.
func (r *Record) expired(now time.Time) bool {
	return r.Timeout > 0 && !now.Before(r.Expires)
}

// numShards spreads the table over independent locks so that many
// connections can look up and store records at once. A power of two, so the
// shard is a mask of the hash.
const numShards = 64

// DefaultSweepInterval is used by Run when it is given a non-positive interval.
const DefaultSweepInterval = time.Second

type entry struct {
	rec Record
	// published is when an event last carried this record's expiry. Lookup
	// refreshes the expiry on every hit but only republishes after Timeout/4,
	// so a busy client does not flood the mirror channel.
	published time.Time
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
	_  [40]byte // keep neighbouring shard locks off one cache line
}

// Table is the persistence table: key -> Record, sharded for concurrency.
// All methods are safe for concurrent use.
type Table struct {
	seed    maphash.Seed
	shards  [numShards]shard
	n       atomic.Int64 // entries in the table
	limit   atomic.Int64 // maximum entries, 0 = unlimited
	refused atomic.Uint64
	hub     events.Hub[Record]
}

// NewTable returns an empty, unlimited table.
func NewTable() *Table {
	t := &Table{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*entry)
	}
	return t
}

// SetMaxEntries bounds the number of records (0 = unlimited, the default).
// When the table is full, new keys are refused (and counted by Refused) while
// existing records are still refreshed and replaced; this is HAProxy's
// "nopurge" behaviour and keeps an address-spraying client (one record per
// IPv6 /128) from exhausting memory. The limit is approximate under
// concurrent inserts (it may be exceeded by the number of concurrent callers).
func (t *Table) SetMaxEntries(n int) {
	if n < 0 {
		n = 0
	}
	t.limit.Store(int64(n))
}

// MaxEntries is the bound SetMaxEntries set (0: unlimited).
func (t *Table) MaxEntries() int { return int(t.limit.Load()) }

// Get returns the record for key as it is, expired or not, without
// refreshing it (Lookup is the proxy's read; Get is for tools and the HA
// mirror).
func (t *Table) Get(key string) (Record, bool) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return Record{}, false
	}
	return e.rec, true
}

// Refused is how many new records were not stored because the table was full.
func (t *Table) Refused() uint64 { return t.refused.Load() }

func (t *Table) shard(key string) *shard {
	return &t.shards[maphash.String(t.seed, key)&(numShards-1)]
}

// full reports whether a new key may not be inserted.
func (t *Table) full() bool {
	l := t.limit.Load()
	return l > 0 && t.n.Load() >= l
}

// Events is the stream of changes: Created, Updated (replaced or refreshed)
// and Expired (timed out or deleted).
func (t *Table) Events() *events.Hub[Record] { return &t.hub }

// Follow is a gap-free "snapshot, then subscribe": it subscribes to the
// table's events (queue of buf) first and copies every record keep accepts
// second, so every change is either in the snapshot, or in the
// subscription, or both. Applying the snapshot and then the events in
// order gives the table's state: events repeat at most what the snapshot
// already holds, and for any one key they come in the order they happened
// (a key's events are published under its shard lock). A subscriber that
// sees its Dropped count rise must Follow again.
func (t *Table) Follow(buf int, keep func(Record) bool) ([]Record, *events.Subscription[Record]) {
	sub := t.hub.Subscribe(buf)
	var snap []Record
	t.Range(func(r Record) bool {
		if keep(r) {
			snap = append(snap, r)
		}
		return true
	})
	return snap, sub
}

// Len is the number of records, including expired ones not yet swept.
func (t *Table) Len() int { return int(t.n.Load()) }

// Lookup returns the record for key if it exists and has not expired at now.
// A hit extends the record's life to now+Timeout (F5 and HAProxy both count
// the timeout from the last use). The refreshed expiry is published as an
// Updated event at most once per Timeout/4 per record, so a mirrored copy may
// expire up to Timeout/4 earlier than the original; that is the price of
// keeping the mirror channel quiet. An expired record found here is removed
// (Expired event) rather than waiting for the next Sweep.
func (t *Table) Lookup(key string, now time.Time) (Record, bool) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return Record{}, false
	}
	if e.rec.expired(now) {
		delete(s.m, key)
		t.n.Add(-1)
		t.hub.Publish(events.Expired, e.rec)
		return Record{}, false
	}
	t.refreshLocked(e, now)
	return e.rec, true
}

// refreshLocked extends e's life from now and publishes the new expiry if the
// last published one is older than a quarter of the timeout.
func (t *Table) refreshLocked(e *entry, now time.Time) {
	adopted := e.rec.Origin != ""
	e.rec.Origin = ""
	if e.rec.Timeout <= 0 {
		if adopted {
			t.hub.Publish(events.Updated, e.rec)
		}
		return
	}
	e.rec.Expires = now.Add(e.rec.Timeout)
	if adopted || now.Sub(e.published) >= e.rec.Timeout/4 {
		e.published = now
		t.hub.Publish(events.Updated, e.rec)
	}
}

// Store creates or replaces the record r.Key (Created or Updated event). It is
// the primitive the HA mirror and administrative tools use; profiles go
// through Profile.Record, which also avoids republishing unchanged records.
// If r.Expires is zero, r.Timeout > 0 and r.Created is set, Expires is
// computed as Created+Timeout. An empty key is ignored.
func (t *Table) Store(r Record) {
	if r.Key == "" {
		return
	}
	if r.Expires.IsZero() && r.Timeout > 0 && !r.Created.IsZero() {
		r.Expires = r.Created.Add(r.Timeout)
	}
	s := t.shard(r.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[r.Key]; ok {
		e.rec = r
		e.published = r.Created
		t.hub.Publish(events.Updated, r)
		return
	}
	if t.full() {
		t.refused.Add(1)
		return
	}
	s.m[r.Key] = &entry{rec: r, published: r.Created}
	t.n.Add(1)
	t.hub.Publish(events.Created, r)
}

// upsert is what profiles use after the proxy has chosen a member: if the key
// already maps to the same pool and member and has not expired, only its
// expiry is refreshed (with the same rate-limited publishing as Lookup);
// otherwise r replaces it (a new or expired key is Created, a changed member
// is Updated). r.Created and r.Expires are set from now.
func (t *Table) upsert(r Record, now time.Time) {
	s := t.shard(r.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Created = now
	if r.Timeout > 0 {
		r.Expires = now.Add(r.Timeout)
	} else {
		r.Expires = time.Time{}
	}
	e, ok := s.m[r.Key]
	switch {
	case ok && !e.rec.expired(now) && e.rec.Pool == r.Pool && e.rec.Member == r.Member:
		t.refreshLocked(e, now)
	case ok && !e.rec.expired(now):
		e.rec = r
		e.published = now
		t.hub.Publish(events.Updated, r)
	case ok: // expired but not yet swept: the old record ends, a new one starts
		t.hub.Publish(events.Expired, e.rec)
		e.rec = r
		e.published = now
		t.hub.Publish(events.Created, r)
	default:
		if t.full() {
			t.refused.Add(1)
			return
		}
		s.m[r.Key] = &entry{rec: r, published: now}
		t.n.Add(1)
		t.hub.Publish(events.Created, r)
	}
}

// Delete removes key if present (Expired event) and reports whether it was
// there (F5: delete ltm persistence persist-records).
func (t *Table) Delete(key string) bool {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return false
	}
	delete(s.m, key)
	t.n.Add(-1)
	t.hub.Publish(events.Expired, e.rec)
	return true
}

// Range calls fn with a copy of every record until fn returns false. Each
// shard is copied under its lock and fn runs without any lock held, so fn may
// use the table. Records that expired but have not been swept are included
// (their Expires is in the past).
func (t *Table) Range(fn func(Record) bool) {
	var buf []Record
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		buf = buf[:0]
		for _, e := range s.m {
			buf = append(buf, e.rec)
		}
		s.mu.Unlock()
		for _, r := range buf {
			if !fn(r) {
				return
			}
		}
	}
}

// Sweep removes every record expired at now, publishing an Expired event for
// each, and returns how many it removed.
func (t *Table) Sweep(now time.Time) int {
	removed := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.rec.expired(now) {
				delete(s.m, k)
				t.n.Add(-1)
				removed++
				t.hub.Publish(events.Expired, e.rec)
			}
		}
		s.mu.Unlock()
	}
	return removed
}

// Run sweeps the table every interval (DefaultSweepInterval if every <= 0)
// until ctx is done.
func (t *Table) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultSweepInterval
	}
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.Sweep(now)
		}
	}
}
