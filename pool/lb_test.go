package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestMethodNames(t *testing.T) {
	t.Parallel()
	for _, name := range Methods() {
		p := testPool(t, Config{Method: name, Members: members(1)}, nil, nil)
		if p.Method() != name {
			t.Errorf("Method() = %q, want %q", p.Method(), name)
		}
		if !ValidMethod(name) {
			t.Errorf("ValidMethod(%q) = false", name)
		}
	}
	if p := testPool(t, Config{Method: "", Members: members(1)}, nil, nil); p.Method() != MethodRoundRobin {
		t.Errorf("empty method = %q, want round-robin", p.Method())
	}
	if p := testPool(t, Config{Method: "least_connections", Members: members(1)}, nil, nil); p.Method() != MethodLeastConnections {
		t.Errorf("least_connections = %q", p.Method())
	}
	if ValidMethod("observed") {
		t.Error(`ValidMethod("observed") = true`)
	}
	if p := testPool(t, Config{Method: "observed", Members: members(1)}, nil, nil); p.Method() != MethodRoundRobin {
		t.Errorf("unknown method fell back to %q, want round-robin", p.Method())
	}
}

func TestRoundRobinRotatesIgnoringRatio(t *testing.T) {
	t.Parallel()
	cfg := Config{Method: MethodRoundRobin, Members: members(3)}
	cfg.Members[0].Ratio = 5
	p := testPool(t, cfg, nil, nil)
	var seq []int
	for range 9 {
		m, err := p.Pick(Hint{})
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, int(m.Addr().Addr().As4()[3]))
		m.Release()
	}
	want := []int{1, 2, 3, 1, 2, 3, 1, 2, 3}
	if fmt.Sprint(seq) != fmt.Sprint(want) {
		t.Fatalf("rotation = %v, want %v", seq, want)
	}

	// A member leaving the rotation does not disturb the order of the rest.
	p.Members()[1].SetState(Disabled, "test")
	seq = seq[:0]
	for range 4 {
		m, _ := p.Pick(Hint{})
		seq = append(seq, int(m.Addr().Addr().As4()[3]))
		m.Release()
	}
	if fmt.Sprint(seq) != "[1 3 1 3]" {
		t.Fatalf("rotation without member 2 = %v", seq)
	}
}

func TestRatioDistribution(t *testing.T) {
	t.Parallel()
	cfg := Config{Method: MethodRatio, Members: members(2)}
	cfg.Members[1].Ratio = 2
	p := testPool(t, cfg, nil, nil)
	got := pickRelease(t, p, 3000, Hint{})
	if s := share(got, addr(2)); !within(s, 2.0/3, 0.01) {
		t.Fatalf("ratio 1:2 gave %s (share of member 2 %.3f)", fmtCounts(got), s)
	}

	// Smooth: 5:1:1 interleaves instead of bursting.
	cfg = Config{Method: MethodRatio, Members: members(3)}
	cfg.Members[0].Ratio = 5
	p = testPool(t, cfg, nil, nil)
	var seq []int
	for range 7 {
		m, _ := p.Pick(Hint{})
		seq = append(seq, int(m.Addr().Addr().As4()[3]))
		m.Release()
	}
	if fmt.Sprint(seq) != "[1 1 2 1 3 1 1]" {
		t.Fatalf("5:1:1 sequence = %v, want nginx's smooth [1 1 2 1 3 1 1]", seq)
	}
}

