package virtual

import (
	"time"

	"errors"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A relay moves one direction of a proxied stream (src → dst) through a
// bounded proxy buffer with F5's proxy-buffer semantics: a reader goroutine
// fills the buffer from src and stops reading — so src's TCP receive window
// closes and the sender is held back — once the buffer holds BufHigh bytes;
// it resumes only when a writer goroutine has drained it below BufLow. The
// writer sends whatever is buffered to dst as fast as dst takes it.
//
// Between two plain TCP sockets the buffer is a kernel pipe and bytes move
// with splice(2) without entering user space; otherwise (TLS) it is a ring
// buffer in user space.
type relay struct {
	src, dst  net.Conn
	high, low int64
	buf       relayBuffer
	count     func(int64) // bytes written to dst

	held       atomic.Int64 // bytes in the buffer now
	eof        atomic.Bool  // src is finished (cleanly or not)
	writerDone atomic.Bool  // the writer stopped (dst failed or all written)
	srcErr     error        // set by the reader before eof
	readerUp   chan struct{}
	writerUp   chan struct{}

	stats *RelayStats

	zeroWindow time.Duration // dst's zero-window timeout (0: off)
	quickAck   *net.TCPConn  // ack src after every read (delayed ACK off / ack on push)
	autoTune   []func()      // resize auto socket buffers from TCP_INFO
	lastTune   time.Time
}

// autoTuneEvery is how often a busy relay re-sizes auto socket buffers.
const autoTuneEvery = 100 * time.Millisecond

// tune applies the source side's ACK policy and the destination side's
// zero-window timeout.
func (r *relay) tune(srcProfile, dstProfile *tcp.Profile) {
	if dstProfile != nil {
		r.zeroWindow = dstProfile.ZeroWindowTimeout
	}
	if srcProfile != nil && (!srcProfile.DelayedACK || srcProfile.AckOnPush) {
		if tc, ok := r.src.(*net.TCPConn); ok {
			r.quickAck = tc
		}
	}
	// Auto buffers: the destination's send buffer and the source's receive
	// window grow toward the bandwidth-delay product each side measures.
	for _, side := range []struct {
		prof *tcp.Profile
		c    net.Conn
		want bool
	}{{dstProfile, r.dst, dstProfile != nil && dstProfile.AutoSendBuffer}, {srcProfile, r.src, srcProfile != nil && srcProfile.AutoReceiveWindow}} {
		if tc := tcpConnOf(side.c); side.want && tc != nil {
			prof := side.prof
			r.autoTune = append(r.autoTune, func() {
				if info, err := tcp.GetInfo(tc); err == nil {
					prof.AutoTune(tc, info)
				}
			})
		}
	}
}

// RelayStats records how a relay's buffer behaved; tests and the
// connection table read it.
type RelayStats struct {
	High, Low   int64
	MaxHeld     atomic.Int64 // highest occupancy seen
	Pauses      atomic.Int64 // times reading stopped at the high mark
	LastResume  atomic.Int64 // occupancy when reading last resumed
	Held        atomic.Int64 // occupancy now (mirrors relay.held)
	SpliceBytes atomic.Int64 // bytes moved with splice (0 on the copy path)
}

// BufferSnapshot is RelayStats as plain values.
type BufferSnapshot struct {
	High        int64 `json:"high"`
	Low         int64 `json:"low"`
	Held        int64 `json:"held"`
	MaxHeld     int64 `json:"max_held"`
	Pauses      int64 `json:"pauses"`
	LastResume  int64 `json:"last_resume_held"`
	SpliceBytes int64 `json:"splice_bytes"`
}

// Snapshot copies the counters.
func (s *RelayStats) Snapshot() BufferSnapshot {
	return BufferSnapshot{High: s.High, Low: s.Low, Held: s.Held.Load(), MaxHeld: s.MaxHeld.Load(),
		Pauses: s.Pauses.Load(), LastResume: s.LastResume.Load(), SpliceBytes: s.SpliceBytes.Load()}
}

// relayBuffer is the proxy buffer: fill reads from src into it (at most max
// bytes, blocking until some arrive), drain writes buffered bytes to dst.
type relayBuffer interface {
	fill(src net.Conn, max int64, wait func()) (int64, error)
	drain(dst net.Conn, avail int64) (int64, error)
	close()
}

// newRelay picks the buffer kind for the pair and sizes it for high.
func newRelay(dst, src net.Conn, high, low int64, count func(int64), stats *RelayStats) *relay {
	if high <= 0 {
		high = 64 << 10
	}
	if low <= 0 || low > high {
		low = high
	}
	r := &relay{src: src, dst: dst, high: high, low: low, count: count,
		readerUp: make(chan struct{}, 1), writerUp: make(chan struct{}, 1), stats: stats}
	if r.stats == nil {
		r.stats = &RelayStats{}
	}
	r.stats.High, r.stats.Low = high, low
	if _, ok := dst.(*net.TCPConn); ok {
		if _, ok := src.(*net.TCPConn); ok {
			if pb, err := newPipeBuffer(high); err == nil {
				r.buf = pb
				pb.stats = r.stats
			}
		}
	}
	if r.buf == nil {
		r.buf = &ringBuffer{b: make([]byte, high)}
	}
	return r
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run moves bytes until src ends and everything buffered reached dst, then
// half-closes dst; on an error it closes both so the other direction stops.
func (r *relay) run() error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.read() }()
	werr := r.write()
	if werr != nil {
		r.src.Close()
		r.dst.Close()
	}
	wg.Wait()
	r.buf.close()
	if werr != nil {
		return werr
	}
	if r.srcErr != nil {
		r.dst.Close()
		r.src.Close()
		return r.srcErr
	}
	if cw, ok := r.dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		r.dst.Close()
	}
	return nil
}

