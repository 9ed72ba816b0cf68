package pool

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReloadCarriesMemberState(t *testing.T) {
	t.Parallel()
	var logs logBuf
	cfg1 := Config{Name: "web", Method: MethodRatio, Members: members(3), Monitored: true,
		Passive: PassiveConfig{Enabled: true, Failures: 1, Retry: time.Hour}}
	cfg1.Members[2].State = Disabled
	p1 := New(cfg1, nil, logs.logger())
	m1, m2, m3 := p1.Member(addr(1)), p1.Member(addr(2)), p1.Member(addr(3))
	m1.Acquire()
	m1.Acquire()
	m1.AddRequest()
	m1.SetHealth(false, "monitor down")
	m2.SetState(Disabled, "api: maintenance") // runtime change, config still says enabled
	m3.ReportFailure("reset")                 // passively down

	// Reload: member 1 gets a new ratio and limit, member 2's config is
	// untouched, member 3's configured state changes, member 4 is new and
	// the pool loses its monitors and passive detection.
	cfg2 := Config{Name: "web", Method: MethodLeastConnections, Members: members(4)}
	cfg2.Members[0].Ratio = 5
	cfg2.Members[0].ConnLimit = 10
	cfg2.Members[2].State = Enabled
	p2 := New(cfg2, p1, logs.logger())

	if p2.Member(addr(1)) != m1 || p2.Member(addr(2)) != m2 || p2.Member(addr(3)) != m3 {
		t.Fatal("reload replaced *Member of kept addresses")
	}
	if m1.Active() != 2 || m1.Stats().Requests != 1 || m1.Stats().Total != 2 {
		t.Fatalf("counters lost: %+v", m1.Stats())
	}
	if m1.Ratio() != 5 || m1.ConnLimit() != 10 {
		t.Fatalf("config not updated: ratio %d limit %d", m1.Ratio(), m1.ConnLimit())
	}
	if m2.State() != Disabled {
		t.Fatal("API state change lost on a reload that did not touch the member")
	}
	if m3.State() != Enabled {
		t.Fatal("configured state change not applied on reload")
	}
	if h := m1.Stats().Health; h != "unchecked" {
		t.Fatalf("monitors removed but health still %q", h)
	}
	if !m3.Available() {
		t.Fatal("passive detection removed but member still passively down")
	}
	if m1.PoolName() != "web" || p2.Len() != 4 || p2.Member(addr(4)) == nil {
		t.Fatal("new pool incomplete")
	}

	// The old plan keeps working on the shared members; the limit is the newest.
	for range 8 {
		if !m1.Acquire() {
			t.Fatal("Acquire under new limit failed early")
		}
	}
	if m1.Acquire() {
		t.Fatal("new connection limit 10 not enforced")
	}
	if _, err := p1.Pick(Hint{}); err != nil {
		t.Fatalf("old pool Pick: %v", err)
	}

	// A second reload that changes nothing keeps the API state.
	p3 := New(cfg2, p2, logs.logger())
	if p3.Member(addr(2)).State() != Disabled {
		t.Fatal("API state lost on second reload")
	}
	var reloadLogs int
	for _, r := range logs.records(t, "member status changed") {
		if r["reason"] == "configuration reload" {
			reloadLogs++
		}
	}
	if reloadLogs != 1 {
		t.Fatalf("%d 'configuration reload' state changes logged, want 1 (member 3)", reloadLogs)
	}
}

