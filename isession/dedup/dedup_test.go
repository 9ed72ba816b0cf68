package dedup

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// text returns n bytes of text-like data: lines of words drawn from a
// small vocabulary, so that it repeats at every scale.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	words := strings.Fields("the quick brown fox jumps over a lazy dog load balancer tunnel stream chunk " +
		"cache epoch frame header GET POST HTTP/1.1 200 OK Content-Length: Host: fulcrum example.com " +
		"{ } [ ] \"id\": \"name\": true false null 0 1 2 3 42 1024 <div> </div> <p> </p>")
	var b bytes.Buffer
	for b.Len() < n {
		for range 1 + r.IntN(12) {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// versions returns count copies of a random base of size bytes, each a
// few random overwrites, insertions and deletions away from the previous.
func versions(seed uint64, size, count int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 3))
	v := random(seed, size)
	out := [][]byte{v}
	for range count - 1 {
		v = bytes.Clone(v)
		for range 4 {
			at := r.IntN(len(v))
			switch r.IntN(3) {
			case 0:
				copy(v[at:], random(r.Uint64(), 1+r.IntN(200)))
			case 1:
				v = append(v[:at], append(random(r.Uint64(), 1+r.IntN(300)), v[at:]...)...)
			case 2:
				v = append(v[:at], v[min(len(v), at+1+r.IntN(300)):]...)
			}
		}
		out = append(out, v)
	}
	return out
}

// flat returns n copies of a byte in which p finds no cut point (n <= p.Max:
// one chunk), the i-th such byte value: distinct chunks for distinct i.
func flat(p Params, n, i int) []byte {
	for v := range 256 {
		b := bytes.Repeat([]byte{byte(v)}, n)
		if p.Cut(b) == n {
			if i == 0 {
				return b
			}
			i--
		}
	}
	panic("not enough flat chunks")
}

// testKey is the Key of the tests' Encoders and Decoders.
func testKey() Key { return Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} }

// keyOf is a chunk's key under testKey.
func keyOf(chunk []byte) key { return newHasher(testKey()).keyOf(chunk) }

func pair(t testing.TB, p Params, budget int64) (*Encoder, *Decoder) {
	t.Helper()
	e, err := NewEncoder(p, budget, testKey())
	if err != nil {
		t.Fatal(err)
	}
	return e, NewDecoder(budget, testKey())
}

// cacheState lists a cache's keys from the most recently used, and its
// cost.
func cacheState(c *cache) ([]key, int64) {
	var keys []key
	var used int64
	for e := c.head.next; e != &c.head; e = e.next {
		keys = append(keys, e.k)
		used += int64(e.size) + entryOverhead
		if c.m[e.k] != e {
			panic("cache map and list disagree")
		}
	}
	if len(keys) != len(c.m) || used != c.used {
		panic("cache map, list and cost disagree")
	}
	return keys, used
}

// checkLockStep fails unless e's and d's caches hold the same keys in the
// same order, within budget, and every chunk the decoder holds hashes to
// its key.
func checkLockStep(t testing.TB, e *Encoder, d *Decoder) {
	t.Helper()
	ek, eu := cacheState(e.cache)
	dk, du := cacheState(d.cache)
	if eu != du || eu > e.cache.budget || len(ek) != len(dk) {
		t.Fatalf("caches differ: encoder %d entries %d bytes, decoder %d entries %d bytes, budget %d",
			len(ek), eu, len(dk), du, e.cache.budget)
	}
	for i := range ek {
		if ek[i] != dk[i] {
			t.Fatalf("caches differ at entry %d", i)
		}
		if c := d.cache.m[dk[i]]; keyOf(c.data) != c.k || len(c.data) != c.size || e.cache.m[ek[i]].size != c.size {
			t.Fatalf("entry %d holds the wrong chunk", i)
		}
	}
}

// traffic describes how a tunnel's writer is fed.
type traffic struct {
	write      int // applications write up to this many bytes at a time
	finalOneIn int // the writer passes final at random one frame in this many
}

