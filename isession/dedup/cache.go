package dedup

import (
	"crypto/aes"
	"crypto/cipher"
)

// key identifies a chunk: its GMAC tag (see Key).
type key [16]byte

// Key is the secret that keys the chunk hash of one direction of one
// tunnel connection. The Encoder's end draws it at random and tells the
// peer's Decoder (inside TLS); nobody else knows it.
//
// A chunk's key is its GMAC (NIST SP 800-38D: GHASH under H = AES_K(0),
// the chunk as authenticated data, a fixed nonce): a polynomial universal
// hash. For any two different chunks chosen without knowledge of K, the
// keys collide with probability at most (blocks+1)/2^128 (blocks: the
// longer one's 16-byte blocks, at most 65,537 here). So a client or a
// server cannot make one chunk stand for another, which is what an
// unkeyed fast hash would allow; and it runs at memory speed (7.7 GB/s
// with AES-NI and carry-less multiply, against 1.6 GB/s for SHA-256 with
// SHA-NI) where every chunk of every byte must be hashed.
type Key [16]byte

// hasher computes chunk keys under one Key.
type hasher struct {
	gcm   cipher.AEAD
	nonce [12]byte
	tag   []byte // scratch, cap 16
}

func newHasher(k Key) *hasher {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return &hasher{gcm: g, tag: make([]byte, 0, 16)}
}

func (h *hasher) keyOf(chunk []byte) (k key) {
	copy(k[:], h.gcm.Seal(h.tag[:0], h.nonce[:], nil, chunk))
	return k
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
