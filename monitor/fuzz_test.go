package monitor

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"testing"
)

// chunkReader hands out data n bytes per Read, then io.EOF, and counts what
// was taken: a peer's TCP segments arriving one by one.
type chunkReader struct {
	data  []byte
	n     int
	taken int
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(b), r.n, len(r.data))
	copy(b, r.data[:k])
	r.data = r.data[k:]
	r.taken += k
	return k, nil
}

// FuzzHTTPResponse feeds arbitrary member responses, cut into arbitrary
// segments, to the http monitor's response reader. It must never panic or
// read past MaxResponse; with a status-only monitor the verdict (up or
// down) must not depend on how the bytes were segmented; and any response net/http can
// parse must be judged on the same status code.
func FuzzHTTPResponse(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzHTTPResponse.
	f.Fuzz(func(t *testing.T, resp []byte, chunk uint8, head bool) {
		n := int(chunk)%64 + 1
		statusOnly := &prober{spec: &Spec{Type: TypeHTTP, Status: []int{200, 301}}}
		whole := &chunkReader{data: resp, n: len(resp) + 1}
		want := statusOnly.readHTTP(context.Background(), whole, head)
		split := &chunkReader{data: resp, n: n}
		got := statusOnly.readHTTP(context.Background(), split, head)
		// The reason text may quote more of what arrived; up or down may not change.
		if (want == nil) != (got == nil) {
			t.Fatalf("verdict depends on segmentation: whole %v, %d-byte segments %v", want, n, got)
		}
		if whole.taken > MaxResponse || split.taken > MaxResponse {
			t.Fatalf("read %d/%d bytes, more than MaxResponse", whole.taken, split.taken)
		}

		// Differential: a status line net/http accepts carries the code
		// the monitor must judge.
		if hr, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil); err == nil && hr.StatusCode >= 100 {
			up := slices.Contains(statusOnly.spec.Status, hr.StatusCode)
			if up != (want == nil) {
				t.Fatalf("net/http reads status %d; monitor verdict %v", hr.StatusCode, want)
			}
		}

		// A monitor with Receive (and Reverse) reads on until it can decide:
		// still bounded, never a panic.
		for _, rev := range []bool{false, true} {
			p := &prober{spec: &Spec{Type: TypeHTTP, Receive: regexp.MustCompile(`(?i)ok|ready`), Reverse: rev}}
			r := &chunkReader{data: resp, n: n}
			_ = p.readHTTP(context.Background(), r, head)
			if r.taken > MaxResponse {
				t.Fatalf("receive monitor read %d bytes, more than MaxResponse", r.taken)
			}
		}
	})
}
