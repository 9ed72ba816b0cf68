package dedup

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// model restates the Decoder's documented behaviour as plainly as
// possible, for differential tests: an LRU kept in a slice, payloads parsed
// into a list of ops first.
type model struct {
	budget  int64
	epoch   uint8
	entries []modelEntry // most recently used first
}

type modelEntry struct {
	k    key
	data []byte
}

func newModel(budget int64) *model { return &model{budget: budget} }

func (m *model) find(k key) int {
	return slices.IndexFunc(m.entries, func(e modelEntry) bool { return e.k == k })
}

func (m *model) toFront(i int) {
	c := m.entries[i]
	m.entries = slices.Insert(slices.Delete(m.entries, i, i+1), 0, c)
}

func (m *model) used() (u int64) {
	for _, e := range m.entries {
		u += int64(len(e.data)) + entryOverhead
	}
	return u
}

func (m *model) insert(chunk []byte) {
	if len(chunk) < MinCache || int64(len(chunk))+entryOverhead > m.budget {
		return
	}
	k := keyOf(chunk)
	if i := m.find(k); i >= 0 {
		m.toFront(i)
		return
	}
	m.entries = slices.Insert(m.entries, 0, modelEntry{k, bytes.Clone(chunk)})
	for m.used() > m.budget {
		m.entries = m.entries[:len(m.entries)-1]
	}
}

func (m *model) decode(p []byte, maxOut int) ([]byte, error) {
	out, err := m.try(p, max(maxOut, 0))
	if err != nil && (len(p) == 0 || p[0] == m.epoch) {
		m.entries = nil
		m.epoch++
	}
	return out, err
}

func (m *model) try(p []byte, maxOut int) ([]byte, error) {
	if len(p) == 0 {
		return nil, ErrCorrupt
	}
	type op struct {
		ref     bool
		k       key
		literal []byte
	}
	var ops []op
	for q := p[1:]; len(q) > 0; {
		switch {
		case q[0] == 0 && len(q) > 1:
			n, w := binary.Uvarint(q[1:])
			if w <= 0 || n > uint64(len(q)-1-w) {
				return nil, ErrCorrupt
			}
			ops = append(ops, op{literal: q[1+w : 1+w+int(n)]})
			q = q[1+w+int(n):]
		case q[0] == 1 && len(q) >= 17:
			ops = append(ops, op{ref: true, k: key(q[1:17])})
			q = q[17:]
		default:
			return nil, ErrCorrupt
		}
	}
	stale := p[0] != m.epoch
	literals := 0
	for _, o := range ops {
		if o.ref && stale {
			return nil, ErrStale
		}
		literals += len(o.literal)
	}
	if literals > maxOut {
		return nil, ErrTooLarge
	}
	var out []byte
	for _, o := range ops {
		chunk := o.literal
		if o.ref {
			i := m.find(o.k)
			if i < 0 {
				return nil, ErrDiverged
			}
			m.toFront(i)
			chunk = m.entries[0].data
		} else if !stale {
			m.insert(chunk)
		}
		if len(out)+len(chunk) > maxOut {
			return nil, ErrTooLarge
		}
		out = append(out, chunk...)
	}
	return out, nil
}

// check fails unless d is in the model's state.
func (m *model) check(t testing.TB, d *Decoder) {
	t.Helper()
	keys, used := cacheState(d.cache)
	if d.Epoch() != m.epoch || used != m.used() || len(keys) != len(m.entries) {
		t.Fatalf("decoder: epoch %d, %d entries, %d bytes; model: epoch %d, %d entries, %d bytes",
			d.Epoch(), len(keys), used, m.epoch, len(m.entries), m.used())
	}
	for i, k := range keys {
		if m.entries[i].k != k || !bytes.Equal(d.cache.m[k].data, m.entries[i].data) {
			t.Fatalf("entry %d differs from the model's", i)
		}
	}
}
