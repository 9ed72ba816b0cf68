package mirror

import (
	"fmt"
	"sync"
	"time"
)

// Shadow is a mirrored connection as the standby holds it: enough to
// rebuild both sockets and go on relaying after a failover.
type Shadow struct {
	ID    uint64
	Setup ConnSetup
	// Streams are the two directions (ToServer, ToClient).
	Streams [2]ShadowStream
	// Final is set for a planned handover: the active froze the connection
	// and sent everything, so Acked is exact and Timestamps were read then.
	Final      bool
	FinalAt    time.Time
	Timestamps [2]uint32 // client, server socket TSval at FinalAt
	// Sent is, per direction, how far the stream went out to its
	// receiving peer (Final only; otherwise all of it may have).
	Sent [2]int64
	// HalfClosed: a side sent its FIN before the failover. The connection
	// cannot go on (TCP repair restores established sockets only); the
	// device that takes over resets both sides, so that neither peer is
	// left waiting on a half-open connection.
	HalfClosed bool
	FinDir     int // the direction whose sender sent the FIN (relayed on)
}

// SentEnd is how far direction dir may have gone out to its peer: the
// restored socket must count at least that much as sent, or the peer's
// acknowledgements would be for data it never sent, and the kernel drops
// segments that carry them.
func (s *Shadow) SentEnd(dir int) int64 {
	if s.Final {
		return min(max(s.Sent[dir], s.Streams[dir].Base), s.Streams[dir].End())
	}
	return s.Streams[dir].End()
}

// ShadowStream is one direction of a shadow: the relayed bytes from Base
// (the first the receiving peer may not have) to End (everything read from
// the sending peer and mirrored).
type ShadowStream struct {
	Base int64
	Data []byte // bytes Base..End
}

// End is the offset after the last mirrored byte.
func (s *ShadowStream) End() int64 { return s.Base + int64(len(s.Data)) }

// shadows is one traffic group's shadow table (standby side).
type shadows struct {
	mu    sync.Mutex
	conns map[uint64]*Shadow
	bytes int64
	// from is the stream the shadows came from: a new stream from the
	// peer replaces them all (its connections were lost with the old one).
	from uint64

	received, dropped, restored uint64
}

func newShadows() *shadows { return &shadows{conns: map[uint64]*Shadow{}} }

// reset forgets every shadow: a new stream began.
func (t *shadows) reset(stream uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped += uint64(len(t.conns))
	t.conns = map[uint64]*Shadow{}
	t.bytes = 0
	t.from = stream
}

// apply applies one connection frame; an error ends the stream.
func (t *shadows) apply(stream uint64, f *frame, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stream != t.from {
		return fmt.Errorf("a newer mirroring stream from the peer replaced this one")
	}
	switch f.typ {
	case frameConnOpen:
		if _, dup := t.conns[f.id]; dup {
			return fmt.Errorf("%w: connection %d opened twice", errMalformed, f.id)
		}
		t.received++
		if len(t.conns) >= MaxShadowConns {
			t.dropped++
			return nil
		}
		t.conns[f.id] = &Shadow{ID: f.id, Setup: *f.setup}
	case frameConnData:
		s := t.conns[f.id]
		if s == nil {
			return nil // dropped for the limits, or closed
		}
		st := &s.Streams[f.dir]
		if int64(f.offset) != st.End() {
			// Bytes missing or repeated: this shadow cannot be trusted.
			t.dropLocked(s)
			return nil
		}
		if t.bytes+int64(len(f.data)) > MaxShadowBytes {
			t.dropLocked(s)
			return nil
		}
		st.Data = append(st.Data, f.data...)
		t.bytes += int64(len(f.data))
		t.trim(st, int64(f.acked[0]))
	case frameConnHalf:
		if s := t.conns[f.id]; s != nil {
			s.HalfClosed, s.FinDir = true, int(f.dir)
		}
	case frameConnClose:
		if s := t.conns[f.id]; s != nil {
			t.bytes -= int64(len(s.Streams[0].Data) + len(s.Streams[1].Data))
			delete(t.conns, f.id)
		}
	case frameConnFinal:
		s := t.conns[f.id]
		if s == nil {
			return nil
		}
		for d := range s.Streams {
			if int64(f.acked[d]) > s.Streams[d].End() || int64(f.acked[d]) < s.Streams[d].Base || int64(f.sent[d]) > s.Streams[d].End() {
				t.dropLocked(s) // acknowledged bytes it never mirrored
				return nil
			}
			t.trim(&s.Streams[d], int64(f.acked[d]))
		}
		s.Final, s.FinalAt, s.Timestamps = true, now, f.ts
		s.Sent = [2]int64{int64(f.sent[0]), int64(f.sent[1])}
	}
	return nil
}

// trim drops the bytes the receiving peer acknowledged (they are never
// needed again), keeping the slice's memory bounded.
func (t *shadows) trim(st *ShadowStream, acked int64) {
	n := acked - st.Base
	if n <= 0 {
		return
	}
	n = min(n, int64(len(st.Data)))
	t.bytes -= n
	rest := st.Data[n:]
	if len(rest) == 0 {
		st.Data = nil
	} else if cap(st.Data) > 2*len(rest)+4096 {
		st.Data = append([]byte(nil), rest...)
	} else {
		st.Data = rest
	}
	st.Base += n
}

func (t *shadows) dropLocked(s *Shadow) {
	t.bytes -= int64(len(s.Streams[0].Data) + len(s.Streams[1].Data))
	delete(t.conns, s.ID)
	t.dropped++
}

// take removes and returns every shadow (the group goes active here).
func (t *shadows) take() []*Shadow {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*Shadow, 0, len(t.conns))
	for _, s := range t.conns {
		out = append(out, s)
	}
	t.conns = map[uint64]*Shadow{}
	t.bytes = 0
	t.restored += uint64(len(out))
	return out
}

func (t *shadows) stats() (n int, received, dropped, restored uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns), t.received, t.dropped, t.restored
}

// TakeShadows returns the connections mirrored to this device for group
// and forgets them: the group is going active here and they are restored
// now, or never.
func (m *Mirror) TakeShadows(group string) []*Shadow {
	g := m.groups[group]
	if g == nil {
		return nil
	}
	return g.shadows.take()
}
