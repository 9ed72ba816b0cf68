// Package events is the small publish/subscribe hub that the connection table
// and the persistence table use to announce changes (created, updated,
// expired). Consumers are the API, metrics and, later, the HA mirror channel.
//
// A Hub never blocks its publisher: each subscriber has a bounded queue and a
// subscriber that falls behind loses events and sees its Dropped count rise,
// which it must treat as "resynchronise from the table" (as HAProxy peers do).
package events

import (
	"sync"
	"sync/atomic"
)

// Kind says what happened to a record.
type Kind uint8

const (
	Created Kind = iota + 1
	Updated
	Expired // removed: timed out, closed or deleted
)

func (k Kind) String() string {
	switch k {
	case Created:
		return "created"
	case Updated:
		return "updated"
	case Expired:
		return "expired"
	}
	return "unknown"
}

// Event is one change of one record.
type Event[T any] struct {
	Seq    uint64 // the hub's sequence number: unique, increasing in publishing order per publisher
	Kind   Kind
	Record T
}

// Subscription receives events on C until Close.
type Subscription[T any] struct {
	C       <-chan Event[T]
	c       chan Event[T]
	dropped atomic.Uint64
	hub     *Hub[T]
}

// Dropped is how many events this subscriber lost because its queue was full.
func (s *Subscription[T]) Dropped() uint64 { return s.dropped.Load() }

// Close stops delivery and closes C.
func (s *Subscription[T]) Close() { s.hub.remove(s) }

// Hub fans events out to subscribers. The zero value is ready to use.
type Hub[T any] struct {
	mu   sync.RWMutex
	subs []*Subscription[T]
	n    atomic.Int32 // len(subs), read without the lock on the hot path
	seq  atomic.Uint64
}

// Seq is the sequence number of the last event published to a subscriber.
func (h *Hub[T]) Seq() uint64 { return h.seq.Load() }

// Subscribe registers a subscriber with a queue of size buf (minimum 1).
func (h *Hub[T]) Subscribe(buf int) *Subscription[T] {
	if buf < 1 {
		buf = 1
	}
	c := make(chan Event[T], buf)
	s := &Subscription[T]{C: c, c: c, hub: h}
	h.mu.Lock()
	h.subs = append(h.subs, s)
	h.n.Store(int32(len(h.subs)))
	h.mu.Unlock()
	return s
}

// Active reports whether anyone listens; publishers may skip building events when not.
func (h *Hub[T]) Active() bool { return h.n.Load() > 0 }

// Publish delivers ev to every subscriber without blocking.
func (h *Hub[T]) Publish(kind Kind, rec T) {
	if h.n.Load() == 0 {
		return
	}
	ev := Event[T]{Seq: h.seq.Add(1), Kind: kind, Record: rec}
	h.mu.RLock()
	for _, s := range h.subs {
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
		}
	}
	h.mu.RUnlock()
}

func (h *Hub[T]) remove(s *Subscription[T]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.subs {
		if x == s {
			h.subs = append(h.subs[:i], h.subs[i+1:]...)
			h.n.Store(int32(len(h.subs)))
			close(s.c)
			return
		}
	}
}
