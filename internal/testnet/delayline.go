package testnet

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// lineParams is the part of a WANConfig the delay line reads per packet; it
// is swapped atomically by WAN.Set.
// Fields are exported for the JSON control channel to a child delay line.
type lineParams struct {
	Delay   int64 // ns
	Jitter  int64 // ns
	Normal  bool
	Reorder bool
	Loss    float64
}

// Delay-line tuning.
const (
	// maxFrame is the read buffer: anything longer than an MTU-sized frame
	// means an offload leaked a super-packet, which we count and drop.
	maxFrame = 65536 + 64
	// maxQueued bounds one direction's queue (frames); 300 ms at 1 Gbit/s
	// of full-size frames is ~25 000.
	maxQueued = 1 << 16
	// sleepChunk bounds one sleep so Close is noticed promptly.
	sleepChunk = 20 * time.Millisecond
	// reorderChunk bounds one sleep when reordering is allowed, because a
	// newly arrived frame may then be due before the queue's head.
	reorderChunk = 200 * time.Microsecond
)

type frame struct {
	due int64 // unix ns, CLOCK_REALTIME
	seq uint64
	buf []byte
}

// frameHeap is a min-heap on (due, seq). Without reordering due times are
// already monotonic and every push lands at the end.
type frameHeap []frame

func (h frameHeap) less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].seq < h[j].seq
}

func (h *frameHeap) push(f frame) {
	*h = append(*h, f)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *frameHeap) pop() frame {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = frame{}
	s = s[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// latencyHist records how late frames leave relative to their due time, in
// 10 µs buckets up to 10 ms.
type latencyHist struct {
	buckets [1001]atomic.Uint64 // last bucket: ≥ 10 ms
	sum     atomic.Int64
	max     atomic.Int64
	n       atomic.Uint64
}

const histStep = 10 * time.Microsecond

func (h *latencyHist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := int(d / histStep)
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

func (h *latencyHist) snapshot() Lateness {
	var l Lateness
	n := h.n.Load()
	if n == 0 {
		return l
	}
	l.Mean = time.Duration(h.sum.Load() / int64(n))
	l.Max = time.Duration(h.max.Load())
	var counts [len(h.buckets)]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	q := func(p float64) time.Duration {
		want := uint64(math.Ceil(p * float64(total)))
		var c uint64
		for i, v := range counts {
			c += v
			if c >= want && want > 0 {
				return time.Duration(i+1) * histStep // upper bucket edge
			}
		}
		return l.Max
	}
	l.P50, l.P99, l.P999 = q(0.50), q(0.99), q(0.999)
	for i := int(time.Millisecond / histStep); i < len(counts); i++ {
		l.Over1ms += counts[i]
	}
	return l
}

// direction is one half of the delay line: frames read on in are held until
// due and written to out.
type direction struct {
	in, out *packetSock
	params  *atomic.Pointer[lineParams]
	rng     *rand.Rand // reader goroutine only
	pool    *sync.Pool

	mu      sync.Mutex
	q       frameHeap
	lastDue int64
	seq     uint64
	wake    chan struct{}
	stop    chan struct{}

	realtime bool // run the sender thread SCHED_FIFO

	received, forwarded, lost, queueDrops, overflow, oversize, errs atomic.Uint64
	kdrops                                                          atomic.Uint64
	late                                                            latencyHist
}

func newDirection(in, out *packetSock, p *atomic.Pointer[lineParams], seed uint64, pool *sync.Pool, stop chan struct{}) *direction {
	return &direction{
		in: in, out: out, params: p, pool: pool, stop: stop,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		wake: make(chan struct{}, 1),
	}
}

// sample returns this frame's one-way delay in ns.
func (p *lineParams) sample(rng *rand.Rand) int64 {
	d := p.Delay
	if p.Jitter > 0 {
		var j float64
		if p.Normal {
			j = rng.NormFloat64()
		} else {
			j = rng.Float64()*2 - 1
		}
		d += int64(j * float64(p.Jitter))
		if d < 0 {
			d = 0
		}
	}
	return d
}

// isARP reports whether an Ethernet frame (possibly VLAN-tagged) is ARP.
// ARP is never subject to emulated loss: it is not part of the path being
// measured, and the endpoints use static neighbour entries anyway.
func isARP(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	et := binary.BigEndian.Uint16(f[12:14])
	if et == 0x8100 && len(f) >= 18 {
		et = binary.BigEndian.Uint16(f[16:18])
	}
	return et == 0x0806
}

// enqueue decides loss and the due time of a frame received at rx, and
// queues a copy of it. It returns false if the frame was dropped.
func (d *direction) enqueue(f []byte, rx int64) bool {
	p := d.params.Load()
	if p.Loss > 0 && !isARP(f) && d.rng.Float64() < p.Loss {
		d.lost.Add(1)
		return false
	}
	due := rx + p.sample(d.rng)
	bp := d.pool.Get().(*[]byte)
	b := *bp
	if cap(b) < len(f) {
		b = make([]byte, len(f))
	}
	b = b[:len(f)]
	copy(b, f)
	d.mu.Lock()
	if len(d.q) >= maxQueued {
		d.mu.Unlock()
		d.overflow.Add(1)
		d.putBuf(b)
		return false
	}
	if !p.Reorder && due < d.lastDue {
		due = d.lastDue
	}
	d.lastDue = max(d.lastDue, due)
	d.seq++
	d.q.push(frame{due: due, seq: d.seq, buf: b})
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return true
}

func (d *direction) putBuf(b []byte) {
	if cap(b) > 4096 {
		return
	}
	b = b[:0]
	d.pool.Put(&b)
}

// readLoop reads frames from the ingress socket until it is closed.
func (d *direction) readLoop() {
	buf := make([]byte, maxFrame)
	oob := make([]byte, 256)
	for {
		n, trunc, ts, err := d.in.recv(buf, oob)
		if err != nil {
			if errors.Is(err, errSockClosed) {
				return
			}
			select {
			case <-d.stop:
				return
			default:
			}
			d.errs.Add(1)
			continue
		}
		d.received.Add(1)
		if trunc || n > maxMTUFrame {
			// A GSO/GRO super-packet: forwarding it would bypass per-segment
			// loss and fail on the wire side with EMSGSIZE.
			d.oversize.Add(1)
			continue
		}
		now := time.Now()
		// The kernel stamp is the moment the frame entered the router
		// namespace. Guard against a clock step or a stamp from another
		// clock: trust it only if it is recent and not in the future.
		rx := now.UnixNano()
		if !ts.IsZero() {
			if age := now.Sub(ts); age >= 0 && age < 50*time.Millisecond {
				rx = ts.UnixNano()
			}
		}
		d.enqueue(buf[:n], rx)
	}
}

// maxMTUFrame is the longest frame the delay line forwards: a 9000-byte
// jumbo MTU plus Ethernet and VLAN headers. Frames above the configured MTU
// but below this are forwarded and fail (counted as errors) on the far side.
const maxMTUFrame = 9000 + 18

// realtimeNow is CLOCK_REALTIME in ns through the vDSO.
func realtimeNow() int64 { return time.Now().UnixNano() }

// sleepUntil sleeps until the absolute CLOCK_REALTIME instant t. On a thread
// with timer slack 1 ns this wakes within tens of microseconds, unlike
// time.Sleep, whose wake-ups on Linux are quantised near 1 ms by the
// runtime's netpoller wait.
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for {
		err := unix.ClockNanosleep(unix.CLOCK_REALTIME, unix.TIMER_ABSTIME, &ts, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// sendLoop releases frames when due. It runs on its own OS thread so that
// it can sleep in clock_nanosleep with a 1 ns timer slack.
func (d *direction) sendLoop() {
	// Runs on a dedicated thread (goDedicated): its timer slack and
	// scheduling class are changed below and never restored.
	// Timer slack is per thread; the default 50 µs would be added to
	// every wake-up.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	// A real-time class lets the woken thread preempt ordinary work on a
	// busy machine. It only ever sleeps or sends, so it cannot starve
	// anyone; failure (no CAP_SYS_NICE) just leaves it SCHED_OTHER.
	if d.realtime {
		_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}, 0)
	}
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		d.mu.Lock()
		if len(d.q) == 0 {
			d.mu.Unlock()
			select {
			case <-d.wake:
			case <-d.stop:
				return
			}
			continue
		}
		now := realtimeNow()
		head := d.q[0].due
		if head > now {
			reorder := d.params.Load().Reorder
			d.mu.Unlock()
			chunk := int64(sleepChunk)
			if reorder {
				chunk = int64(reorderChunk)
			}
			sleepUntil(min(head, now+chunk))
			continue
		}
		f := d.q.pop()
		d.mu.Unlock()
		d.late.add(time.Duration(now - f.due))
		switch err := d.out.send(f.buf); {
		case err == nil:
			d.forwarded.Add(1)
		case errors.Is(err, unix.ENOBUFS):
			// The egress qdisc (tbf) refused it: its queue is full.
			d.queueDrops.Add(1)
		case errors.Is(err, errSockClosed):
			d.putBuf(f.buf)
			return
		default:
			d.errs.Add(1)
		}
		d.putBuf(f.buf)
	}
}

func (d *direction) queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.q)
}

