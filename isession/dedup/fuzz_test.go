package dedup

import (
	"bytes"
	"errors"
	"testing"
)

// errClass returns the Error err wraps, or "" for nil.
func errClass(err error) Error {
	for _, c := range []Error{ErrCorrupt, ErrDiverged, ErrStale, ErrTooLarge} {
		if errors.Is(err, c) {
			return c
		}
	}
	if err != nil {
		return "unknown error: " + Error(err.Error())
	}
	return ""
}

const fuzzBudget = 16 << 10

// fuzzChunks are the chunks a fuzzed Decoder holds at first: a short one
// (never cached), and cached ones of several lengths.
func fuzzChunks() [][]byte {
	var chunks [][]byte
	for i, n := range []int{100, 300, 1000, 4000, 9000} {
		c := make([]byte, n)
		for j := range c {
			c[j] = byte(j*(2*i+1) + i)
		}
		chunks = append(chunks, c)
	}
	return chunks
}

// fuzzPrime is the payload, of epoch 0, that primes a fuzzed Decoder.
func fuzzPrime() []byte {
	e, err := NewEncoder(Params{Min: 256, Avg: 1 << 19, Max: 1 << 20}, fuzzBudget, testKey()) // one chunk per call
	if err != nil {
		panic(err)
	}
	var p []byte
	for _, c := range fuzzChunks() {
		enc, _ := e.Encode(nil, c, true)
		p = append(p, enc[1:]...)
	}
	return append([]byte{0}, p...)
}

// fuzzDecodeSeeds are payloads against a primed Decoder, with the limit
// to decode them with.
func fuzzDecodeSeeds() (payloads [][]byte, limits []uint16) {
	ref := func(i int) []byte { k := keyOf(fuzzChunks()[i]); return append([]byte{opRef}, k[:]...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, s := range []struct {
		p     []byte
		limit uint16
	}{
		{cat([]byte{0}, ref(1), ref(2), ref(4)), 10300},                    // references
		{cat([]byte{0}, ref(4), ref(4), ref(4), ref(4), ref(4)), 40000},    // over the limit
		{cat(fuzzPrime(), ref(3)), 20000},                                  // literals again, a reference
		{cat([]byte{1}, ref(1)), 1000},                                     // stale
		{cat([]byte{1, 0, 3, 'a', 'b', 'c'}), 3},                           // stale literal
		{cat([]byte{0}, ref(0)), 100},                                      // never cached: diverged
		{[]byte{0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, 10}, // truncated varint
		{cat([]byte{0}, ref(1)[:9]), 100},                                  // truncated reference
	} {
		payloads, limits = append(payloads, s.p), append(limits, s.limit)
	}
	return payloads, limits
}

// FuzzDecode feeds arbitrary payloads to a primed Decoder, twice (the
// second time after whatever the first did, a reset included), and
// compares everything with the model: error, output, epoch, cache. It
// must never panic nor deliver more than the limit.
func FuzzDecode(f *testing.F) {
	payloads, limits := fuzzDecodeSeeds()
	for i := range payloads {
		f.Add(payloads[i], limits[i])
	}
	prime := fuzzPrime()
	f.Fuzz(func(t *testing.T, payload []byte, limit uint16) {
		d, m := NewDecoder(fuzzBudget, testKey()), newModel(fuzzBudget)
		prefix := []byte("prefix")
		for i, p := range [][]byte{prime, payload, payload} {
			maxOut := int(limit)
			if i == 0 {
				maxOut = 1 << 20
			}
			got, err := d.Decode(prefix[:len(prefix):len(prefix)], p, maxOut)
			want, werr := m.decode(p, maxOut)
			if errClass(err) != errClass(werr) {
				t.Fatalf("payload %d: error %v, the model's %v", i, err, werr)
			}
			if err != nil {
				if !bytes.Equal(got, prefix) {
					t.Fatalf("payload %d: error %v with output", i, err)
				}
			} else if !bytes.Equal(got[len(prefix):], want) || len(want) > maxOut {
				t.Fatalf("payload %d: %d bytes, the model's %d, limit %d", i, len(got)-len(prefix), len(want), maxOut)
			}
			m.check(t, d)
		}
	})
}

// FuzzRoundTrip encodes arbitrary data in pieces that plan describes (the
// size of each, and whether it is final), like the tunnel's writer, twice
// (the second time mostly references), with a cache small enough to
// evict; every payload must decode to its bytes and leave both caches
// identical. Then it checks that the chunks do not depend on how the data
// was split when only the end is final.
func FuzzRoundTrip(f *testing.F) {
	f.Add(random(1, 10000), []byte{3, 0x85, 20})
	f.Add(text(2, 20000), []byte{0x7f})
	f.Add(make([]byte, 5000), []byte{0x80, 1})
	f.Add([]byte{}, []byte{})
	p := Params{Min: 256, Avg: 512, Max: 2048}
	f.Fuzz(func(t *testing.T, data, plan []byte) {
		step := func(k int) (int, bool) {
			b := byte(0xff)
			if len(plan) > 0 {
				b = plan[k%len(plan)]
			}
			return 1 + int(b&0x7f)*40, b&0x80 != 0
		}
		e, d := pair(t, p, 8<<10)
		for range 2 {
			for pos, k := 0, 0; pos < len(data); k++ {
				n, final := step(k)
				n = min(n, len(data)-pos)
				final = final || pos+n == len(data)
				enc, c := e.Encode(nil, data[pos:pos+n], final)
				if c == 0 && !final {
					enc, c = e.Encode(nil, data[pos:pos+n], true)
				}
				if c == 0 || c > n || len(enc) > c+c/64+5 {
					t.Fatalf("%d bytes: consumed %d, encoded to %d", n, c, len(enc))
				}
				out, err := d.Decode(nil, enc, c)
				if err != nil || !bytes.Equal(out, data[pos:pos+c]) {
					t.Fatalf("at %d: %v", pos, err)
				}
				checkLockStep(t, e, d)
				pos += c
			}
		}

		e1, _ := pair(t, p, 8<<10)
		e2, _ := pair(t, p, 8<<10)
		want, _ := e1.Encode(nil, data, true)
		var got []byte
		for pos, end, k := 0, 0, 0; pos < len(data); k++ {
			n, _ := step(k)
			end = min(len(data), end+n)
			enc, c := e2.Encode(nil, data[pos:end], end == len(data))
			if c > 0 {
				got = append(got, enc[1:]...)
			}
			pos += c
		}
		if len(data) > 0 && !bytes.Equal(got, want[1:]) {
			t.Fatal("the chunks depend on how the data was split")
		}
	})
}