var (
	// Bulk: applications keep the queues long; frames are mostly full.
	bulk = traffic{write: 1 << 20, finalOneIn: 16}
	// Application-limited: queues drain, so most frames are final.
	appLimited = traffic{write: 32 << 10, finalOneIn: 4}
)

// transfer sends datas as concurrent streams of one tunnel direction, the
// way the tunnel's writer does: applications write in random pieces; the
// writer takes a frame from a random stream's queue, mostly a full one
// (128 KiB) and sometimes a shorter one (a flow-control window), final
// when it takes all that is queued or at random (callers may pass final
// whenever they like); when Encode consumes nothing with final false it
// encodes again with final true. Every payload is decoded at once, with a
// limit of exactly what was consumed, and checked. It returns the encoded
// bytes per stream.
func transfer(t testing.TB, e *Encoder, d *Decoder, datas [][]byte, seed uint64, tr traffic) []int {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 5))
	written := make([]int, len(datas))  // what the application queued
	consumed := make([]int, len(datas)) // what the writer sent
	wire := make([]int, len(datas))
	prefix := []byte("frame header")
	var live []int
	for {
		live = live[:0]
		for i := range datas {
			if consumed[i] < len(datas[i]) {
				live = append(live, i)
			}
		}
		if len(live) == 0 {
			return wire
		}
		i := live[r.IntN(len(live))]
		if written[i] == consumed[i] || r.IntN(2) == 0 {
			written[i] = min(len(datas[i]), written[i]+1+r.IntN(tr.write))
		}
		queue := datas[i][consumed[i]:written[i]]
		frame := 128 << 10
		if r.IntN(4) == 0 {
			frame = 1 + r.IntN(frame)
		}
		n := min(len(queue), frame)
		final := n == len(queue) || r.IntN(tr.finalOneIn) == 0
		enc, c := e.Encode(prefix, queue[:n], final)
		if c == 0 && !final {
			if len(enc) != len(prefix) {
				t.Fatalf("nothing consumed, %d bytes appended", len(enc)-len(prefix))
			}
			enc, c = e.Encode(prefix, queue[:n], true)
		}
		if c > n || (final && c != n) || c == 0 {
			t.Fatalf("consumed %d of %d (final %v)", c, n, final)
		}
		enc = enc[len(prefix):]
		if len(enc) > c+c/64+5 {
			t.Fatalf("%d bytes encoded to %d, beyond the bound", c, len(enc))
		}
		out, err := d.Decode(prefix, enc, c)
		if err != nil {
			t.Fatalf("stream %d at %d: %v", i, consumed[i], err)
		}
		if !bytes.Equal(out[len(prefix):], queue[:c]) {
			t.Fatalf("stream %d at %d: wrong bytes", i, consumed[i])
		}
		consumed[i] += c
		wire[i] += len(enc)
	}
}