func TestLeastConnections(t *testing.T) {
	t.Parallel()
	p := testPool(t, Config{Method: MethodLeastConnections, Members: members(2)}, nil, nil)
	busy := p.Member(addr(1))
	for range 5 {
		if !busy.Acquire() {
			t.Fatal("Acquire failed")
		}
	}
	got := pickHold(t, p, 5)
	if got[addr(2)] != 5 {
		t.Fatalf("with member 1 holding 5 connections, picks went %s; want all to idle member 2", fmtCounts(got))
	}
	// Now equal (5 and 5): ties share by rotation.
	got = pickRelease(t, p, 100, Hint{})
	if got[addr(1)] != 50 || got[addr(2)] != 50 {
		t.Fatalf("equal members shared %s, want 50/50", fmtCounts(got))
	}
	releaseAll(p)

	// Weighted: ratio 3:1 keeps active connections near 3:1.
	cfg := Config{Method: MethodLeastConnections, Members: members(2)}
	cfg.Members[0].Ratio = 3
	p = testPool(t, cfg, nil, nil)
	got = pickHold(t, p, 400)
	if got[addr(1)] < 295 || got[addr(1)] > 305 {
		t.Fatalf("weighted least connections 3:1 held %s", fmtCounts(got))
	}
}

func TestFastest(t *testing.T) {
	t.Parallel()
	p := testPool(t, Config{Method: MethodFastest, Members: members(3)}, nil, nil)
	ms := p.Members()
	ms[0].ObserveLatency(20 * time.Millisecond)
	ms[1].ObserveLatency(2 * time.Millisecond)

	// Member 3 has no sample and nothing in flight: it is probed first, once.
	m, err := p.Pick(Hint{})
	if err != nil || m != ms[2] {
		t.Fatalf("first pick = %v, %v; want the unsampled member %v", m, err, ms[2])
	}
	// While its probe runs, the fast member takes the traffic.
	got := pickRelease(t, p, 10, Hint{})
	if got[addr(2)] != 10 {
		t.Fatalf("while probing, picks went %s; want all to the 2ms member", fmtCounts(got))
	}
	ms[2].ObserveLatency(50 * time.Millisecond)
	m.Release()
	got = pickRelease(t, p, 10, Hint{})
	if got[addr(2)] != 10 {
		t.Fatalf("picks went %s; want all to the 2ms member", fmtCounts(got))
	}

	// Load counts: 2ms with 10 in flight (2×11=22) loses to 20ms idle (20).
	for range 10 {
		ms[1].Acquire()
	}
	if m, _ := p.Pick(Hint{}); m != ms[0] {
		t.Fatalf("pick = %v, want %v (fast member is loaded)", m, ms[0])
	}
}

func TestObserveLatencyEWMA(t *testing.T) {
	t.Parallel()
	p := testPool(t, Config{Members: members(1)}, nil, nil)
	m := p.Members()[0]
	m.ObserveLatency(80 * time.Millisecond)
	if got := m.Stats().LatencyEWMA; got != 80*time.Millisecond {
		t.Fatalf("first sample EWMA = %v", got)
	}
	m.ObserveLatency(0) // 0 counts as a (tiny) sample, never as "no sample"
	if got := m.Stats().LatencyEWMA; got != 70*time.Millisecond {
		t.Fatalf("EWMA after 0 sample = %v, want 70ms (1/8 weight)", got)
	}
}

func TestPowerOfTwo(t *testing.T) {
	t.Parallel()
	p := testPool(t, Config{Method: MethodPowerOfTwo, Members: members(4)}, nil, nil)
	got := pickHold(t, p, 400)
	for i := 1; i <= 4; i++ {
		if c := got[addr(i)]; c < 90 || c > 110 {
			t.Fatalf("p2c with held connections gave %s; want each near 100", fmtCounts(got))
		}
	}

	// Weighted by ratio: 1:3 holds connections near 1:3.
	cfg := Config{Method: MethodPowerOfTwo, Members: members(2)}
	cfg.Members[1].Ratio = 3
	p = testPool(t, cfg, nil, nil)
	got = pickHold(t, p, 400)
	if c := got[addr(2)]; c < 280 || c > 320 {
		t.Fatalf("p2c 1:3 gave %s", fmtCounts(got))
	}

	// A loaded member loses to an idle one whenever both are drawn.
	p = testPool(t, Config{Method: MethodPowerOfTwo, Members: members(2)}, nil, nil)
	for range 3 {
		p.Member(addr(1)).Acquire()
	}
	got = pickRelease(t, p, 200, Hint{})
	if got[addr(2)] != 200 {
		t.Fatalf("p2c with two members picked the loaded one: %s", fmtCounts(got))
	}
}

