package conntrack

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
	"go.uber.org/goleak"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func newEntry(idle time.Duration) *Entry {
	return &Entry{
		Virtual:     "vs_web",
		Proto:       "http",
		Client:      ap("192.0.2.10:50000"),
		VirtualAddr: ap("127.0.0.1:8080"),
		Created:     t0,
		IdleTimeout: idle,
	}
}

func drain(s *events.Subscription[Info]) []events.Event[Info] {
	var out []events.Event[Info]
	for {
		select {
		case ev := <-s.C:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func TestAddRemoveEvents(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	sub := tb.Events().Subscribe(16)
	defer sub.Close()

	e := newEntry(time.Minute)
	tb.Add(e, func() {})
	if e.ID == 0 {
		t.Fatal("Add did not assign an ID")
	}
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}
	if got, ok := tb.Get(e.ID); !ok || got != e {
		t.Fatalf("Get(%d) = %p %v", e.ID, got, ok)
	}
	e2 := newEntry(0)
	tb.Add(e2, nil)
	if e2.ID == e.ID {
		t.Fatal("duplicate IDs")
	}
	tb.Add(e2, nil) // second Add is a no-op

	e.SetServer("web", ap("10.0.0.254:40000"), ap("10.0.0.1:80"))
	e.AddIn(100)
	e.AddOut(2000)
	tb.Remove(e)
	tb.Remove(e) // idempotent
	if _, ok := tb.Get(e.ID); ok || tb.Len() != 1 {
		t.Fatalf("entry still present after Remove, Len=%d", tb.Len())
	}
	e.SetServer("web", ap("10.0.0.254:40001"), ap("10.0.0.2:80")) // after Remove: no event

	evs := drain(sub)
	want := []events.Kind{events.Created, events.Created, events.Updated, events.Expired}
	if len(evs) != len(want) {
		t.Fatalf("%d events %+v, want %v", len(evs), evs, want)
	}
	for i, k := range want {
		if evs[i].Kind != k {
			t.Fatalf("event %d = %v, want %v", i, evs[i].Kind, k)
		}
	}
	up := evs[2].Record
	if up.ID != e.ID || up.Pool != "web" || up.Server != "10.0.0.1:80" || up.ServerLocal != "10.0.0.254:40000" {
		t.Fatalf("Updated event %+v", up)
	}
	if ex := evs[3].Record; ex.BytesIn != 100 || ex.BytesOut != 2000 || ex.ID != e.ID {
		t.Fatalf("Expired event lacks final counters: %+v", ex)
	}
	if c := evs[0].Record; c.Server != "" || c.ServerLocal != "" || c.Client != "192.0.2.10:50000" {
		t.Fatalf("Created event %+v", c)
	}

	// Removing an entry that was never added is harmless.
	tb.Remove(newEntry(0))
	tb.Remove(nil)
	if tb.Len() != 1 {
		t.Fatalf("Len = %d", tb.Len())
	}
}

func TestAddFillsCreatedAndKeepsCallerID(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	e := &Entry{ID: 1000}
	before := time.Now()
	tb.Add(e, nil)
	if e.ID != 1000 || e.Created.Before(before) {
		t.Fatalf("ID %d Created %v", e.ID, e.Created)
	}
	// Automatic IDs continue above the caller's, and a collision gets a fresh ID.
	a := &Entry{}
	tb.Add(a, nil)
	if a.ID <= 1000 {
		t.Fatalf("automatic ID %d not above 1000", a.ID)
	}
	dup := &Entry{ID: 1000}
	tb.Add(dup, nil)
	if dup.ID == 1000 || tb.Len() != 3 {
		t.Fatalf("colliding ID kept (%d) or entry lost (Len %d)", dup.ID, tb.Len())
	}
	if got, _ := tb.Get(1000); got != e {
		t.Fatal("original entry displaced by a colliding ID")
	}
}

func TestNoEventsWithoutSubscribers(t *testing.T) {
	// Not parallel: AllocsPerRun measures the whole process.
	tb := NewTable()
	e := newEntry(0)
	allocs := testing.AllocsPerRun(100, func() {
		e.SetServer("web", ap("10.0.0.254:1"), ap("10.0.0.1:80"))
		e.AddIn(1)
	})
	tb.Add(e, nil)
	allocs2 := testing.AllocsPerRun(100, func() {
		e.SetServer("web", ap("10.0.0.254:1"), ap("10.0.0.1:80"))
		e.AddIn(1)
		e.Touch(t0)
	})
	if allocs != 0 || allocs2 != 0 {
		t.Fatalf("hot path allocates without subscribers: %v / %v", allocs, allocs2)
	}
}

func TestSnapshotAndCounters(t *testing.T) {
	t.Parallel()
	e := newEntry(5 * time.Minute)
	NewTable().Add(e, nil)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				e.AddIn(3)
				e.AddOut(5)
				e.AddIn(-1) // ignored, still touches
			}
		}()
	}
	wg.Wait()
	if e.BytesIn() != 12000 || e.BytesOut() != 20000 {
		t.Fatalf("counters in=%d out=%d", e.BytesIn(), e.BytesOut())
	}
	// AddIn/AddOut touched with the real clock, far after t0.
	if idle := e.Idle(time.Now()); idle > time.Minute {
		t.Fatalf("AddIn did not touch: idle %v", idle)
	}

	// A second entry driven by a fixed clock so that idle time is exact.
	f := newEntry(5 * time.Minute)
	NewTable().Add(f, nil)
	f.in.Store(12000)
	f.out.Store(20000)
	f.Touch(t0.Add(10 * time.Second))
	f.Touch(t0.Add(30 * time.Second))
	f.Touch(t0.Add(20 * time.Second)) // older than the last activity: ignored
	info := f.Snapshot(t0.Add(45 * time.Second))
	want := Info{
		ID: f.ID, Virtual: "vs_web", Proto: "http", Client: "192.0.2.10:50000", VirtualAddr: "127.0.0.1:8080",
		Created: t0, AgeSeconds: 45, IdleSeconds: 15, BytesIn: 12000, BytesOut: 20000, IdleTimeoutSeconds: 300,
	}
	if info != want {
		t.Fatalf("Snapshot =\n%+v\nwant\n%+v", info, want)
	}
	b, _ := json.Marshal(info)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"id", "virtual", "proto", "pool", "client", "virtual_addr", "server_local", "server",
		"created", "age_s", "idle_s", "bytes_in", "bytes_out", "idle_timeout_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if len(m) != 14 {
		t.Errorf("JSON has %d keys: %s", len(m), b)
	}
	// A clock before the last touch never gives negative idle or age.
	if s := f.Snapshot(t0.Add(-time.Hour)); s.IdleSeconds != 0 || s.AgeSeconds != 0 {
		t.Fatalf("negative clock: %+v", s)
	}
}

