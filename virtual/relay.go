package virtual

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/mirror"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// A relay moves one direction of a proxied stream (src → dst) through a
// bounded proxy buffer with F5's proxy-buffer semantics: a reader goroutine
// fills the buffer from src and stops reading — so src's TCP receive window
// closes and the sender is held back — once the buffer holds BufHigh bytes;
// it resumes only when a writer goroutine has drained it below BufLow. The
// writer sends whatever is buffered to dst as fast as dst takes it.
//
// The buffer is a queue of 64 KiB chunks taken from a pool while data waits
// and given back as soon as it is written, so a connection holds buffer
// memory only for bytes actually in flight through Fulcrum (F5: "BIG-IP
// doesn't allocate the memory until it needs it").
//
// Why not splice(2): moving the bytes through a kernel pipe was measured
// here to stall a flow for seconds when either socket had multi-megabyte
// buffers (the receiving socket kept advertising a zero window with its
// queue empty, and only the sender's zero-window probes revived it), and it
// was no faster than copying through these chunks on loopback (15.5 against
// 13-14 Gbit/s). A proxy must not stall: the copy path is the one used.
type relay struct {
	src, dst  net.Conn
	high, low int64
	buf       chunkBuffer
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

	// Connection mirroring: every chunk read is mirrored (gate.Data)
	// before the writer may send it on (gate.Wait), so the standby always
	// holds what the destination may have received.
	gate    *mirror.Conn
	gateDir int
	gateCtx context.Context
	readOff int64        // bytes read from src (reader)
	wrote   atomic.Int64 // bytes written to dst
	pending []byte       // written to dst before anything read (a restored connection's unsent bytes)
	frozen  atomic.Bool  // stopped for a handover: sockets and buffer are left as they are
	srcEOF  atomic.Bool  // src sent its FIN
	ending  func()       // called before run closes or half-closes anything (mirrored: unmark)
}

// errFrozen ends a relay stopped by freeze.
var errFrozen = errors.New("relay frozen for a handover")

// freeze stops both of r's goroutines where they are, without closing
// anything: a planned handover takes the connection from here. The
// caller cancels the gate's context too.
func (r *relay) freeze() {
	r.frozen.Store(true)
	past := time.Unix(1, 0)
	r.src.SetReadDeadline(past)
	r.dst.SetWriteDeadline(past)
	kick(r.readerUp)
	kick(r.writerUp)
}

// thaw makes a frozen relay ready to run again (both its goroutines
// returned): a re-mirror, or a freeze called off.
func (r *relay) thaw() {
	r.frozen.Store(false)
	r.eof.Store(false)
	r.writerDone.Store(false)
	r.src.SetReadDeadline(time.Time{})
	r.dst.SetWriteDeadline(time.Time{})
}

// unwritten is what a frozen relay read and did not write yet: the rest of
// its pending bytes, then its buffer.
func (r *relay) unwritten() []byte {
	out := append([]byte(nil), r.pending...)
	r.buf.mu.Lock()
	defer r.buf.mu.Unlock()
	for _, c := range r.buf.chunks {
		out = append(out, c.b[c.r:c.w]...)
	}
	return out
}

// mirrorTo makes r mirror what it relays as direction dir of c (ctx ends
// the write gate's waits).
func (r *relay) mirrorTo(ctx context.Context, c *mirror.Conn, dir int) {
	r.gate, r.gateDir, r.gateCtx = c, dir, ctx
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
	High, Low  int64
	MaxHeld    atomic.Int64 // highest occupancy seen
	Pauses     atomic.Int64 // times reading stopped at the high mark
	LastResume atomic.Int64 // occupancy when reading last resumed
	Held       atomic.Int64 // occupancy now (mirrors relay.held)
}

// BufferSnapshot is RelayStats as plain values.
type BufferSnapshot struct {
	High       int64 `json:"high"`
	Low        int64 `json:"low"`
	Held       int64 `json:"held"`
	MaxHeld    int64 `json:"max_held"`
	Pauses     int64 `json:"pauses"`
	LastResume int64 `json:"last_resume_held"`
}

