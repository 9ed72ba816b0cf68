package pool

import (
	"slices"

	"github.com/cespare/xxhash/v2"
)

// maglevSize is the lookup table size: prime, as Maglev requires, and the
// size Envoy and Katran use. It bounds the imbalance between members to
// about N/65537 and makes a rebuild cost about a millisecond.
const maglevSize = 65537

// maglev is a weighted Maglev lookup table (Eisenbud et al., NSDI 2016)
// over the eligible members of a pool. Each member has a permutation of the
// table slots derived from its address alone; members take turns claiming
// their next free preferred slot, a member with ratio r taking r turns per
// cycle. Removing one of N members therefore moves only about 1/N of the
// keys, and two devices with the same member set build the same table.
type maglev struct {
	offset, skip []uint64 // per member index: the member's permutation
	rank         []int32  // per member index: position in address order
	table        []int32  // slot → member index; nil until first built
	built        []bool   // per member index: in the current table
	nBuilt       int
	// scratch for build
	set    []int32
	weight []int64
	next   []uint64
}

func newMaglev(members []*Member) *maglev {
	n := len(members)
	mg := &maglev{
		offset: make([]uint64, n),
		skip:   make([]uint64, n),
		rank:   make([]int32, n),
		built:  make([]bool, n),
		set:    make([]int32, 0, n),
		weight: make([]int64, 0, n),
		next:   make([]uint64, 0, n),
	}
	byAddr := make([]int32, n)
	for i, m := range members {
		byAddr[i] = int32(i)
		// Hash the textual address so the permutation is the same on every
		// device and in every release, whatever the in-memory layout.
		mg.offset[i] = xxhash.Sum64String("offset/"+m.str) % maglevSize
		mg.skip[i] = xxhash.Sum64String("skip/"+m.str)%(maglevSize-1) + 1
	}
	slices.SortFunc(byAddr, func(a, b int32) int { return members[a].addr.Compare(members[b].addr) })
	for r, i := range byAddr {
		mg.rank[i] = int32(r)
	}
	return mg
}

// stale reports whether the table was built for a different member set.
// Ratios are fixed for the life of a Pool, so the set is all that matters.
func (mg *maglev) stale(elig []int32) bool {
	if mg.table == nil || len(elig) != mg.nBuilt {
		return true
	}
	for _, mi := range elig {
		if !mg.built[mi] {
			return true
		}
	}
	return false
}

// build fills the table for the members in elig with the given ratios
// (indexed by member).
func (mg *maglev) build(elig []int32, ratio []int64) {
	if mg.table == nil {
		mg.table = make([]int32, maglevSize)
	}
	mg.set = append(mg.set[:0], elig...)
	slices.SortFunc(mg.set, func(a, b int32) int { return int(mg.rank[a] - mg.rank[b]) })
	clear(mg.built)
	mg.nBuilt = len(mg.set)
	mg.weight = mg.weight[:0]
	g, maxW := int64(0), int64(0)
	for _, mi := range mg.set {
		mg.built[mi] = true
		g = gcd(g, ratio[mi])
	}
	for _, mi := range mg.set {
		w := ratio[mi] / g
		mg.weight = append(mg.weight, w)
		maxW = max(maxW, w)
	}
	mg.next = mg.next[:0]
	for range mg.set {
		mg.next = append(mg.next, 0)
	}
	for i := range mg.table {
		mg.table[i] = -1
	}
	if len(mg.set) == 0 {
		return
	}
	// Turns are interleaved: in round k (1..maxW, repeating) every member
	// whose weight is at least k takes one turn. Each member gets its
	// weight's share of every cycle, and even a member with a tiny ratio
	// next to a huge one claims slots in the first round.
	filled := 0
	for k := int64(1); ; k++ {
		if k > maxW {
			k = 1
		}
		for j, mi := range mg.set {
			if mg.weight[j] < k {
				continue
			}
			off, skip := mg.offset[mi], mg.skip[mi]
			c := (off + mg.next[j]*skip) % maglevSize
			for mg.table[c] >= 0 {
				mg.next[j]++
				c = (off + mg.next[j]*skip) % maglevSize
			}
			mg.table[c] = mi
			mg.next[j]++
			filled++
			if filled == maglevSize {
				return
			}
		}
	}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// chooseHash maps key to a member through the Maglev table of the current
// eligible set, rebuilding it when that set changed. When the key's member
// is at its connection limit the table is walked forward to the next
// member that can take the connection, so the fallback is stable too.
func (p *Pool) chooseHash(key []byte) int {
	mg := p.mg
	if mg.stale(p.elig) {
		mg.build(p.elig, p.ratio)
	}
	slot := xxhash.Sum64(key) % maglevSize
	for range maglevSize {
		if k := p.candIdx[mg.table[slot]]; k >= 0 {
			return int(k)
		}
		slot++
		if slot == maglevSize {
			slot = 0
		}
	}
	return 0 // unreachable: every candidate owns at least one slot
}