func TestReapCallsCloserOnce(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	var closed [3]atomic.Int32
	idle := newEntry(10 * time.Second)        // will be reaped
	busy := newEntry(10 * time.Second)        // touched recently
	forever := newEntry(0)                    // no idle timeout
	noCloser := newEntry(10 * time.Second)    // reaped by removal
	tb.Add(idle, func() { closed[0].Add(1) }) // the proxy would Remove later
	tb.Add(busy, func() { closed[1].Add(1) })
	tb.Add(forever, func() { closed[2].Add(1) })
	tb.Add(noCloser, nil)
	busy.Touch(t0.Add(55 * time.Second))

	if n := tb.Reap(t0.Add(10 * time.Second)); n != 0 {
		t.Fatalf("Reap at exactly the timeout reaped %d (must be idle longer)", n)
	}
	if n := tb.Reap(t0.Add(60 * time.Second)); n != 2 {
		t.Fatalf("Reap = %d, want 2", n)
	}
	if n := tb.Reap(t0.Add(120 * time.Second)); n != 1 { // busy is idle now; idle not again
		t.Fatalf("second Reap = %d, want 1", n)
	}
	if got := [3]int32{closed[0].Load(), closed[1].Load(), closed[2].Load()}; got != [3]int32{1, 1, 0} {
		t.Fatalf("closer calls = %v, want [1 1 0]", got)
	}
	if _, ok := tb.Get(noCloser.ID); ok {
		t.Fatal("entry without closer not removed")
	}
	if _, ok := tb.Get(idle.ID); !ok {
		t.Fatal("reaper removed an entry itself instead of leaving it to the proxy")
	}
	// A closer that removes its entry (what the proxy does) works from Reap.
	e := newEntry(time.Second)
	tb.Add(e, func() { tb.Remove(e) })
	tb.Reap(t0.Add(time.Hour))
	if _, ok := tb.Get(e.ID); ok {
		t.Fatal("closer's Remove did not take effect")
	}
}