func sum(xs []int) (s int) {
	for _, x := range xs {
		s += x
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	mixed := append(append(random(10, 300<<10), make([]byte, 200<<10)...), text(11, 300<<10)...)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"random", random(12, 3<<20)},
		{"zeros", make([]byte, 3<<20)},
		{"text", text(13, 3<<20)},
		{"mixed", bytes.Repeat(mixed, 3)},
		{"short", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"one byte", []byte{0}},
	} {
		for _, p := range testParams[:3] {
			for _, tr := range []traffic{bulk, appLimited} {
				t.Run(fmt.Sprintf("%s/%d/%d", c.name, p.Avg, tr.write), func(t *testing.T) {
					e, d := pair(t, p, 4<<20)
					// Three streams of the same data at once, then again.
					datas := [][]byte{c.data, c.data, c.data[len(c.data)/3:]}
					wire := transfer(t, e, d, datas, 1, tr)
					checkLockStep(t, e, d)
					wire2 := transfer(t, e, d, datas[:1], 2, tr)
					checkLockStep(t, e, d)
					es, ds := e.Stats(), d.Stats()
					raw := 2*len(datas[0]) + len(datas[1]) + len(datas[2])
					if es.BytesIn != uint64(raw) || es.BytesOut != ds.BytesIn || es.BytesIn != ds.BytesOut || es.Refs != ds.Refs ||
						es.Literals != ds.Literals || es.Chunks != es.Refs+es.Literals || es.CacheBytes != ds.CacheBytes ||
						es.CacheEntries != ds.CacheEntries || es.BytesOut != uint64(sum(wire)+sum(wire2)) {
						t.Fatalf("stats: encoder %+v, decoder %+v", es, ds)
					}
					t.Logf("%d bytes in three streams: %d encoded; again: %d", len(c.data), sum(wire), sum(wire2))
					if tr == bulk && (c.name == "random" || c.name == "mixed") {
						// The repeat is references, but for the chunks
						// around frames that went final.
						if wire2[0] > len(c.data)/10 {
							t.Errorf("repeat encoded to %d of %d", wire2[0], len(c.data))
						}
					}
				})
			}
		}
	}
}

func TestVersions(t *testing.T) {
	vs := versions(1, 1<<20, 20)
	size := 0
	for _, v := range vs[1:] {
		size += len(v)
	}
	// One download after another, each as a stream of random frames.
	e, d := pair(t, DefaultParams(), 64<<20)
	wire := 0
	for i, v := range vs {
		w := transfer(t, e, d, [][]byte{v}, uint64(i), bulk)
		if i > 0 {
			wire += w[0]
		}
	}
	checkLockStep(t, e, d)
	t.Logf("sequential: versions 2..20, %d bytes, encoded to %d (%.1f %%)", size, wire, 100*float64(wire)/float64(size))
	if wire > size/10 {
		t.Errorf("sequential: versions 2..20, %d bytes, encoded to %d", size, wire)
	}
	// The first download, then the 19 others at once, interleaved: they
	// share chunks with each other and with the first at shifted offsets.
	e, d = pair(t, DefaultParams(), 64<<20)
	transfer(t, e, d, vs[:1], 20, bulk)
	wire = sum(transfer(t, e, d, vs[1:], 21, bulk))
	checkLockStep(t, e, d)
	t.Logf("interleaved: versions 2..20, %d bytes, encoded to %d (%.1f %%)", size, wire, 100*float64(wire)/float64(size))
	if wire > size/10 {
		t.Errorf("interleaved: versions 2..20, %d bytes, encoded to %d", size, wire)
	}
	// Application-limited, most frames final: each cuts a chunk short
	// where the frame ends, and the chunks that follow start there rather
	// than at content-defined boundaries, until a cut point brings them
	// back in step. Logged, not checked: it measures how much that costs.
	e, d = pair(t, DefaultParams(), 64<<20)
	transfer(t, e, d, vs[:1], 23, appLimited)
	wire = sum(transfer(t, e, d, vs[1:], 24, appLimited))
	t.Logf("application-limited: versions 2..20, %d bytes, encoded to %d (%.1f %%)", size, wire, 100*float64(wire)/float64(size))

	// All 20 at once: each chunk crosses about once, whichever stream
	// carries it first.
	e, d = pair(t, DefaultParams(), 64<<20)
	wire = sum(transfer(t, e, d, vs, 22, bulk))
	checkLockStep(t, e, d)
	t.Logf("all at once: %d bytes encoded to %d", size+len(vs[0]), wire)
	if wire > 3*len(vs[0]) {
		t.Errorf("all at once: %d bytes encoded to %d", size+len(vs[0]), wire)
	}
}

