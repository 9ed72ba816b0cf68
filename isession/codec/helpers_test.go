package codec

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"

	"github.com/klauspost/compress/flate"
)

// words is the vocabulary of textLike.
var words = []string{"the", "tunnel", "compresses", "each", "frame", "payload", "before", "writing", "GET", "/api/v1/pools",
	"HTTP/1.1", "200", "OK", "Content-Type:", "application/json", "{\"member\":", "\"10.0.0.", "\"state\":", "\"up\"}",
	"server", "virtual", "persistence", "cookie", "health", "monitor", "connection", "table", "of", "and", "a", "\n"}

// textLike returns n bytes of log/HTTP-like text, deterministic in seed.
func textLike(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(4) == 0 {
			b.WriteString(string(rune('0' + r.IntN(10))))
		}
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

// randomData returns n incompressible bytes, deterministic in seed.
func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mixed alternates 4 KiB runs of text, random bytes and zeros.
func mixed(n int, seed uint64) []byte {
	b := make([]byte, 0, n)
	t, r := textLike(n, seed), randomData(n, seed)
	for i := 0; len(b) < n; i++ {
		m := min(4096, n-len(b))
		switch i % 3 {
		case 0:
			b = append(b, t[len(b):len(b)+m]...)
		case 1:
			b = append(b, r[len(b):len(b)+m]...)
		default:
			b = append(b, make([]byte, m)...)
		}
	}
	return b
}

// deflated returns already-compressed data (like a gzip or JPEG payload).
func deflated(n int, seed uint64) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 9)
	for s := seed; b.Len() < n; s++ {
		w.Write(textLike(64<<10, s))
		w.Flush()
	}
	return b.Bytes()[:n]
}

// base64Random is random bytes in base64: compressible by entropy coding only.
func base64Random(n int, seed uint64) []byte {
	return []byte(base64.StdEncoding.EncodeToString(randomData(n, seed)))[:n]
}