func key(i int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i)*2654435761)
	return b[:]
}

func TestConsistentHash(t *testing.T) {
	t.Parallel()
	const n, keys = 10, 20000
	p := testPool(t, Config{Method: MethodConsistentHash, Members: members(n)}, nil, nil)
	before := make([]netip.AddrPort, keys)
	for i := range keys {
		m, err := p.Pick(Hint{Key: key(i)})
		if err != nil {
			t.Fatal(err)
		}
		before[i] = m.Addr()
		m.Release()
	}
	// Same key, same member.
	for i := range 100 {
		m, _ := p.Pick(Hint{Key: key(i)})
		if m.Addr() != before[i] {
			t.Fatalf("key %d moved from %v to %v with no change", i, before[i], m.Addr())
		}
		m.Release()
	}
	// Roughly even spread.
	spread := map[netip.AddrPort]int{}
	for _, a := range before {
		spread[a]++
	}
	for i := 1; i <= n; i++ {
		if c := spread[addr(i)]; c < keys/n*8/10 || c > keys/n*12/10 {
			t.Fatalf("uneven spread %s", fmtCounts(spread))
		}
	}

	// Remove one member: all its keys move, and Maglev moves only a
	// sliver of the others' (the paper's "minimal disruption" is near,
	// not exactly, minimal), so about 1/N of all keys move.
	gone := addr(4)
	p.Member(gone).SetState(ForcedOffline, "test")
	moved, collateral := 0, 0
	for i := range keys {
		m, _ := p.Pick(Hint{Key: key(i)})
		if m.Addr() != before[i] {
			moved++
			if before[i] != gone {
				collateral++
			}
		}
		if m.Addr() == gone {
			t.Fatalf("key %d still maps to the removed member", i)
		}
		m.Release()
	}
	t.Logf("moved %d of %d keys, %d of them from surviving members", moved, keys, collateral)
	if f := float64(moved) / keys; !within(f, 1.0/n, 0.03) {
		t.Fatalf("%.3f of keys moved, want about %.3f", f, 1.0/n)
	}
	if f := float64(collateral) / keys; f > 0.02 {
		t.Fatalf("%.3f of all keys moved between surviving members, want < 0.02", f)
	}
	// It comes back: the original mapping is restored exactly.
	p.Member(gone).SetState(Enabled, "test")
	for i := range keys {
		m, _ := p.Pick(Hint{Key: key(i)})
		if m.Addr() != before[i] {
			t.Fatalf("key %d maps to %v after member returned, was %v", i, m.Addr(), before[i])
		}
		m.Release()
	}
}

func TestConsistentHashIndependentOfConfigOrder(t *testing.T) {
	t.Parallel()
	a := members(5)
	b := []MemberConfig{a[3], a[0], a[4], a[2], a[1]}
	pa := testPool(t, Config{Method: MethodConsistentHash, Members: a}, nil, nil)
	pb := testPool(t, Config{Method: MethodConsistentHash, Members: b}, nil, nil)
	for i := range 2000 {
		ma, _ := pa.Pick(Hint{Key: key(i)})
		mb, _ := pb.Pick(Hint{Key: key(i)})
		if ma.Addr() != mb.Addr() {
			t.Fatalf("key %d: %v vs %v with members in another order", i, ma.Addr(), mb.Addr())
		}
		ma.Release()
		mb.Release()
	}
}