// Snapshot copies the counters.
func (s *RelayStats) Snapshot() BufferSnapshot {
	return BufferSnapshot{High: s.High, Low: s.Low, Held: s.Held.Load(), MaxHeld: s.MaxHeld.Load(),
		Pauses: s.Pauses.Load(), LastResume: s.LastResume.Load()}
}

// newRelay builds the relay src → dst with proxy-buffer marks high and low;
// chunks come from (and go back to) pool.
func newRelay(dst, src net.Conn, high, low int64, count func(int64), stats *RelayStats, pool *sync.Pool) *relay {
	if high <= 0 {
		high = 64 << 10
	}
	if low <= 0 || low > high {
		low = high
	}
	r := &relay{src: src, dst: dst, high: high, low: low, count: count,
		readerUp: make(chan struct{}, 1), writerUp: make(chan struct{}, 1), stats: stats,
		buf: chunkBuffer{pool: pool}}
	if r.stats == nil {
		r.stats = &RelayStats{}
	}
	r.stats.High, r.stats.Low = high, low
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
	if r.frozen.Load() {
		wg.Wait()
		return errFrozen // the buffer's bytes are mirrored: the handover needs nothing from it
	}
	if r.ending != nil {
		// Before any FIN or RST leaves: a mirrored connection's sockets
		// are marked so that the crash of this process sends neither.
		r.ending()
	}
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
				if r.dstFailed() || r.frozen.Load() {
					return
				}
			}
			r.stats.LastResume.Store(r.held.Load())
		}
		n, b, err := r.buf.fill(r.src, r.high-r.held.Load())
		if n > 0 && r.quickAck != nil {
			tcp.QuickAck(r.quickAck)
		}
		if n > 0 && r.gate != nil {
			// acked is read after wrote: a write in between only makes it
			// smaller (even below zero: Data clamps it), never claims
			// bytes the peer does not have.
			w := r.wrote.Load()
			r.gate.Data(r.gateDir, r.readOff, b, w-unsentBytes(r.dst))
			r.readOff += n
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
			if errors.Is(err, io.EOF) {
				r.srcEOF.Store(true)
			} else if !r.frozen.Load() {
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
	gate := r.gate // the reader's stays; the writer drops its own when mirroring is lost
	if len(r.pending) > 0 {
		if r.zeroWindow > 0 {
			r.dst.SetWriteDeadline(time.Now().Add(r.zeroWindow))
		}
		n, err := r.dst.Write(r.pending)
		r.count(int64(n))
		r.wrote.Add(int64(n))
		r.pending = r.pending[n:] // a frozen relay keeps the rest
		if err != nil {
			return err
		}
		r.pending = nil
	}
	for {
		if r.frozen.Load() {
			return errFrozen
		}
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
		limit := int64(chunkSize)
		if gate != nil {
			// The write gate: only bytes the standby already holds.
			w := r.wrote.Load()
			limit = r.buf.headLen()
			if !gate.Wait(r.gateCtx, r.gateDir, w+limit) {
				if r.frozen.Load() {
					return errFrozen
				}
				gate = nil // mirroring lost: go on unmirrored
				limit = chunkSize
			}
		}
		if ms, ok := r.dst.(interface{ SetMore(bool) }); ok {
			// An iSession stream: say whether more bytes follow at once,
			// so de-duplication chunks do not end where a write did.
			ms.SetMore(h > min(limit, r.buf.headLen()))
		}
		m, err := r.buf.drain(r.dst, limit)
		if len(r.autoTune) > 0 {
			if now := time.Now(); now.Sub(r.lastTune) >= autoTuneEvery {
				r.lastTune = now
				for _, f := range r.autoTune {
					f()
				}
			}
		}
		if m > 0 {
			r.wrote.Add(m)
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

// chunkSize is the size of one proxy-buffer chunk (and of one read).
const chunkSize = 64 << 10

type chunk struct {
	b       [chunkSize]byte
	r, w    int  // written to dst up to r, read from src up to w
	filling bool // the reader is reading into b[w:]
}

// chunkBuffer is a single-producer, single-consumer queue of chunks: the
// reader fills the tail chunk, the writer drains the head one. The mutex
// guards the list, the offsets and the filling flag, never the copies: the
// reader only writes b[w:] of the tail and the writer only reads b[r:w] of
// the head. A drained chunk goes back to the pool at once, so a quiet
// connection holds no buffer memory.
type chunkBuffer struct {
	pool   *sync.Pool
	mu     sync.Mutex
	chunks []*chunk
}

// reserve returns the chunk to read into and where, marking it filling.
func (cb *chunkBuffer) reserve() (*chunk, int) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if n := len(cb.chunks); n > 0 && cb.chunks[n-1].w < chunkSize {
		c := cb.chunks[n-1]
		c.filling = true
		return c, c.w
	}
	var c *chunk
	if cb.pool != nil {
		c, _ = cb.pool.Get().(*chunk)
	}
	if c == nil {
		c = new(chunk)
	}
	c.r, c.w, c.filling = 0, 0, true
	cb.chunks = append(cb.chunks, c)
	return c, 0
}

// commit records n bytes read into c; an empty chunk nobody needs goes back.
func (cb *chunkBuffer) commit(c *chunk, n int) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	c.w += n
	c.filling = false
	cb.release(c)
}

// release frees c if it is the head and holds nothing more to write and
// nothing is being read into it. Called with mu held.
func (cb *chunkBuffer) release(c *chunk) {
	if len(cb.chunks) == 0 || cb.chunks[0] != c || c.r < c.w || c.filling {
		return
	}
	if c.w < chunkSize && len(cb.chunks) > 1 {
		return // cannot happen: only the tail is ever partly filled
	}
	cb.chunks[0] = nil
	cb.chunks = cb.chunks[1:]
	if cb.pool != nil {
		cb.pool.Put(c)
	}
}

// fill reads at most max bytes from src, blocking until some arrive. From a
// TCP socket it reads inside the poller's callback, taking a chunk only when
// the socket is readable, so a connection waiting for data holds none. It
// returns the bytes read too: they stay in the buffer until the writer has
// written them.
func (cb *chunkBuffer) fill(src net.Conn, max int64) (int64, []byte, error) {
	tc, ok := src.(*net.TCPConn)
	if !ok {
		c, from := cb.reserve()
		n, err := src.Read(c.b[from:min(chunkSize, from+int(max))])
		cb.commit(c, n)
		return int64(n), c.b[from : from+n], err
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, nil, err
	}
	var n int
	var rerr error
	var got []byte
	err = rc.Read(func(fd uintptr) bool {
		c, from := cb.reserve()
		for {
			n, rerr = unix.Read(int(fd), c.b[from:min(chunkSize, from+int(max))])
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			cb.commit(c, 0)
			return false // wait for readability without holding the chunk
		}
		if n < 0 {
			n = 0
		}
		got = c.b[from : from+n]
		cb.commit(c, n)
		return true
	})
	if err != nil {
		return 0, nil, err
	}
	if rerr != nil {
		return int64(n), got, rerr
	}
	if n == 0 {
		return 0, nil, io.EOF
	}
	return int64(n), got, nil
}

// headLen is how many bytes the head chunk holds for the writer.
func (cb *chunkBuffer) headLen() int64 {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if len(cb.chunks) == 0 {
		return 0
	}
	c := cb.chunks[0]
	return int64(c.w - c.r)
}

// drain writes the head chunk's unwritten bytes, at most limit, to dst and
// frees the chunk once it is empty.
func (cb *chunkBuffer) drain(dst net.Conn, limit int64) (int64, error) {
	cb.mu.Lock()
	if len(cb.chunks) == 0 {
		cb.mu.Unlock()
		return 0, nil
	}
	c := cb.chunks[0]
	from, to := c.r, min(c.w, c.r+int(limit))
	cb.mu.Unlock()
	n, err := dst.Write(c.b[from:to])
	cb.mu.Lock()
	c.r += n
	cb.release(c)
	cb.mu.Unlock()
	return int64(n), err
}

// close gives back whatever chunks remain (the relay has stopped).
func (cb *chunkBuffer) close() {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for _, c := range cb.chunks {
		if cb.pool != nil {
			cb.pool.Put(c)
		}
	}
	cb.chunks = nil
}
