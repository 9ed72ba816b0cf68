package pool

import (
	"testing"
)

// Local members rank first inside their priority group: with priority
// group activation they take every new connection while one is up;
// remote ones serve when none is; locations carry over a reload.
func TestLocationRanksLocalFirst(t *testing.T) {
	cfg := Config{Members: members(3), MinActiveMembers: 1}
	p := testPool(t, cfg, nil, nil)
	a, b, c := p.Member(addr(1)), p.Member(addr(2)), p.Member(addr(3))
	if got := pickRelease(t, p, 9, Hint{}); len(got) != 3 {
		t.Fatalf("no locations: picks %v, want all three", got)
	}
	if !b.SetLocation(LocationLocal, "learned on eth1") || b.SetLocation(LocationLocal, "again") {
		t.Fatal("SetLocation reported no change, or a change twice")
	}
	a.SetLocation(LocationRemote, "learned on dc2")
	c.SetLocation(LocationRemote, "learned on dc2")
	if got := pickRelease(t, p, 9, Hint{}); got[addr(2)] != 9 {
		t.Fatalf("local member b: picks %v", got)
	}
	if s := b.Stats(); s.Location != "local" || s.LocationReason != "learned on eth1" {
		t.Errorf("stats %q %q", s.Location, s.LocationReason)
	}
	// b migrates; a comes back.
	b.SetLocation(LocationRemote, "learned on dc2")
	a.SetLocation(LocationLocal, "learned on eth1")
	if got := pickRelease(t, p, 9, Hint{}); got[addr(1)] != 9 {
		t.Fatalf("after the move: picks %v", got)
	}
	// No local member up: the remote ones serve.
	a.SetHealth(false, "monitor")
	if got := pickRelease(t, p, 10, Hint{}); got[addr(1)] != 0 || got[addr(2)] == 0 || got[addr(3)] == 0 {
		t.Fatalf("local member down: picks %v", got)
	}
	a.SetHealth(true, "monitor")
	// A reload keeps the members and their locations.
	p2 := testPool(t, cfg, nil, p)
	if got := pickRelease(t, p2, 6, Hint{}); got[addr(1)] != 6 {
		t.Fatalf("after reload: picks %v", got)
	}
	// Configured priority still comes first: a higher group of remote
	// members beats a lower local one.
	cfg3 := Config{Members: members(3), MinActiveMembers: 1}
	cfg3.Members[2].Priority = 5
	p3 := testPool(t, cfg3, nil, p2)
	if got := pickRelease(t, p3, 6, Hint{}); got[addr(3)] != 6 {
		t.Fatalf("priority 5 remote member: picks %v", got)
	}
}

// Without priority group activation locality changes nothing.
func TestLocationWithoutPriorityGroups(t *testing.T) {
	p := testPool(t, Config{Members: members(2)}, nil, nil)
	p.Member(addr(2)).SetLocation(LocationLocal, "x")
	if got := pickRelease(t, p, 10, Hint{}); got[addr(1)] != 5 || got[addr(2)] != 5 {
		t.Fatalf("picks %v", got)
	}
}