func TestConsistentHashWeighted(t *testing.T) {
	t.Parallel()
	cfg := Config{Method: MethodConsistentHash, Members: members(2)}
	cfg.Members[1].Ratio = 3
	p := testPool(t, cfg, nil, nil)
	got := map[netip.AddrPort]int{}
	for i := range 20000 {
		m, _ := p.Pick(Hint{Key: key(i)})
		got[m.Addr()]++
		m.Release()
	}
	if s := share(got, addr(2)); !within(s, 0.75, 0.02) {
		t.Fatalf("ratio 1:3 hash spread %s (share %.3f)", fmtCounts(got), s)
	}
	// Table slots are exactly proportional too.
	slots := map[int32]int{}
	for _, mi := range p.mg.table {
		slots[mi]++
	}
	if !within(float64(slots[1])/maglevSize, 0.75, 0.001) {
		t.Fatalf("slots %v", slots)
	}
}

func TestConsistentHashNilKeyAndConnLimit(t *testing.T) {
	t.Parallel()
	cfg := Config{Method: MethodConsistentHash, Members: members(3)}
	for i := range cfg.Members {
		cfg.Members[i].ConnLimit = 1
	}
	p := testPool(t, cfg, nil, nil)

	// Nil key: round-robin.
	got := pickRelease(t, p, 30, Hint{})
	for i := 1; i <= 3; i++ {
		if got[addr(i)] != 10 {
			t.Fatalf("nil key gave %s, want round-robin 10 each", fmtCounts(got))
		}
	}

	// The key's member is full: the next member along the table takes it,
	// the same one every time, and the owner gets it back once free.
	k := []byte("client-42")
	owner, _ := p.Pick(Hint{Key: k})
	alt, err := p.Pick(Hint{Key: k})
	if err != nil || alt == owner {
		t.Fatalf("second pick = %v, %v; want another member", alt, err)
	}
	alt.Release()
	for range 5 {
		m, _ := p.Pick(Hint{Key: k})
		if m != alt {
			t.Fatalf("fallback moved from %v to %v", alt, m)
		}
		m.Release()
	}
	owner.Release()
	if m, _ := p.Pick(Hint{Key: k}); m != owner {
		t.Fatalf("after release got %v, want owner %v", m, owner)
	}
}

func TestConnLimitAndErrAllBusy(t *testing.T) {
	t.Parallel()
	for _, method := range Methods() {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Method: method, Members: members(3)}
			cfg.Members[0].ConnLimit = 1
			cfg.Members[1].ConnLimit = 2
			cfg.Members[2].State = Disabled
			p := testPool(t, cfg, nil, nil)
			h := Hint{Key: []byte("k")}
			var held []*Member
			for range 3 {
				m, err := p.Pick(h)
				if err != nil {
					t.Fatalf("Pick %d: %v", len(held), err)
				}
				held = append(held, m)
			}
			if _, err := p.Pick(h); !errors.Is(err, ErrAllBusy) {
				t.Fatalf("Pick at limits: %v, want ErrAllBusy", err)
			}
			if a, b := p.Member(addr(1)).Active(), p.Member(addr(2)).Active(); a != 1 || b != 2 {
				t.Fatalf("active = %d, %d; want 1, 2", a, b)
			}
			held[0].Release()
			m, err := p.Pick(h)
			if err != nil || m != held[0] {
				t.Fatalf("after release Pick = %v, %v; want %v", m, err, held[0])
			}
		})
	}
}

func TestErrNoMember(t *testing.T) {
	t.Parallel()
	for _, method := range Methods() {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			if _, err := testPool(t, Config{Method: method}, nil, nil).Pick(Hint{}); !errors.Is(err, ErrNoMember) {
				t.Fatalf("empty pool: %v, want ErrNoMember", err)
			}
			cfg := Config{Method: method, Members: members(3), Monitored: true}
			cfg.Members[0].State = ForcedOffline
			cfg.Members[1].State = Disabled
			p := testPool(t, cfg, nil, nil)
			p.Member(addr(3)).SetHealth(false, "test")
			if _, err := p.Pick(Hint{Key: []byte("k")}); !errors.Is(err, ErrNoMember) {
				t.Fatalf("nothing available: %v, want ErrNoMember", err)
			}
			if n := p.AvailableCount(); n != 0 {
				t.Fatalf("AvailableCount = %d", n)
			}
			if s := p.Stats(); s.Availability != "offline" || s.Available != 0 {
				t.Fatalf("Stats = %+v", s)
			}
		})
	}
}