// A copy of some data inside other data, at an offset no multiple of
// anything, is found.
func TestShifted(t *testing.T) {
	e, d := pair(t, DefaultParams(), 64<<20)
	base := random(2, 512<<10)
	shifted := append(append(random(3, 777), base...), random(4, 3333)...)
	for i, v := range [][]byte{base, shifted} {
		enc, _ := e.Encode(nil, v, true)
		if out, err := d.Decode(nil, enc, len(v)); err != nil || !bytes.Equal(out, v) {
			t.Fatal(err)
		}
		if i == 1 && len(enc) > len(v)/20 {
			t.Fatalf("shifted copy encoded to %d of %d", len(enc), len(v))
		}
	}
}

// The exact bytes of the wire format.
func TestWireFormat(t *testing.T) {
	e, d := pair(t, Params{Min: 256, Avg: 512, Max: 1024}, 1<<20)
	chunk := bytes.Repeat([]byte{'x'}, 300) // no cut point: one chunk
	short := []byte("hi")
	sum := keyOf(chunk)
	lit := append([]byte{0, 0x00, 0xac, 0x02}, chunk...) // epoch 0, literal of 300 (uvarint ac 02)
	ref := append([]byte{0, 0x01}, sum[:16]...)          // epoch 0, reference
	for i, c := range []struct {
		in   []byte
		want []byte
	}{
		{chunk, lit},
		{chunk, ref},
		{nil, nil},
		{short, append([]byte{0, 0x00, 2}, short...)},
	} {
		got, n := e.Encode(nil, c.in, true)
		if !bytes.Equal(got, c.want) || n != len(c.in) {
			t.Fatalf("%d: encoded %x (%d), want %x", i, got, n, c.want)
		}
		if len(got) > 0 {
			if out, err := d.Decode(nil, got, len(c.in)); err != nil || !bytes.Equal(out, c.in) {
				t.Fatalf("%d: decoded %q, %v", i, out, err)
			}
		}
	}
	// Several ops in one payload: "hi", the chunk, "hi".
	both := bytes.Join([][]byte{{0, 0x00, 2}, short, {0x01}, sum[:16], {0x00, 2}, short}, nil)
	want := bytes.Join([][]byte{short, chunk, short}, nil)
	if out, err := d.Decode(nil, both, len(want)); err != nil || !bytes.Equal(out, want) {
		t.Fatalf("hand-built payload: %q, %v", out, err)
	}
	// Epoch 9 after Reset.
	e.Reset(9)
	if got, _ := e.Encode(nil, short, true); got[0] != 9 || e.Epoch() != 9 {
		t.Fatalf("epoch byte %d", got[0])
	}
}

func TestEncodeConsumes(t *testing.T) {
	p := DefaultParams()
	e, _ := pair(t, p, 1<<20)
	data := random(20, 1<<20)
	if out, n := e.Encode([]byte("x"), nil, true); n != 0 || string(out) != "x" {
		t.Fatal("empty data")
	}
	// Less than Min, or no cut point yet: nothing, unless final.
	for _, k := range []int{1, p.Min, p.Cut(data) - 1, p.Cut(data)} {
		if out, n := e.Encode([]byte("x"), data[:k], false); n != 0 || string(out) != "x" {
			t.Fatalf("%d bytes: consumed %d, appended %d", k, n, len(out)-1)
		}
	}
	// With more bytes: whole chunks, up to the last cut point.
	_, n := e.Encode(nil, data[:300<<10], false)
	want := 0
	for c := 0; want+c < 300<<10; want += c {
		c = p.Cut(data[want : 300<<10])
		if want+c == 300<<10 {
			break
		}
	}
	if n != want || n == 0 {
		t.Fatalf("consumed %d, want %d", n, want)
	}
	// Constant data: Max-sized chunks even without final.
	if _, n := e.Encode(nil, make([]byte, 3*p.Max-1), false); n != 2*p.Max {
		t.Fatalf("zeros: consumed %d", n)
	}
	if _, n := e.Encode(nil, make([]byte, p.Max), false); n != p.Max {
		t.Fatalf("zeros: consumed %d", n)
	}
}

