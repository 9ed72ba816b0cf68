package ha

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The heartbeat wire format, version 1. All integers are big-endian.
//
//	magic "FH" | version 1 | flags 0
//	sender      name8 (length byte, then 1..63 bytes)
//	incarnation uint64   the sender's start time (Unix ns): a restart is a new one
//	seq         uint64   per incarnation, +1 per heartbeat (every path)
//	path        uint8    index of the HA path it was sent on
//	groups      uint8 count, then per traffic group:
//	            name8 | state uint8 (0 standby, 1 active) | flags uint8 (bit 0: hold)
//	            | generation uint64 | handoff name8 (0..63)
//	requests    uint8 count, then per operator failover request:
//	            group name8 | target name8 (0..63) | id uint64
//	MAC         16 bytes, added by the Sealer (ha/trust) over everything before it
//
// A name8 is a length byte and that many bytes of a device or traffic group
// name. Decode is strict: trailing bytes, unknown versions, non-zero flags
// and over-long names are refused.
const (
	wireVersion  = 1
	maxName      = 63
	maxGroups    = 32 // also the configuration's limit on traffic groups
	maxRequests  = 8
	maxHeartbeat = 4 + 1 + maxName + 8 + 8 + 1 + 1 + maxGroups*(1+maxName+1+1+8+1+maxName) + 1 + maxRequests*(1+maxName+1+maxName+8)
)

// Group states in a heartbeat.
const (
	stateStandby = 0
	stateActive  = 1
)

// heartbeat is one decoded heartbeat (before or after the MAC).
type heartbeat struct {
	Sender      string
	Incarnation uint64
	Seq         uint64 // the sender's round: the same on every path, increasing per incarnation
	Path        uint8
	Groups      []groupClaim
	Requests    []failoverRequest
}

// groupClaim is what the sender says about one traffic group.
type groupClaim struct {
	Name       string
	Active     bool
	Hold       bool   // the sender will not take the group (operator moved it away)
	Generation uint64 // the sender's generation for the group while active; the highest it saw otherwise
	Handoff    string // when releasing: the device the sender hands the group to
}

// failoverRequest is an operator's `fulcrum failover` issued on the sender
// for a group the sender may not hold: the active device acts on it.
type failoverRequest struct {
	Group  string
	Target string // "" : the next device in HA order
	ID     uint64
}

var errHeartbeat = errors.New("malformed heartbeat")

func appendName(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// marshal appends the encoded heartbeat (without MAC) to b.
func (h *heartbeat) marshal(b []byte) ([]byte, error) {
	if len(h.Sender) == 0 || len(h.Sender) > maxName || len(h.Groups) > maxGroups || len(h.Requests) > maxRequests {
		return nil, fmt.Errorf("heartbeat does not fit the format (%d groups, %d requests)", len(h.Groups), len(h.Requests))
	}
	b = append(b, 'F', 'H', wireVersion, 0)
	b = appendName(b, h.Sender)
	b = binary.BigEndian.AppendUint64(b, h.Incarnation)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = append(b, h.Path, byte(len(h.Groups)))
	for _, g := range h.Groups {
		if len(g.Name) == 0 || len(g.Name) > maxName || len(g.Handoff) > maxName {
			return nil, fmt.Errorf("traffic group name %q does not fit the format", g.Name)
		}
		b = appendName(b, g.Name)
		st, fl := byte(stateStandby), byte(0)
		if g.Active {
			st = stateActive
		}
		if g.Hold {
			fl = 1
		}
		b = append(b, st, fl)
		b = binary.BigEndian.AppendUint64(b, g.Generation)
		b = appendName(b, g.Handoff)
	}
	b = append(b, byte(len(h.Requests)))
	for _, r := range h.Requests {
		if len(r.Group) == 0 || len(r.Group) > maxName || len(r.Target) > maxName {
			return nil, fmt.Errorf("failover request for %q does not fit the format", r.Group)
		}
		b = appendName(b, r.Group)
		b = appendName(b, r.Target)
		b = binary.BigEndian.AppendUint64(b, r.ID)
	}
	return b, nil
}

// reader decodes with bounds checks; the first failure sticks.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) name(min int) string {
	n := int(r.byte())
	if r.bad || n < min || n > maxName || len(r.b) < n {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			r.bad = true
			return ""
		}
	}
	return s
}

// unmarshal decodes a heartbeat whose MAC has been checked and removed.
func unmarshal(b []byte) (*heartbeat, error) {
	if len(b) < 4 || b[0] != 'F' || b[1] != 'H' {
		return nil, errHeartbeat
	}
	if b[2] != wireVersion || b[3] != 0 {
		return nil, fmt.Errorf("%w: version %d flags %#x", errHeartbeat, b[2], b[3])
	}
	r := &reader{b: b[4:]}
	h := &heartbeat{Sender: r.name(1), Incarnation: r.u64(), Seq: r.u64(), Path: r.byte()}
	ng := int(r.byte())
	if ng > maxGroups {
		return nil, errHeartbeat
	}
	for i := 0; i < ng && !r.bad; i++ {
		g := groupClaim{Name: r.name(1)}
		st, fl := r.byte(), r.byte()
		if st > stateActive || fl > 1 {
			r.bad = true
		}
		g.Active, g.Hold = st == stateActive, fl == 1
		g.Generation = r.u64()
		g.Handoff = r.name(0)
		h.Groups = append(h.Groups, g)
	}
	nr := int(r.byte())
	if nr > maxRequests {
		return nil, errHeartbeat
	}
	for i := 0; i < nr && !r.bad; i++ {
		h.Requests = append(h.Requests, failoverRequest{Group: r.name(1), Target: r.name(0), ID: r.u64()})
	}
	if r.bad || len(r.b) != 0 {
		return nil, errHeartbeat
	}
	return h, nil
}