func TestPriorityGroupActivation(t *testing.T) {
	t.Parallel()
	mk := func(minActive int) *Pool {
		cfg := Config{Method: MethodRoundRobin, Members: members(4), MinActiveMembers: minActive, Monitored: true}
		cfg.Members[0].Priority = 5
		cfg.Members[1].Priority = 10
		cfg.Members[2].Priority = 10
		cfg.Members[3].Priority = 1
		return testPool(t, cfg, nil, nil)
	}
	only := func(t *testing.T, got map[netip.AddrPort]int, want ...int) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("picks went to %s; want members %v", fmtCounts(got), want)
		}
		for _, w := range want {
			if got[addr(w)] == 0 {
				t.Fatalf("picks went to %s; want members %v", fmtCounts(got), want)
			}
		}
	}

	t.Run("off", func(t *testing.T) {
		only(t, pickRelease(t, mk(0), 40, Hint{}), 1, 2, 3, 4)
	})
	t.Run("highest group only", func(t *testing.T) {
		only(t, pickRelease(t, mk(2), 40, Hint{}), 2, 3)
	})
	t.Run("activate next group", func(t *testing.T) {
		p := mk(2)
		p.Member(addr(2)).SetHealth(false, "test")
		only(t, pickRelease(t, p, 40, Hint{}), 1, 3)
		p.Member(addr(1)).SetState(Disabled, "test")
		only(t, pickRelease(t, p, 40, Hint{}), 3, 4)
		p.Member(addr(2)).SetHealth(true, "test")
		only(t, pickRelease(t, p, 40, Hint{}), 2, 3)
	})
	t.Run("min larger than pool uses all", func(t *testing.T) {
		only(t, pickRelease(t, mk(9), 40, Hint{}), 1, 2, 3, 4)
	})
	t.Run("full group spills over", func(t *testing.T) {
		cfg := Config{Method: MethodLeastConnections, Members: members(3), MinActiveMembers: 1}
		cfg.Members[0].Priority = 10
		cfg.Members[0].ConnLimit = 2
		p := testPool(t, cfg, nil, nil)
		got := pickHold(t, p, 5)
		if got[addr(1)] != 2 || got[addr(2)]+got[addr(3)] != 3 {
			t.Fatalf("spill over gave %s", fmtCounts(got))
		}
	})
}

// A flow that failed to reach every member of the active priority group
// (not yet marked down) must reselect into the next group, not fail.
func TestPickExcludeSpillsIntoNextPriorityGroup(t *testing.T) {
	t.Parallel()
	for _, method := range []string{MethodRoundRobin, MethodLeastConnections} {
		cfg := Config{Name: "web", Method: method, Members: members(3), MinActiveMembers: 1}
		cfg.Members[0].Priority = 10
		cfg.Members[1].Priority = 10
		cfg.Members[2].Priority = 1
		p := New(cfg, nil, nil)
		var tried []*Member
		for range 2 {
			m, err := p.Pick(Hint{Exclude: tried})
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			if m.Priority() != 10 {
				t.Fatalf("%s: picked %s from the standby group while the active one had untried members", method, m)
			}
			m.Release()
			tried = append(tried, m)
		}
		m, err := p.Pick(Hint{Exclude: tried})
		if err != nil {
			t.Fatalf("%s: active group exhausted by failures, standby healthy: %v", method, err)
		}
		if m.Addr() != addr(3) {
			t.Fatalf("%s: picked %s, want the standby %s", method, m, addr(3))
		}
		m.Release()
		tried = append(tried, m)
		if _, err := p.Pick(Hint{Exclude: tried}); !errors.Is(err, ErrNoMember) {
			t.Fatalf("%s: every member excluded: got %v, want ErrNoMember", method, err)
		}
	}
}
