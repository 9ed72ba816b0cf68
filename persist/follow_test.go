package persist

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
)

// TestFollowIsGapFree replays a snapshot and the events after it while
// writers change the table concurrently; the copy must end equal to the
// table.
func TestFollowIsGapFree(t *testing.T) {
	tb := NewTable()
	now := time.Now()
	member := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1000+i%7))
	}
	for i := 0; i < 2000; i++ {
		tb.Store(Record{Key: fmt.Sprint("k", i), Member: member(i), Created: now, Timeout: time.Hour})
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < 3000; i++ {
				k := fmt.Sprint("k", (i*7+w)%4000)
				if i%5 == 0 {
					tb.Delete(k)
				} else {
					tb.Store(Record{Key: k, Member: member(i + w), Created: now, Timeout: time.Hour})
				}
			}
		}()
	}
	close(start)
	snap, sub := tb.Follow(1<<20, func(Record) bool { return true })
	wg.Wait()
	cp := map[string]Record{}
	for _, r := range snap {
		cp[r.Key] = r
	}
	var last uint64
	for drained := false; !drained; {
		select {
		case ev := <-sub.C:
			if ev.Seq == 0 {
				t.Fatal("event without a sequence number")
			}
			last = max(last, ev.Seq)
			if ev.Kind == events.Expired {
				delete(cp, ev.Record.Key)
			} else {
				cp[ev.Record.Key] = ev.Record
			}
		default:
			drained = true
		}
	}
	sub.Close()
	if sub.Dropped() != 0 {
		t.Fatalf("dropped %d events", sub.Dropped())
	}
	if last != tb.Events().Seq() {
		t.Errorf("last event seq %d, hub at %d", last, tb.Events().Seq())
	}
	n := 0
	tb.Range(func(r Record) bool {
		n++
		if c, ok := cp[r.Key]; !ok || c.Member != r.Member {
			t.Errorf("%s: copy has %v (present %v), table %v", r.Key, c.Member, ok, r.Member)
		}
		return true
	})
	if n != len(cp) {
		t.Errorf("table has %d records, the copy %d", n, len(cp))
	}
}

// TestLocalUseAdoptsMirroredRecord: a record written by the mirror carries
// its origin until this device uses it; the use publishes it at once.
func TestLocalUseAdoptsMirroredRecord(t *testing.T) {
	tb := NewTable()
	now := time.Now()
	tb.Store(Record{Key: "k", Member: netip.MustParseAddrPort("10.0.0.1:80"), Created: now, Timeout: time.Hour, Origin: "b"})
	sub := tb.Events().Subscribe(4)
	defer sub.Close()
	r, ok := tb.Lookup("k", now.Add(time.Second))
	if !ok || r.Origin != "" {
		t.Fatalf("lookup: %+v %v", r, ok)
	}
	select {
	case ev := <-sub.C:
		if ev.Kind != events.Updated || ev.Record.Origin != "" {
			t.Errorf("event %+v", ev)
		}
	default:
		t.Error("adopting a mirrored record published nothing (refresh is otherwise rate-limited)")
	}
}