func (r *relay) read() {
	defer func() { r.eof.Store(true); kick(r.writerUp) }()
	for {
		if h := r.held.Load(); h >= r.high {
			// Backpressure: stop reading src until the writer has drained
			// the buffer below the low mark.
			r.stats.Pauses.Add(1)
			for r.held.Load() >= r.low {
				<-r.readerUp
				if r.dstFailed() {
					return
				}
			}
			r.stats.LastResume.Store(r.held.Load())
		}
		n, err := r.buf.fill(r.src, r.high-r.held.Load(), func() { <-r.readerUp })
		if n > 0 && r.quickAck != nil {
			tcp.QuickAck(r.quickAck)
		}
		if n > 0 {
			h := r.held.Add(n)
			r.stats.Held.Store(h)
			if h > r.stats.MaxHeld.Load() {
				r.stats.MaxHeld.Store(h)
			}
			kick(r.writerUp)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.srcErr = err
			}
			return
		}
	}
}

// dstFailed is set when the writer gave up; the reader must not wait forever.
func (r *relay) dstFailed() bool { return r.writerDone.Load() }

func (r *relay) write() (err error) {
	defer func() { r.writerDone.Store(true); kick(r.readerUp) }()
	for {
		h := r.held.Load()
		if h == 0 {
			if r.eof.Load() && r.held.Load() == 0 {
				return nil
			}
			<-r.writerUp
			continue
		}
		if r.zeroWindow > 0 {
			// No progress toward dst for this long means its window stayed
			// shut (F5 zero-window timeout): the write fails and the flow ends.
			r.dst.SetWriteDeadline(time.Now().Add(r.zeroWindow))
		}
		m, err := r.buf.drain(r.dst, h)
		if len(r.autoTune) > 0 {
			if now := time.Now(); now.Sub(r.lastTune) >= autoTuneEvery {
				r.lastTune = now
				for _, f := range r.autoTune {
					f()
				}
			}
		}
		if m > 0 {
			nh := r.held.Add(-m)
			r.stats.Held.Store(nh)
			r.count(m)
			kick(r.readerUp)
		}
		if err != nil {
			return err
		}
	}
}

// ringBuffer is the user-space proxy buffer: a single-producer,
// single-consumer ring (the reader fills at head, the writer drains at
// tail; relay.held says how much is in between).
type ringBuffer struct {
	b          []byte
	head, tail int // owned by the reader and the writer respectively
}

// fill reads at most max bytes; the relay never asks for more than the
// free space (the ring is high bytes long and max = high - held).
func (rb *ringBuffer) fill(src net.Conn, max int64, _ func()) (int64, error) {
	if end := int64(len(rb.b) - rb.head); max > end {
		max = end
	}
	n, err := src.Read(rb.b[rb.head : rb.head+int(max)])
	rb.head = (rb.head + n) % len(rb.b)
	return int64(n), err
}

func (rb *ringBuffer) drain(dst net.Conn, avail int64) (int64, error) {
	if end := int64(len(rb.b) - rb.tail); avail > end {
		avail = end
	}
	n, err := dst.Write(rb.b[rb.tail : rb.tail+int(avail)])
	rb.tail = (rb.tail + n) % len(rb.b)
	return int64(n), err
}

func (rb *ringBuffer) close() {}

// pipeBuffer is the kernel proxy buffer: a pipe that both directions of
// splice(2) go through.
type pipeBuffer struct {
	p     [2]int
	stats *RelayStats
}

func newPipeBuffer(high int64) (*pipeBuffer, error) {
	pb := &pipeBuffer{}
	if err := unix.Pipe2(pb.p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	// Each pipe slot holds at most one page, and small TCP segments use a
	// slot each: size the pipe well beyond high so slots rarely run out
	// before bytes do (when they do, fill waits for the writer).
	want := int(min(max(2*high, 64<<10), 1<<20))
	unix.FcntlInt(uintptr(pb.p[1]), unix.F_SETPIPE_SZ, want) // the kernel default stays if refused
	return pb, nil
}

func (pb *pipeBuffer) close() {
	unix.Close(pb.p[0])
	unix.Close(pb.p[1])
}

const spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK

func (pb *pipeBuffer) fill(src net.Conn, max int64, waitWriter func()) (int64, error) {
	raw, err := src.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	for {
		var n int64
		var serr error
		pipeFull := false
		rerr := raw.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, pb.p[1], nil, int(max), spliceFlags)
			if serr == unix.EAGAIN {
				// Either src has nothing (wait for it) or the pipe ran out
				// of slots while src has data: then waiting on src would
				// never wake, so wait for the writer instead.
				if q, _ := unix.IoctlGetInt(int(fd), unix.SIOCINQ); q > 0 {
					pipeFull = true
					return true
				}
				return false
			}
			return true
		})
		if rerr != nil {
			return 0, rerr
		}
		if pipeFull {
			waitWriter()
			continue
		}
		if serr != nil {
			return 0, serr
		}
		if n == 0 {
			return 0, io.EOF
		}
		pb.stats.SpliceBytes.Add(n)
		return n, nil
	}
}

func (pb *pipeBuffer) drain(dst net.Conn, avail int64) (int64, error) {
	raw, err := dst.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var m int64
	var serr error
	werr := raw.Write(func(fd uintptr) bool {
		m, serr = unix.Splice(pb.p[0], nil, int(fd), nil, int(avail), spliceFlags)
		return serr != unix.EAGAIN
	})
	if werr != nil {
		return 0, werr
	}
	if serr != nil {
		return 0, serr
	}
	return m, nil
}
