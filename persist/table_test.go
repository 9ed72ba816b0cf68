package persist

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
	"go.uber.org/goleak"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(key string, member string, timeout time.Duration) Record {
	return Record{
		Key:     key,
		Type:    TypeSourceAddr,
		Value:   key,
		Profile: "p",
		Virtual: "vs",
		Pool:    "web",
		Member:  netip.MustParseAddrPort(member),
		Created: t0,
		Timeout: timeout,
	}
}

// drain returns the events queued on s without waiting.
func drain[T any](s *events.Subscription[T]) []events.Event[T] {
	var out []events.Event[T]
	for {
		select {
		case ev := <-s.C:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func kinds[T any](evs []events.Event[T]) []events.Kind {
	out := make([]events.Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

func equalKinds(a, b []events.Kind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStoreLookupDelete(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	sub := tb.Events().Subscribe(16)
	defer sub.Close()

	tb.Store(rec("a", "10.0.0.1:80", time.Minute))
	if tb.Len() != 1 {
		t.Fatalf("Len = %d, want 1", tb.Len())
	}
	r, ok := tb.Lookup("a", t0.Add(time.Second))
	if !ok || r.Member != netip.MustParseAddrPort("10.0.0.1:80") {
		t.Fatalf("Lookup = %+v, %v", r, ok)
	}
	if _, ok := tb.Lookup("b", t0); ok {
		t.Fatal("Lookup of a missing key succeeded")
	}
	// Replace: same key, other member -> Updated.
	tb.Store(rec("a", "10.0.0.2:80", time.Minute))
	if tb.Len() != 1 {
		t.Fatalf("Len after replace = %d, want 1", tb.Len())
	}
	if !tb.Delete("a") {
		t.Fatal("Delete of a present key reported false")
	}
	if tb.Delete("a") { // idempotent, no second event
		t.Fatal("second Delete reported true")
	}
	if tb.Len() != 0 {
		t.Fatalf("Len after delete = %d", tb.Len())
	}
	got := drain(sub)
	want := []events.Kind{events.Created, events.Updated, events.Expired}
	if !equalKinds(kinds(got), want) {
		t.Fatalf("events = %v, want %v", kinds(got), want)
	}
	if got[1].Record.Member.String() != "10.0.0.2:80" || got[2].Record.Key != "a" {
		t.Fatalf("event records wrong: %+v", got)
	}
	// Expires was derived from Created + Timeout.
	if !got[0].Record.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Expires = %v, want %v", got[0].Record.Expires, t0.Add(time.Minute))
	}
}

func TestLookupExpiryAndRefresh(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	sub := tb.Events().Subscribe(64)
	defer sub.Close()
	const timeout = 100 * time.Second
	tb.Store(rec("k", "10.0.0.1:80", timeout))
	drain(sub)

	// A hit shortly after creation refreshes the expiry without an event
	// (less than Timeout/4 since the last publication).
	r, ok := tb.Lookup("k", t0.Add(10*time.Second))
	if !ok {
		t.Fatal("miss before expiry")
	}
	if !r.Expires.Equal(t0.Add(110 * time.Second)) {
		t.Fatalf("Expires = %v, want created+10s+timeout", r.Expires)
	}
	if evs := drain(sub); len(evs) != 0 {
		t.Fatalf("refresh within Timeout/4 published %v", kinds(evs))
	}
	// At 30s (>= 25s since the Store) the refresh is published once.
	tb.Lookup("k", t0.Add(30*time.Second))
	tb.Lookup("k", t0.Add(31*time.Second))
	evs := drain(sub)
	if !equalKinds(kinds(evs), []events.Kind{events.Updated}) {
		t.Fatalf("events = %v, want one Updated", kinds(evs))
	}
	if !evs[0].Record.Expires.Equal(t0.Add(130 * time.Second)) {
		t.Fatalf("published Expires = %v", evs[0].Record.Expires)
	}
	// The last hit was at 31s, so the record lives until 131s, not 100s.
	if _, ok := tb.Lookup("k", t0.Add(120*time.Second)); !ok {
		t.Fatal("refreshed record expired at its original expiry")
	}
	// Exactly at expiry it is gone, removed with an Expired event.
	if _, ok := tb.Lookup("k", t0.Add(220*time.Second)); ok {
		t.Fatal("expired record returned")
	}
	if tb.Len() != 0 {
		t.Fatalf("expired record not removed by Lookup, Len=%d", tb.Len())
	}
	evs = drain(sub)
	if k := kinds(evs); len(k) == 0 || k[len(k)-1] != events.Expired {
		t.Fatalf("events = %v, want ... Expired", k)
	}
}

func TestNoTimeoutNeverExpires(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	tb.Store(rec("k", "10.0.0.1:80", 0))
	if n := tb.Sweep(t0.Add(1000 * time.Hour)); n != 0 {
		t.Fatalf("Sweep removed %d timeless records", n)
	}
	if _, ok := tb.Lookup("k", t0.Add(1000*time.Hour)); !ok {
		t.Fatal("timeless record missing")
	}
}

func TestSweep(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	for i := 0; i < 200; i++ {
		timeout := 10 * time.Second
		if i%2 == 1 {
			timeout = time.Hour
		}
		tb.Store(rec(fmt.Sprintf("k%d", i), "10.0.0.1:80", timeout))
	}
	sub := tb.Events().Subscribe(1000)
	defer sub.Close()
	if n := tb.Sweep(t0.Add(5 * time.Second)); n != 0 {
		t.Fatalf("early Sweep removed %d", n)
	}
	if n := tb.Sweep(t0.Add(10 * time.Second)); n != 100 {
		t.Fatalf("Sweep removed %d, want 100", n)
	}
	if tb.Len() != 100 {
		t.Fatalf("Len = %d, want 100", tb.Len())
	}
	evs := drain(sub)
	if len(evs) != 100 {
		t.Fatalf("%d events, want 100", len(evs))
	}
	for _, e := range evs {
		if e.Kind != events.Expired || e.Record.Timeout != 10*time.Second {
			t.Fatalf("unexpected event %v %+v", e.Kind, e.Record)
		}
	}
	n := 0
	tb.Range(func(r Record) bool {
		if r.Timeout != time.Hour {
			t.Errorf("survivor with timeout %v", r.Timeout)
		}
		n++
		return true
	})
	if n != 100 {
		t.Fatalf("Range saw %d, want 100", n)
	}
	// Range stops when fn returns false.
	n = 0
	tb.Range(func(Record) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("Range did not stop: %d calls", n)
	}
}

func TestUpsert(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	sub := tb.Events().Subscribe(64)
	defer sub.Close()
	m1 := netip.MustParseAddrPort("10.0.0.1:80")
	m2 := netip.MustParseAddrPort("10.0.0.2:80")
	r := Record{Key: "k", Pool: "web", Member: m1, Timeout: 40 * time.Second}

	tb.upsert(r, t0)                     // Created
	tb.upsert(r, t0.Add(time.Second))    // same member, refresh, quiet
	tb.upsert(r, t0.Add(11*time.Second)) // >= Timeout/4 since publication: Updated
	r.Member = m2
	tb.upsert(r, t0.Add(12*time.Second)) // different member: Updated
	tb.upsert(r, t0.Add(100*time.Second))
	got := kinds(drain(sub))
	want := []events.Kind{events.Created, events.Updated, events.Updated, events.Expired, events.Created}
	if !equalKinds(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	cur, ok := tb.Lookup("k", t0.Add(100*time.Second))
	if !ok || cur.Member != m2 || !cur.Created.Equal(t0.Add(100*time.Second)) {
		t.Fatalf("record after re-create = %+v %v", cur, ok)
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}
}

func TestMaxEntries(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	tb.SetMaxEntries(3)
	for i := 0; i < 5; i++ {
		tb.Store(rec(fmt.Sprintf("k%d", i), "10.0.0.1:80", time.Minute))
	}
	if tb.Len() != 3 || tb.Refused() != 2 {
		t.Fatalf("Len=%d Refused=%d, want 3 and 2", tb.Len(), tb.Refused())
	}
	// Replacing an existing key still works when full.
	tb.Store(rec("k0", "10.0.0.9:80", time.Minute))
	if r, ok := tb.Lookup("k0", t0); !ok || r.Member.String() != "10.0.0.9:80" {
		t.Fatalf("replace when full failed: %+v %v", r, ok)
	}
	tb.Delete("k1")
	tb.upsert(Record{Key: "new", Member: netip.MustParseAddrPort("10.0.0.1:80"), Timeout: time.Minute}, t0)
	if _, ok := tb.Lookup("new", t0); !ok {
		t.Fatal("insert after delete refused")
	}
}

func TestRecordJSON(t *testing.T) {
	t.Parallel()
	r := rec("p|*|web|source_addr|10.1.0.0", "[2001:db8::1]:443", 3*time.Minute)
	r.Expires = t0.Add(3 * time.Minute)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != r {
		t.Fatalf("JSON round trip changed the record:\n%+v\n%+v\n%s", r, back, b)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"key", "type", "value", "profile", "virtual", "pool", "member", "created", "expires", "timeout_ns"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
}

func TestConcurrentStoreLookup(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	sub := tb.Events().Subscribe(8) // a slow subscriber must not block anyone
	defer sub.Close()
	var wg sync.WaitGroup
	const workers, keys = 8, 200
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := fmt.Sprintf("k%d", (i*7+w)%keys)
				now := t0.Add(time.Duration(i) * time.Millisecond)
				switch i % 5 {
				case 0:
					tb.Store(rec(k, fmt.Sprintf("10.0.0.%d:80", w+1), time.Minute))
				case 1:
					tb.upsert(rec(k, "10.0.0.1:80", time.Minute), now)
				case 2:
					if i%50 == 2 {
						tb.Delete(k)
					}
				case 3:
					tb.Range(func(Record) bool { return true })
				default:
					if r, ok := tb.Lookup(k, now); ok && r.Key != k {
						t.Errorf("Lookup(%q) returned %q", k, r.Key)
					}
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			tb.Sweep(t0.Add(time.Duration(i) * time.Second))
		}
	}()
	wg.Wait()
	n := 0
	tb.Range(func(Record) bool { n++; return true })
	if n != tb.Len() {
		t.Fatalf("Len()=%d but Range saw %d", tb.Len(), n)
	}
}

func TestRunSweepsUntilCancelled(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tb := NewTable()
	// Already expired relative to the wall clock.
	r := rec("old", "10.0.0.1:80", time.Second)
	r.Created = time.Now().Add(-time.Hour)
	tb.Store(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx, 5*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for tb.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not sweep the expired record")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func BenchmarkLookupHit(b *testing.B) {
	tb := NewTable()
	for i := 0; i < 1024; i++ {
		tb.Store(rec(fmt.Sprintf("k%d", i), "10.0.0.1:80", time.Hour))
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tb.Lookup(keys[i&1023], t0)
			i++
		}
	})
}