func (d *direction) stats() LinkStats {
	d.kdrops.Add(d.in.kernelDrops())
	return LinkStats{
		Received:    d.received.Load(),
		Forwarded:   d.forwarded.Load(),
		Lost:        d.lost.Load(),
		QueueDrops:  d.queueDrops.Load(),
		Overflow:    d.overflow.Load(),
		KernelDrops: d.kdrops.Load(),
		Oversize:    d.oversize.Load(),
		Errors:      d.errs.Load(),
		Queued:      d.queued(),
		Late:        d.late.snapshot(),
	}
}

// delayLine is both directions of the relay between two packet sockets.
type delayLine struct {
	params atomic.Pointer[lineParams]
	socks  [2]*packetSock
	dirs   [2]*direction
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// startDelayLine relays between a (client side) and b (server side).
func startDelayLine(a, b *packetSock, p *lineParams, seed uint64, realtime bool) *delayLine {
	l := &delayLine{socks: [2]*packetSock{a, b}, stop: make(chan struct{})}
	l.params.Store(p)
	pool := &sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}
	l.dirs[0] = newDirection(a, b, &l.params, seed, pool, l.stop)
	l.dirs[1] = newDirection(b, a, &l.params, seed*0x2545f4914f6cdd1d+1, pool, l.stop)
	for _, d := range l.dirs {
		d.realtime = realtime
		l.wg.Add(2)
		go func() { defer l.wg.Done(); d.readLoop() }()
		goDedicated(func() { defer l.wg.Done(); d.sendLoop() })
	}
	return l
}

func (l *delayLine) set(p *lineParams) error { l.params.Store(p); return nil }

func (l *delayLine) stats() (Stats, error) {
	return Stats{ClientToServer: l.dirs[0].stats(), ServerToClient: l.dirs[1].stats()}, nil
}

func (l *delayLine) close() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		err = errors.Join(l.socks[0].close(), l.socks[1].close())
		l.wg.Wait()
	})
	return err
}
