package persist

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Hash persistence is rendezvous (highest random weight) hashing: every
// member gets a score from the key and its own address, and the key goes to
// the best-scoring member that can take it. The scores depend on nothing but
// the key bytes and the member addresses (no seed, no table, no order), so
// every device with the same pool picks the same member and a failover needs
// nothing mirrored. A member that goes down only loses its own keys (each to
// that key's second-best member), and when it returns exactly those keys
// come back; nobody else's key moves.

// fnv64a is FNV-1a, 64 bit: fixed constants, the same on every device.
func fnv64a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

const fnvOffset = 14695981039346656037

// mix64 is the SplitMix64 finalizer: it spreads a 64-bit value's bits so
// that scores of nearby inputs are unrelated.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// memberHash hashes a member's address and port (IPv4 in its 4-byte form,
// so the score does not depend on how the address was written).
func memberHash(m netip.AddrPort) uint64 {
	a := m.Addr().Unmap().WithZone("")
	var buf [18]byte
	n := copy(buf[:], a.AsSlice())
	binary.BigEndian.PutUint16(buf[n:], m.Port())
	return fnv64a(fnvOffset, buf[:n+2])
}

// rendezvousScore is member m's score for the key hashed to kh.
func rendezvousScore(kh uint64, m netip.AddrPort) uint64 {
	return mix64(kh ^ mix64(memberHash(m)))
}

// HashRank returns the indexes of members in the order a hash profile
// prefers them for req, best first; ok=false when req carries no key (the
// header, cookie or parameter is absent) or the profile is not of type
// hash. The proxy gives the connection to the first member in this order
// that is available and not at its limit, so a member that is down is
// skipped and its keys fall to their next member.
func (p *Profile) HashRank(req *Request, members []netip.AddrPort) ([]int, bool) {
	if p.cfg.Type != TypeHash {
		return nil, false
	}
	v, ok := p.identity(req)
	if !ok {
		return nil, false
	}
	kh := fnv64a(fnvOffset, []byte(v))
	scores := make([]uint64, len(members))
	order := make([]int, len(members))
	for i, m := range members {
		scores[i] = rendezvousScore(kh, m)
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	return order, true
}
