package testnet

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestFrameHeapOrdersByDueThenSeq(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var h frameHeap
	for i := 0; i < 2000; i++ {
		h.push(frame{due: int64(rng.IntN(100)), seq: uint64(i)})
	}
	prev := frame{due: -1}
	for len(h) > 0 {
		f := h.pop()
		if f.due < prev.due || (f.due == prev.due && f.seq < prev.seq) {
			t.Fatalf("heap out of order: %+v after %+v", f, prev)
		}
		prev = f
	}
}

func TestSampleBounds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	u := &lineParams{Delay: int64(10 * time.Millisecond), Jitter: int64(4 * time.Millisecond)}
	var sum float64
	const n = 20000
	for i := 0; i < n; i++ {
		d := u.sample(rng)
		if d < int64(6*time.Millisecond) || d > int64(14*time.Millisecond) {
			t.Fatalf("uniform sample %v outside 10ms±4ms", time.Duration(d))
		}
		sum += float64(d)
	}
	if mean := time.Duration(sum / n); mean < 9900*time.Microsecond || mean > 10100*time.Microsecond {
		t.Errorf("uniform mean %v, want 10ms±0.1ms", mean)
	}
	nrm := &lineParams{Delay: int64(time.Millisecond), Jitter: int64(2 * time.Millisecond), Normal: true}
	var neg, zero int
	var sd float64
	for i := 0; i < n; i++ {
		d := nrm.sample(rng)
		if d < 0 {
			neg++
		}
		if d == 0 {
			zero++
		}
		sd += math.Pow(float64(d-int64(time.Millisecond)), 2)
	}
	if neg != 0 {
		t.Errorf("%d negative delays", neg)
	}
	// P(N(1ms, 2ms) < 0) ≈ 30.9%: those are clamped to exactly 0.
	if f := float64(zero) / n; f < 0.28 || f > 0.34 {
		t.Errorf("clamped fraction %.3f, want ≈0.309", f)
	}
}

func newTestDirection(p *lineParams) *direction {
	var ap atomic.Pointer[lineParams]
	ap.Store(p)
	pool := &sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}
	return newDirection(nil, nil, &ap, 42, pool, make(chan struct{}))
}

func ipv4Frame() []byte {
	f := make([]byte, 60)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	return f
}

func TestEnqueueKeepsOrderWithoutReorder(t *testing.T) {
	t.Parallel()
	d := newTestDirection(&lineParams{Delay: int64(5 * time.Millisecond), Jitter: int64(4 * time.Millisecond)})
	for i := 0; i < 1000; i++ {
		d.enqueue(ipv4Frame(), int64(i)*int64(10*time.Microsecond))
	}
	var prev frame
	for i := 0; len(d.q) > 0; i++ {
		f := d.q.pop()
		if f.seq != uint64(i+1) {
			t.Fatalf("frame %d left as #%d: reordered", f.seq, i+1)
		}
		if f.due < prev.due {
			t.Fatalf("due went backwards")
		}
		prev = f
	}
	// With Reorder the same input must produce some reordering.
	d = newTestDirection(&lineParams{Delay: int64(5 * time.Millisecond), Jitter: int64(4 * time.Millisecond), Reorder: true})
	for i := 0; i < 1000; i++ {
		d.enqueue(ipv4Frame(), int64(i)*int64(10*time.Microsecond))
	}
	out := 0
	for i := 0; len(d.q) > 0; i++ {
		if d.q.pop().seq != uint64(i+1) {
			out++
		}
	}
	if out == 0 {
		t.Error("Reorder: true produced no reordering")
	}
}

func TestEnqueueLossSparesARP(t *testing.T) {
	t.Parallel()
	d := newTestDirection(&lineParams{Loss: 1})
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	if d.enqueue(ipv4Frame(), 0) {
		t.Error("Loss 1 forwarded an IPv4 frame")
	}
	if !d.enqueue(arp, 0) {
		t.Error("Loss 1 dropped ARP")
	}
	d = newTestDirection(&lineParams{Loss: 0.25})
	const n = 40000
	for i := 0; i < n; i++ {
		d.enqueue(ipv4Frame(), 0)
	}
	lost := float64(d.lost.Load())
	sigma := math.Sqrt(n * 0.25 * 0.75)
	if math.Abs(lost-n*0.25) > 4*sigma {
		t.Errorf("lost %v of %d at 25%%, want %v±%.0f", lost, n, n*0.25, 4*sigma)
	}
}

func TestLatencyHist(t *testing.T) {
	t.Parallel()
	var h latencyHist
	for i := 0; i < 990; i++ {
		h.add(15 * time.Microsecond)
	}
	for i := 0; i < 10; i++ {
		h.add(3 * time.Millisecond)
	}
	h.add(-time.Microsecond) // early counts as 0
	s := h.snapshot()
	if s.P50 != 20*time.Microsecond || s.P99 != 20*time.Microsecond {
		t.Errorf("P50 %v P99 %v, want 20µs bucket edges", s.P50, s.P99)
	}
	if s.P999 != 3010*time.Microsecond || s.Max != 3*time.Millisecond || s.Over1ms != 10 {
		t.Errorf("P99.9 %v Max %v Over1ms %d", s.P999, s.Max, s.Over1ms)
	}
}

func TestTBFSizing(t *testing.T) {
	t.Parallel()
	p := TBFFor(WANConfig{RateBits: 50e6, Delay: 50 * time.Millisecond})
	if p.Limit != 625000 { // 50 Mbit/s × 100 ms / 8
		t.Errorf("limit %d, want one BDP 625000", p.Limit)
	}
	if p.Burst != 12500 { // 2 ms at 50 Mbit/s
		t.Errorf("burst %d, want 12500", p.Burst)
	}
	p = TBFFor(WANConfig{RateBits: 1e6})
	if p.Limit != 64*1514 || p.Burst != 3*1514 {
		t.Errorf("floors: %+v", p)
	}
	p = TBFFor(WANConfig{RateBits: 1e6, Burst: 5000, QueueBytes: 7000})
	if p.Limit != 7000 || p.Burst != 5000 {
		t.Errorf("explicit values ignored: %+v", p)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	bad := []WANConfig{
		{Delay: -1}, {Jitter: 11 * time.Second}, {Loss: 1.5}, {Loss: math.NaN()},
		{RateBits: -1}, {RateBits: 1000}, {MTU: 100}, {JitterDist: 7}, {Burst: -1},
	}
	for _, c := range bad {
		if c.validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (WANConfig{Delay: 300 * time.Millisecond, Loss: 0.01, RateBits: 100e6}).validate(); err != nil {
		t.Error(err)
	}
}

func TestParseTimestampNS(t *testing.T) {
	t.Parallel()
	b := make([]byte, unix.CmsgSpace(16))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h.SetLen(unix.CmsgLen(16))
	binary.NativeEndian.PutUint64(b[unix.CmsgLen(0):], 1700000000)
	binary.NativeEndian.PutUint64(b[unix.CmsgLen(0)+8:], 123)
	if got := parseTimestampNS(b); !got.Equal(time.Unix(1700000000, 123)) {
		t.Errorf("got %v", got)
	}
	if got := parseTimestampNS(b[:5]); !got.IsZero() {
		t.Errorf("short buffer gave %v", got)
	}
}