// TestKill: the operator's reset (DELETE /api/v1/connections/{id}) runs the
// entry's closer exactly once, even when the reaper or shutdown races it,
// and says whether there was anything to close.
func TestKill(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	var closed atomic.Int32
	e := newEntry(10 * time.Second)
	tb.Add(e, func() { closed.Add(1); tb.Remove(e) })
	var otherClosed atomic.Int32
	other := newEntry(0) // never reaped: only a wrong Kill could close it
	tb.Add(other, func() { otherClosed.Add(1) })

	if tb.Kill(e.ID + 1000) {
		t.Fatal("Kill of an unknown id reported true")
	}
	if !tb.Kill(e.ID) {
		t.Fatal("Kill of a live connection reported false")
	}
	if closed.Load() != 1 {
		t.Fatalf("closer ran %d times, want 1", closed.Load())
	}
	if _, ok := tb.Get(e.ID); ok {
		t.Fatal("killed entry still in the table")
	}
	if tb.Kill(e.ID) {
		t.Fatal("second Kill reported true")
	}

	// A closer that has not removed its entry yet (the proxy removes it
	// when its goroutine ends) is not run twice by Kill, Reap or CloseAll.
	var slow atomic.Int32
	s := newEntry(time.Second)
	tb.Add(s, func() { slow.Add(1) })
	if !tb.Kill(s.ID) || tb.Kill(s.ID) {
		t.Fatal("Kill of a closing connection: want true then false")
	}
	tb.Reap(t0.Add(time.Hour))
	if otherClosed.Load() != 0 {
		t.Fatal("Kill closed the wrong connection")
	}
	tb.CloseAll()
	if slow.Load() != 1 {
		t.Fatalf("closer ran %d times, want 1", slow.Load())
	}
	// An entry added without a closer is removed directly.
	n := newEntry(0)
	tb.Add(n, nil)
	if !tb.Kill(n.ID) {
		t.Fatal("Kill of an entry without closer reported false")
	}
	if _, ok := tb.Get(n.ID); ok {
		t.Fatal("entry without closer not removed by Kill")
	}
}

func TestRangeAndGet(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	ids := map[uint64]bool{}
	for i := 0; i < 300; i++ {
		e := newEntry(0)
		tb.Add(e, nil)
		ids[e.ID] = true
	}
	seen := 0
	tb.Range(func(e *Entry) bool {
		if !ids[e.ID] {
			t.Errorf("unknown ID %d", e.ID)
		}
		tb.Remove(e) // allowed: no lock held
		seen++
		return true
	})
	if seen != 300 || tb.Len() != 0 {
		t.Fatalf("seen %d, Len %d", seen, tb.Len())
	}
	if _, ok := tb.Get(12345); ok {
		t.Fatal("Get of unknown ID succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	tb := NewTable()
	sub := tb.Events().Subscribe(4) // slow subscriber: events dropped, never blocking
	defer sub.Close()
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				e := &Entry{Virtual: "vs", Proto: "tcp", IdleTimeout: time.Duration(i%3) * time.Millisecond}
				tb.Add(e, func() { tb.Remove(e) })
				e.AddIn(int64(i))
				e.SetServer("p", ap("10.0.0.254:1000"), ap("10.0.0.1:80"))
				_ = e.Snapshot(time.Now())
				if i%2 == 0 {
					tb.Remove(e)
				}
			}
		}(w)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			tb.Reap(time.Now().Add(time.Second))
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			tb.Range(func(e *Entry) bool { _ = e.Snapshot(time.Now()); return true })
		}
	}()
	wg.Wait()
	n := 0
	tb.Range(func(*Entry) bool { n++; return true })
	if n != tb.Len() {
		t.Fatalf("Len %d, Range %d", tb.Len(), n)
	}
	tb.Reap(time.Now().Add(time.Hour)) // reap the remaining ones with a timeout
	tb.Range(func(e *Entry) bool {
		if e.IdleTimeout > 0 {
			t.Errorf("entry %d with idle timeout survived the reaper", e.ID)
		}
		return true
	})
}

func TestRunReapsUntilCancelled(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tb := NewTable()
	e := &Entry{IdleTimeout: time.Millisecond}
	var closed atomic.Int32
	tb.Add(e, func() { closed.Add(1); tb.Remove(e) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx, 5*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for tb.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not reap the idle entry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if closed.Load() != 1 {
		t.Fatalf("closer called %d times", closed.Load())
	}
}

func BenchmarkTouch(b *testing.B) {
	e := newEntry(time.Minute)
	NewTable().Add(e, nil)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Touch(now)
		}
	})
}

func BenchmarkAddIn(b *testing.B) {
	e := newEntry(time.Minute)
	NewTable().Add(e, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.AddIn(1500)
	}
}

func BenchmarkAddRemove(b *testing.B) {
	tb := NewTable()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := &Entry{Virtual: "vs", Proto: "tcp", Created: t0}
			tb.Add(e, nil)
			tb.Remove(e)
		}
	})
}