// TestConcurrentPickRelease hammers Pick/Release from many goroutines,
// with health and state flapping, and checks limits are never exceeded
// and every slot comes back.
func TestConcurrentPickRelease(t *testing.T) {
	t.Parallel()
	for _, method := range Methods() {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			const limit = 3
			cfg := Config{Method: method, Members: members(4), Monitored: true, SlowRamp: time.Millisecond, MinActiveMembers: 2,
				Passive: PassiveConfig{Enabled: true, Failures: 5, Interval: time.Second, Retry: time.Millisecond}}
			for i := range cfg.Members {
				cfg.Members[i].ConnLimit = limit
				cfg.Members[i].Ratio = i + 1
				cfg.Members[i].Priority = i % 2
			}
			p := testPool(t, cfg, nil, nil)
			// A second plan shares the members, as after a reload.
			p2 := testPool(t, cfg, nil, p)
			var over atomic.Int64
			var picks atomic.Int64
			var wg sync.WaitGroup
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pp := p
					if g%2 == 1 {
						pp = p2
					}
					key := []byte{byte(g), 0}
					for i := range 2000 {
						key[1] = byte(i)
						m, err := pp.Pick(Hint{Key: key})
						if err != nil {
							if !errors.Is(err, ErrAllBusy) && !errors.Is(err, ErrNoMember) {
								t.Errorf("Pick: %v", err)
							}
							continue
						}
						picks.Add(1)
						if a := m.Active(); a > limit {
							over.Add(1)
						}
						m.ObserveLatency(time.Duration(i%7) * time.Millisecond)
						if i%50 == 0 {
							m.ReportFailure("test")
						} else {
							m.ReportSuccess()
						}
						m.Release()
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ms := p.Members()
				for i := range 300 {
					m := ms[i%len(ms)]
					m.SetHealth(i%3 != 0, "flap")
					m.SetState(State(i%2), "flap")
					_ = p.Stats()
				}
				for _, m := range ms {
					m.SetHealth(true, "done")
					m.SetState(Enabled, "done")
				}
			}()
			wg.Wait()
			if over.Load() != 0 {
				t.Fatalf("connection limit exceeded %d times", over.Load())
			}
			if picks.Load() == 0 {
				t.Fatal("no successful picks")
			}
			for _, m := range p.Members() {
				if m.Active() != 0 {
					t.Fatalf("%v has %d active after all releases", m, m.Active())
				}
			}
		})
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation check")
	}
	for _, method := range Methods() {
		t.Run(method, func(t *testing.T) {
			cfg := Config{Method: method, Members: members(8), SlowRamp: time.Hour, MinActiveMembers: 3}
			for i := range cfg.Members {
				cfg.Members[i].Ratio = i + 1
				cfg.Members[i].Priority = i % 3
			}
			p := testPool(t, cfg, nil, nil)
			p.Members()[1].SetState(Disabled, "x")
			p.Members()[1].SetState(Enabled, "x") // ramping
			h := Hint{Key: []byte("203.0.113.7")}
			m, _ := p.Pick(h) // builds the Maglev table
			m.Release()
			allocs := testing.AllocsPerRun(1000, func() {
				m, err := p.Pick(h)
				if err != nil {
					t.Fatal(err)
				}
				m.Release()
			})
			if allocs != 0 {
				t.Fatalf("Pick allocates %.1f times per call", allocs)
			}
		})
	}
}

func BenchmarkPick(b *testing.B) {
	for _, method := range Methods() {
		for _, n := range []int{4, 32} {
			b.Run(method+"/"+strconv.Itoa(n), func(b *testing.B) {
				cfg := Config{Method: method, Members: members(n)}
				for i := range cfg.Members {
					cfg.Members[i].Ratio = 1 + i%3
				}
				p := testPool(b, cfg, nil, nil)
				h := Hint{Key: []byte("203.0.113.7:51234")}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					h.Key[len(h.Key)-1] = byte(i)
					m, err := p.Pick(h)
					if err != nil {
						b.Fatal(err)
					}
					m.Release()
				}
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, method := range Methods() {
		b.Run(method, func(b *testing.B) {
			p := testPool(b, Config{Method: method, Members: members(8)}, nil, nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				h := Hint{Key: []byte{1, 2, 3, 4}}
				var i byte
				for pb.Next() {
					i++
					h.Key[3] = i
					m, err := p.Pick(h)
					if err != nil {
						b.Fatal(err)
					}
					m.Release()
				}
			})
		})
	}
}