func TestBudget(t *testing.T) {
	const budget = 256 << 10
	p := Params{Min: 256, Avg: 1024, Max: 8192}
	e, d := pair(t, p, budget)
	for i := range 40 {
		// New data, some of it repeated from a while ago (some still
		// cached, some evicted).
		data := append(random(uint64(100+i), 64<<10), random(uint64(100+i/2), 32<<10)...)
		transfer(t, e, d, [][]byte{data, text(uint64(i), 16<<10)}, uint64(i), appLimited)
		checkLockStep(t, e, d)
	}
	s := e.Stats()
	if s.Refs == 0 || s.CacheBytes > budget || s.CacheBytes < budget*3/4 || s.CacheEntries < 100 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHotChunkStays(t *testing.T) {
	// Room for about 16 chunks of 4 KiB; fill it over and over with new
	// ones: a chunk referenced all along stays, one sent once goes.
	p := Params{Min: 256, Avg: 1024, Max: 4096}
	e, d := pair(t, p, 16*(4096+entryOverhead))
	hot, cold := flat(p, 4096, 0), flat(p, 4096, 1)
	send := func(b []byte) {
		enc, _ := e.Encode(nil, b, true)
		if out, err := d.Decode(nil, enc, len(b)); err != nil || !bytes.Equal(out, b) {
			t.Fatal(err)
		}
	}
	send(cold)
	for i := range 100 {
		send(hot)
		send(random(uint64(i), 4096)) // new chunks each time
	}
	checkLockStep(t, e, d)
	if e.cache.m[keyOf(hot)] == nil || e.cache.m[keyOf(cold)] != nil {
		t.Fatal("LRU order not kept")
	}
	if s := d.Stats(); s.Refs != 99 {
		t.Fatalf("%d references", s.Refs)
	}
}

func TestNotCached(t *testing.T) {
	// Shorter than MinCache, or costing more than the budget: literals
	// every time, cached by neither end.
	p := Params{Min: 256, Avg: 1024, Max: 8192}
	e, d := pair(t, p, 8000)
	for _, b := range [][]byte{make([]byte, MinCache-1), flat(p, 8000-entryOverhead+1, 0)} {
		for range 3 {
			enc, n := e.Encode(nil, b, true)
			if n != len(b) || enc[1] != opLiteral {
				t.Fatal("not a literal")
			}
			if out, err := d.Decode(nil, enc, len(b)); err != nil || !bytes.Equal(out, b) {
				t.Fatal(err)
			}
		}
	}
	if len(e.cache.m) != 0 || len(d.cache.m) != 0 {
		t.Fatal("cached")
	}
	// Exactly the budget: cached.
	b := flat(p, 8000-entryOverhead, 1)
	transfer(t, e, d, [][]byte{b, b}, 1, bulk)
	if len(e.cache.m) != 1 || e.cache.used != 8000 || e.Stats().Refs == 0 {
		t.Fatalf("%d entries, %d bytes", len(e.cache.m), e.cache.used)
	}
	checkLockStep(t, e, d)
	// A budget of zero caches nothing.
	e, d = pair(t, DefaultParams(), 0)
	transfer(t, e, d, [][]byte{b, b}, 2, appLimited)
	if e.Stats().Refs != 0 || len(d.cache.m) != 0 {
		t.Fatal("cached with no budget")
	}
}

// Many minimal chunks: the per-entry overhead bounds the entries.
func TestEntryOverhead(t *testing.T) {
	const budget = 100 << 10
	e, d := pair(t, Params{Min: 256, Avg: 512, Max: 1024}, budget)
	for i := range 2000 {
		b := random(uint64(i), MinCache)
		enc, _ := e.Encode(nil, b, true)
		if _, err := d.Decode(nil, enc, len(b)); err != nil {
			t.Fatal(err)
		}
	}
	checkLockStep(t, e, d)
	if n := len(d.cache.m); n != budget/(MinCache+entryOverhead) {
		t.Fatalf("%d entries", n)
	}
}

// The same chunk twice in one payload; a chunk cached and evicted within
// one payload.
func TestWithinOnePayload(t *testing.T) {
	p := Params{Min: 256, Avg: 512, Max: 1024}
	e, d := pair(t, p, 3*(1024+entryOverhead))
	a, b, c := flat(p, 1024, 0), flat(p, 1024, 1), flat(p, 1024, 2)
	d1, d2, d3, d4 := flat(p, 1024, 3), flat(p, 1024, 4), flat(p, 1024, 5), flat(p, 1024, 6)
	for _, data := range [][]byte{
		bytes.Join([][]byte{a, a, a}, nil),              // literal, reference, reference
		bytes.Join([][]byte{b, c, a, b, c}, nil),        // a still cached: refs for a, b, c
		bytes.Join([][]byte{d1, d2, d3, a, d4, a}, nil), // a evicted, sent again, referenced
	} {
		enc, _ := e.Encode(nil, data, true)
		out, err := d.Decode(nil, enc, len(data))
		if err != nil || !bytes.Equal(out, data) {
			t.Fatal(err)
		}
		checkLockStep(t, e, d)
	}
	if s := e.Stats(); s.Refs != 2+3+1 || s.Literals != 1+2+5 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDivergence(t *testing.T) {
	p := DefaultParams()
	e, d := pair(t, p, 64<<20)
	v := random(5, 256<<10)
	fresh := random(6, 64<<10)
	decode := func(enc []byte, want []byte, wantErr error) {
		t.Helper()
		out, err := d.Decode([]byte("x"), enc, len(want))
		if !errors.Is(err, wantErr) || (wantErr == nil && !bytes.Equal(out[1:], want)) || (err != nil && string(out) != "x") {
			t.Fatalf("decoded %d bytes, %v; want %v", len(out)-1, err, wantErr)
		}
	}
	enc, _ := e.Encode(nil, v, true)
	decode(enc, v, nil)

	// The receiving end loses its state: a new Decoder.
	d = NewDecoder(64<<20, testKey())
	enc, _ = e.Encode(nil, v, true) // references only
	decode(enc, v, ErrDiverged)
	if epoch, reset := d.Resync(); !reset || epoch != 1 || d.Epoch() != 1 || d.Stats().Resets != 1 {
		t.Fatalf("resync %d %v", epoch, reset)
	}
	// In flight before the peer hears: references are stale, literals
	// still arrive but are not cached; neither resets again.
	enc, _ = e.Encode(nil, v, true)
	decode(enc, v, ErrStale)
	if _, reset := d.Resync(); reset {
		t.Fatal("a stale payload reset the decoder")
	}
	enc, _ = e.Encode(nil, fresh, true)
	decode(enc, fresh, nil)
	if len(d.cache.m) != 0 || d.Epoch() != 1 {
		t.Fatal("a stale literal was cached")
	}
	enc, _ = e.Encode(nil, fresh, true) // references to what was just sent
	decode(enc, fresh, ErrStale)
	// The peer resets: everything round-trips again, with references.
	e.Reset(d.Epoch())
	for range 3 {
		transfer(t, e, d, [][]byte{v, fresh}, 3, bulk)
		checkLockStep(t, e, d)
	}
	if e.Stats().Refs == 0 || e.Stats().Resets != 1 {
		t.Fatalf("stats %+v", e.Stats())
	}

	// A divergence in the middle of a payload: literals before the
	// missing reference are not delivered and the cache starts over.
	d.cache.clear()
	d.cache.add(keyOf(v[:p.Cut(v)]), p.Cut(v), bytes.Clone(v[:p.Cut(v)])) // one chunk known
	mid := append(random(7, 100<<10), v...)
	enc, _ = e.Encode(nil, mid, true)
	decode(enc, mid, ErrDiverged)
	if len(d.cache.m) != 0 || d.Epoch() != 2 {
		t.Fatal("no reset")
	}
	e.Reset(d.Epoch())
	transfer(t, e, d, [][]byte{mid, v, mid}, 4, appLimited)
	checkLockStep(t, e, d)
}

// Corrupt and over-limit payloads of the current epoch reset the decoder
// too; of a stale epoch, they do not.
func TestFailureResets(t *testing.T) {
	e, d := pair(t, DefaultParams(), 1<<20)
	v := random(8, 64<<10)
	enc, _ := e.Encode(nil, v, true)
	if _, err := d.Decode(nil, enc, len(v)-1); !errors.Is(err, ErrTooLarge) || d.Epoch() != 1 || len(d.cache.m) != 0 {
		t.Fatalf("%v, epoch %d", err, d.Epoch())
	}
	for _, c := range [][]byte{{0, 7}, {1, 7}, {}} {
		epoch := d.Epoch()
		_, err := d.Decode(nil, c, 100)
		if _, reset := d.Resync(); !errors.Is(err, ErrCorrupt) || reset != (len(c) == 0 || c[0] == epoch) {
			t.Fatalf("%x: %v, reset %v", c, err, reset)
		}
	}
	// Decoder.Reset, for a payload lost before the decoder.
	epoch := d.Epoch()
	d.Reset()
	if e, reset := d.Resync(); e != epoch+1 || !reset {
		t.Fatal("Reset")
	}
}

func TestMaxOut(t *testing.T) {
	e, d := pair(t, DefaultParams(), 1<<20)
	big := make([]byte, 64<<10) // one chunk of Max bytes
	enc, _ := e.Encode(nil, big, true)
	if _, err := d.Decode(nil, enc, len(big)); err != nil {
		t.Fatal(err)
	}
	ref, _ := e.Encode(nil, big, true)
	if len(ref) != 1+refLen {
		t.Fatalf("reference of %d bytes", len(ref))
	}
	// 1000 references, 17 KB, stand for 64 MiB: refused at the limit,
	// without allocating beyond it.
	amp := append([]byte{ref[0]}, bytes.Repeat(ref[1:], 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := d.Decode(nil, amp, 1<<20)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || len(out) != 0 {
		t.Fatalf("amplification: %d bytes, %v", len(out), err)
	}
	if a := after.TotalAlloc - before.TotalAlloc; a > 2<<20 {
		t.Fatalf("allocated %d bytes for a limit of 1 MiB", a)
	}
	// The limit exactly is fine; dst's capacity is used and grown once.
	e, d = pair(t, DefaultParams(), 1<<20)
	enc, _ = e.Encode(nil, big, true)
	d.Decode(nil, enc, len(big))
	ref, _ = e.Encode(nil, append(big, big...), true)
	out, err = d.Decode(make([]byte, 3, 10), ref, 2*len(big))
	if err != nil || len(out) != 3+2*len(big) || cap(out) != 3+2*len(big) {
		t.Fatalf("%d bytes (capacity %d), %v", len(out), cap(out), err)
	}
	for _, m := range []int{-1, 0} {
		if out, err := d.Decode(nil, []byte{d.Epoch()}, m); err != nil || len(out) != 0 {
			t.Fatal("an empty payload with no room")
		}
	}
}

// A table of hand-built payloads against a decoder that holds one chunk.
func TestPayloads(t *testing.T) {
	known := bytes.Repeat([]byte("known chunk "), 50) // 600 bytes
	kk := keyOf(known)
	other := keyOf([]byte("not cached"))
	lit300 := append([]byte{0x00, 0xac, 0x02}, bytes.Repeat([]byte{'z'}, 300)...)
	k300 := keyOf(bytes.Repeat([]byte{'z'}, 300))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name    string
		payload []byte
		maxOut  int
		want    []byte
		err     error
	}{
		{"epoch only", []byte{0}, 10, nil, nil},
		{"short literal", []byte{0, 0, 3, 'a', 'b', 'c'}, 3, []byte("abc"), nil},
		{"empty literal", []byte{0, 0, 0}, 0, nil, nil},
		{"non-minimal varint", []byte{0, 0, 0x83, 0x00, 'a', 'b', 'c'}, 3, []byte("abc"), nil},
		{"reference", cat([]byte{0, 1}, kk[:]), 600, known, nil},
		{"reference twice", cat([]byte{0, 1}, kk[:], []byte{1}, kk[:]), 1200, cat(known, known), nil},
		{"literal then its reference", cat([]byte{0}, lit300, []byte{1}, k300[:]), 600, cat(lit300[3:], lit300[3:]), nil},
		{"literal, limit", []byte{0, 0, 3, 'a', 'b', 'c'}, 2, nil, ErrTooLarge},
		{"reference, limit", cat([]byte{0, 1}, kk[:]), 599, nil, ErrTooLarge},
		{"second reference, limit", cat([]byte{0, 1}, kk[:], []byte{1}, kk[:]), 1199, nil, ErrTooLarge},
		{"unknown reference", cat([]byte{0, 1}, other[:]), 1000, nil, ErrDiverged},
		{"unknown reference after a literal", cat([]byte{0, 0, 1, 'a', 1}, other[:]), 1000, nil, ErrDiverged},
		{"stale literal", []byte{5, 0, 3, 'a', 'b', 'c'}, 3, []byte("abc"), nil},
		{"stale reference", cat([]byte{5, 1}, kk[:]), 1000, nil, ErrStale},
		{"stale literal and reference", cat([]byte{5, 0, 1, 'a', 1}, kk[:]), 1000, nil, ErrStale},
		{"stale, limit", []byte{5, 0, 3, 'a', 'b', 'c'}, 2, nil, ErrTooLarge},
		{"empty", nil, 10, nil, ErrCorrupt},
		{"unknown op", []byte{0, 2}, 10, nil, ErrCorrupt},
		{"unknown op after a literal", []byte{0, 0, 1, 'a', 0xff}, 10, nil, ErrCorrupt},
		{"literal without length", []byte{0, 0}, 10, nil, ErrCorrupt},
		{"truncated varint", []byte{0, 0, 0x80}, 10, nil, ErrCorrupt},
		{"overflowing varint", []byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 10, nil, ErrCorrupt},
		{"huge length", []byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'}, 10, nil, ErrCorrupt},
		{"length beyond the payload", []byte{0, 0, 4, 'a', 'b', 'c'}, 10, nil, ErrCorrupt},
		{"truncated reference", cat([]byte{0, 1}, kk[:15]), 1000, nil, ErrCorrupt},
		{"corrupt after a divergence", cat([]byte{0, 1}, other[:], []byte{9}), 1000, nil, ErrCorrupt},
		{"stale and corrupt", []byte{5, 0, 9}, 1000, nil, ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(1<<20, testKey())
			d.cache.add(kk, len(known), bytes.Clone(known))
			m := newModel(1 << 20)
			m.insert(known)
			out, err := d.Decode([]byte("x"), c.payload, c.maxOut)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if err != nil && string(out) != "x" || err == nil && !bytes.Equal(out[1:], c.want) {
				t.Fatalf("decoded %q", out)
			}
			want, werr := m.decode(c.payload, c.maxOut)
			if !errors.Is(werr, c.err) || !bytes.Equal(want, c.want) {
				t.Fatalf("the model disagrees: %q, %v", want, werr)
			}
			m.check(t, d)
		})
	}
}

func TestStatsConcurrently(t *testing.T) {
	e, d := pair(t, DefaultParams(), 1<<20)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = e.Stats(), d.Stats()
			}
		}
	}()
	transfer(t, e, d, [][]byte{random(9, 1<<20), random(9, 1<<20)}, 9, appLimited)
	close(stop)
	wg.Wait()
	if s := d.Stats(); s.BytesOut != 2<<20 || s.Refs == 0 {
		t.Fatalf("stats %+v", s)
	}
}
