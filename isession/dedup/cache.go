package dedup

import "crypto/sha256"

// key identifies a chunk: the first 16 bytes of its SHA-256.
type key [16]byte

func keyOf(chunk []byte) key {
	s := sha256.Sum256(chunk)
	return key(s[:16])
}

// entryOverhead is what each cache entry costs beyond its chunk's length,
// so that a budget bounds memory even when the chunks are short. It is
// part of the lock-step rule: both ends must charge the same.
const entryOverhead = 64

// cache is an LRU set of chunks bounded by the sum of their costs (length
// plus entryOverhead). The Encoder's entries have no data, the Decoder's
// do; either way the set of keys, their order and the evictions depend
// only on the sequence of calls, which is what keeps two caches identical.
type cache struct {
	budget int64
	used   int64
	m      map[key]*entry
	head   entry // sentinel of a circular list: head.next is the most recent
}

type entry struct {
	k          key
	size       int
	data       []byte // nil in an Encoder's cache
	prev, next *entry
}

func newCache(budget int64) *cache {
	c := &cache{budget: max(budget, 0), m: make(map[key]*entry)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *cache) unlink(e *entry) { e.prev.next, e.next.prev = e.next, e.prev }

func (c *cache) pushFront(e *entry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}

// get returns k's entry, moved to the front, or nil.
func (c *cache) get(k key) *entry {
	e := c.m[k]
	if e != nil && c.head.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	return e
}

// cacheable reports whether a chunk of size bytes is cached when seen as
// a literal.
func (c *cache) cacheable(size int) bool {
	return size >= MinCache && int64(size)+entryOverhead <= c.budget
}

// add puts k at the front, unless the chunk is not cacheable, and then
// evicts from the back while over budget. If k is present it is only
// moved to the front (an Encoder never adds a key it holds; a Decoder
// might be told to by a misbehaving peer). data, if not nil, is kept
// as is: the caller passes a copy it owns.
func (c *cache) add(k key, size int, data []byte) {
	if !c.cacheable(size) || c.get(k) != nil {
		return
	}
	e := &entry{k: k, size: size, data: data}
	c.m[k] = e
	c.pushFront(e)
	c.used += int64(size) + entryOverhead
	for c.used > c.budget {
		old := c.head.prev
		c.unlink(old)
		delete(c.m, old.k)
		c.used -= int64(old.size) + entryOverhead
	}
}

func (c *cache) clear() {
	clear(c.m)
	c.head.prev, c.head.next = &c.head, &c.head
	c.used = 0
}
