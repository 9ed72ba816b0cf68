package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Options configures a Session. Zero values take the defaults.
type Options struct {
	// Encoder and Decoder transform DATA payloads; nil sends them raw.
	// Both ends must agree (the caller negotiates it).
	Encoder PayloadEncoder
	Decoder PayloadDecoder
	// InitialWindow is the receive window each new stream starts with
	// (default 256 KiB); PeerInitialWindow is the peer's, which is this
	// end's initial send window (default InitialWindow).
	InitialWindow     int
	PeerInitialWindow int
	// MaxWindow caps a stream's auto-tuned receive window (default 64 MiB).
	// The window counts raw bytes: with de-duplication a stream's raw
	// rate can be many times the link's, and so must its window be.
	MaxWindow int
	// SessionWindow is how much all streams' windows may grow beyond their
	// initial windows together (default 4 × MaxWindow).
	SessionWindow int
	// MaxStreams is how many streams the peer may have open at once
	// (default 1024); AcceptBacklog how many wait for Accept (default 256).
	MaxStreams    int
	AcceptBacklog int
	// MaxFrame is the largest frame payload either end sends (default
	// 256 KiB; at least 16 KiB).
	MaxFrame int
	// KeepAliveInterval is the time between PINGs (default 15 s; negative
	// disables them); a session that receives nothing for
	// KeepAliveTimeout (default 45 s) is closed.
	KeepAliveInterval time.Duration
	KeepAliveTimeout  time.Duration
	// WriteTimeout bounds each write to the connection (default 30 s).
	WriteTimeout time.Duration
}

func (o *Options) fill() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.InitialWindow, 256<<10)
	def(&o.PeerInitialWindow, o.InitialWindow)
	def(&o.MaxWindow, 64<<20)
	o.MaxWindow = max(o.MaxWindow, o.InitialWindow)
	def(&o.SessionWindow, 4*o.MaxWindow)
	def(&o.MaxStreams, 1024)
	def(&o.AcceptBacklog, 256)
	def(&o.MaxFrame, 256<<10)
	o.MaxFrame = min(max(o.MaxFrame, 16<<10), 1<<24-1)
	if o.KeepAliveInterval == 0 {
		o.KeepAliveInterval = 15 * time.Second
	}
	if o.KeepAliveTimeout <= 0 {
		o.KeepAliveTimeout = 45 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
}

// Stats are a session's counters; Session.Stats returns a snapshot.
type Stats struct {
	StreamsOpen      int64 // streams in the session's table now
	StreamsOpened    uint64
	StreamsAccepted  uint64
	StreamsRefused   uint64 // peer's opens refused (limits, backlog, going away)
	FramesIn         uint64
	FramesOut        uint64
	RawIn, RawOut    uint64 // DATA bytes after decoding / before encoding
	WireIn, WireOut  uint64 // bytes read from / written to the connection
	WindowStalls     uint64 // a stream had data queued and no send window
	DecodeFailures   uint64
	ResyncsSent      uint64
	ResyncsReceived  uint64
	DroppedFrames    uint64 // frames for streams already gone
	RTT              time.Duration
	WindowGrowths    uint64
	SessionWindowUse int64 // window growth in use beyond initial windows
}

type counters struct {
	opened, accepted, refused, framesIn, framesOut, rawIn, rawOut, wireIn, wireOut,
	stalls, decodeFail, resyncOut, resyncIn, dropped, growths atomic.Uint64
	rtt, minRTT atomic.Int64
}

// Session is one multiplexed connection.
type Session struct {
	conn   net.Conn
	opt    Options
	client bool
	enc    PayloadEncoder
	dec    PayloadDecoder
	start  time.Time
	// pathRTT reads the kernel's minimum RTT of the connection (nil: not
	// a TCP connection).
	pathRTT func() time.Duration

	mu         sync.Mutex
	streams    map[uint32]*Stream
	peerOpen   int    // streams the peer opened, still in the table
	nextID     uint32 // next ID this end opens
	lastPeerID uint32
	ready      []*Stream // streams with something for the writer, FIFO
	ctrl       []byte    // control frames waiting for the writer
	resync     []uint8   // epochs the peer's decoder reset to, for the encoder
	goAwayIn   bool      // the peer will accept no new streams
	goAwayOut  bool      // this end accepts no new streams
	growth     int       // window growth granted beyond initial windows
	tuned      int       // the largest window auto-tuning reached: new streams start there
	err        error     // why the session closed
	lastRecv   time.Time
	pingWait   []pingWaiter

	wake     chan struct{} // writer: something to do
	accept   chan *Stream
	done     chan struct{}
	closeOne sync.Once
	wg       sync.WaitGroup
	c        counters
}

// Client starts a session on conn as the end that opens odd stream IDs.
func Client(conn net.Conn, opt Options) *Session { return newSession(conn, opt, true) }

// Server starts a session on conn as the end that opens even stream IDs.
func Server(conn net.Conn, opt Options) *Session { return newSession(conn, opt, false) }

func newSession(conn net.Conn, opt Options, client bool) *Session {
	opt.fill()
	s := &Session{
		conn: conn, opt: opt, client: client, enc: opt.Encoder, dec: opt.Decoder,
		start:   time.Now(),
		streams: make(map[uint32]*Stream),
		wake:    make(chan struct{}, 1),
		accept:  make(chan *Stream, opt.AcceptBacklog),
		done:    make(chan struct{}),
	}
	s.lastRecv = s.start
	s.pathRTT = kernelMinRTT(conn)
	s.nextID = 2
	if client {
		s.nextID = 1
	}
	s.wg.Add(2)
	go s.readLoop()
	go s.writeLoop()
	if opt.KeepAliveInterval > 0 {
		s.wg.Add(1)
		go s.keepAlive()
	}
	s.sendPing() // a first RTT sample for window tuning
	return s
}

// Done is closed when the session has closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session closed (nil while it is open).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// ErrSessionClosed is what Close leaves as the session's error.
var ErrSessionClosed = errors.New("mux: session closed")

// ErrGoAway is returned by Open after the peer said it accepts no more
// streams.
var ErrGoAway = errors.New("mux: peer is going away")

// Close closes the session and the connection; every stream fails.
func (s *Session) Close() error {
	s.CloseWithError(ErrSessionClosed)
	s.wg.Wait()
	return nil
}

// CloseWithError closes the session with err as the reason streams see.
func (s *Session) CloseWithError(err error) {
	s.closeOne.Do(func() {
		s.mu.Lock()
		s.err = err
		streams := s.streams
		s.streams = map[uint32]*Stream{}
		s.mu.Unlock()
		close(s.done)
		s.conn.Close()
		for _, st := range streams {
			st.notify()
		}
	})
}

func (s *Session) closedErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// NumStreams is how many streams are in the session's table.
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// RTT is the smoothed round-trip time (0 before the first PING returns).
func (s *Session) RTT() time.Duration { return time.Duration(s.c.rtt.Load()) }

// MinRTT is the path's round-trip time without queueing: the kernel's
// minimum RTT of the TCP connection under the session (TCP_INFO) when
// there is one, else the least PING round trip. A window's own bytes
// queued in the socket buffers inflate every later PING sample.
func (s *Session) MinRTT() time.Duration {
	if s.pathRTT != nil {
		if d := s.pathRTT(); d > 0 {
			return d
		}
	}
	return time.Duration(s.c.minRTT.Load())
}

// kernelMinRTT returns a function reading the minimum RTT the kernel
// measured on conn's TCP connection (through TLS), or nil when conn is
// not one.
func kernelMinRTT(conn net.Conn) func() time.Duration {
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = u.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() time.Duration {
		var d time.Duration
		rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				d = time.Duration(info.Min_rtt) * time.Microsecond
			}
		})
		return d
	}
}

// Stats returns a snapshot of the counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	open, growth := len(s.streams), s.growth
	s.mu.Unlock()
	c := &s.c
	return Stats{
		StreamsOpen: int64(open), StreamsOpened: c.opened.Load(), StreamsAccepted: c.accepted.Load(),
		StreamsRefused: c.refused.Load(), FramesIn: c.framesIn.Load(), FramesOut: c.framesOut.Load(),
		RawIn: c.rawIn.Load(), RawOut: c.rawOut.Load(), WireIn: c.wireIn.Load(), WireOut: c.wireOut.Load(),
		WindowStalls: c.stalls.Load(), DecodeFailures: c.decodeFail.Load(), ResyncsSent: c.resyncOut.Load(),
		ResyncsReceived: c.resyncIn.Load(), DroppedFrames: c.dropped.Load(), RTT: s.RTT(),
		WindowGrowths: c.growths.Load(), SessionWindowUse: int64(growth),
	}
}

// Open opens a stream whose OPEN frame carries hdr (at most 4 KiB). It
// does not wait for the peer: the OPEN goes out at once, with whatever was
// written by then.
func (s *Session) Open(ctx context.Context, hdr []byte) (*Stream, error) {
	return s.OpenData(ctx, hdr, nil)
}

// OpenData is Open with data queued before the OPEN frame is built, so the
// first data travels in the OPEN frame itself (up to the frame and window
// limits).
func (s *Session) OpenData(ctx context.Context, hdr, data []byte) (*Stream, error) {
	if len(hdr) > 4096 {
		return nil, fmt.Errorf("mux: open header of %d bytes exceeds 4096", len(hdr))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if s.goAwayIn {
		return nil, ErrGoAway
	}
	if s.nextID > 1<<31 {
		return nil, errors.New("mux: stream IDs exhausted")
	}
	st := s.newStream(s.nextID, append([]byte(nil), hdr...), true)
	st.send.push(data)
	s.nextID += 2
	s.streams[st.id] = st
	s.c.opened.Add(1)
	s.markReadyLocked(st)
	return st, nil
}

// CanOpen reports whether Open can still succeed: the session is open,
// the peer did not send GOAWAY, and stream IDs are left (after about 2^30
// streams a session must be replaced).
func (s *Session) CanOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err == nil && !s.goAwayIn && s.nextID <= 1<<31
}

// Accept waits for a stream the peer opened.
func (s *Session) Accept() (*Stream, error) {
	select {
	case st := <-s.accept:
		return st, nil
	case <-s.done:
		return nil, s.closedErr()
	}
}

// GoAway tells the peer that no new streams will be accepted; streams
// already open go on.
func (s *Session) GoAway(code uint32, reason string) {
	s.mu.Lock()
	if !s.goAwayOut && s.err == nil {
		s.goAwayOut = true
		s.ctrl = appendCoded(s.ctrl, typeGoAway, 0, code, reason)
	}
	s.mu.Unlock()
	s.kick()
}

// Ping measures one round trip.
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	t := time.Now()
	ch := make(chan struct{})
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return 0, s.err
	}
	id := uint64(time.Since(s.start))
	s.pingWait = append(s.pingWait, pingWaiter{id: id, ch: ch})
	s.ctrl = appendPing(s.ctrl, 0, id)
	s.mu.Unlock()
	s.kick()
	select {
	case <-ch:
		return time.Since(t), nil
	case <-s.done:
		return 0, s.closedErr()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

type pingWaiter struct {
	id uint64
	ch chan struct{}
}

func appendPing(b []byte, flags uint8, id uint64) []byte {
	b = appendHeader(b, typePing, flags, 0, 8)
	return binary.BigEndian.AppendUint64(b, id)
}

func (s *Session) sendPing() {
	s.mu.Lock()
	s.ctrl = appendPing(s.ctrl, 0, uint64(time.Since(s.start)))
	s.mu.Unlock()
	s.kick()
}

func (s *Session) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// markReadyLocked queues st for the writer. s.mu held.
func (s *Session) markReadyLocked(st *Stream) {
	if !st.queued {
		st.queued = true
		s.ready = append(s.ready, st)
		s.kick()
	}
}

func (s *Session) keepAlive() {
	defer s.wg.Done()
	t := time.NewTicker(s.opt.KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		idle := time.Since(s.lastRecv)
		s.mu.Unlock()
		if idle > s.opt.KeepAliveTimeout {
			s.CloseWithError(fmt.Errorf("mux: peer silent for %v (keepalive timeout %v)", idle.Round(time.Millisecond), s.opt.KeepAliveTimeout))
			return
		}
		s.sendPing()
	}
}

// ---- writer ----

// maxBatch is how many bytes of frames the writer gathers per write.
const maxBatch = 512 << 10

// quantum is the most raw data of one stream per turn.
const quantum = 128 << 10

func (s *Session) writeLoop() {
	defer s.wg.Done()
	var out []byte
	for {
		out = s.fill(out[:0])
		if len(out) == 0 {
			select {
			case <-s.wake:
				continue
			case <-s.done:
				return
			}
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.opt.WriteTimeout))
		n, err := s.conn.Write(out)
		s.c.wireOut.Add(uint64(n))
		if err != nil {
			s.CloseWithError(fmt.Errorf("mux: write: %w", err))
			return
		}
		if cap(out) > 4*maxBatch {
			out = nil
		}
	}
}

// fill appends to out the frames ready to go, control frames first, up to
// about maxBatch bytes.
func (s *Session) fill(out []byte) []byte {
	for len(out) < maxBatch {
		s.mu.Lock()
		if s.err != nil {
			s.mu.Unlock()
			return out[:0]
		}
		if len(s.ctrl) > 0 {
			out = append(out, s.ctrl...)
			s.c.framesOut.Add(uint64(countFrames(s.ctrl)))
			s.ctrl = s.ctrl[:0]
		}
		resync := s.resync
		s.resync = nil
		var st *Stream
		for len(s.ready) > 0 && st == nil {
			st = s.ready[0]
			s.ready = s.ready[1:]
			st.queued = false
			if !st.sendable() {
				if st.send.len() > 0 && st.sendWindow == 0 && !st.reset {
					s.c.stalls.Add(1)
				}
				st = nil
			}
		}
		if st == nil {
			s.mu.Unlock()
			if s.enc != nil {
				for _, e := range resync {
					s.enc.Resync(e)
				}
			}
			return out
		}
		// Take the stream's frame parameters under the lock; the data
		// slice stays valid while the writer alone consumes it.
		data := st.send.pin()
		n := min(len(data), st.sendWindow, quantum, s.opt.MaxFrame-maxExpansion(s.opt.MaxFrame))
		final := n == len(data)
		fin := st.finQueued && final
		open := !st.openSent
		// A tail that more bytes will follow at once waits for them
		// rather than end a chunk early (never an OPEN: the stream's
		// first bytes go at once).
		hold := final && !open && !st.finQueued && (st.more || st.pushing)
		st.openSent = true
		s.mu.Unlock()
		if s.enc != nil {
			for _, e := range resync {
				s.enc.Resync(e)
			}
		}
		var consumed int
		var ferr error
		mark := len(out)
		out, consumed, ferr = s.frame(out, st, open, data[:n], final && !hold, hold, fin)
		if ferr == nil && hold && consumed == 0 {
			// Nothing ended a chunk: held until the stream's next Write
			// or SetMore(false) makes it ready again.
			out = out[:mark]
			s.mu.Lock()
			st.send.unpin()
			s.mu.Unlock()
			continue
		}
		if ferr != nil {
			// The encoder broke its contract: a bug on this end. Nothing
			// sent after it could be decoded; end this session, not the
			// process.
			s.mu.Lock()
			st.send.unpin()
			s.mu.Unlock()
			s.CloseWithError(ferr)
			return out[:0]
		}
		s.mu.Lock()
		if open && st.openCredit > 0 {
			out = appendWindow(out, st.id, uint32(st.openCredit))
			st.openCredit = 0
			s.c.framesOut.Add(1)
		}
		if st.reset {
			// Reset while the frame was built: it goes out all the same
			// (the peer's decoder must see every encoded payload) and is
			// dropped there.
			s.mu.Unlock()
			s.c.framesOut.Add(1)
			continue
		}
		st.send.unpin()
		st.send.pop(consumed)
		st.sendWindow -= consumed
		if fin && consumed == n {
			st.finSent = true
			s.maybeRemoveLocked(st)
		}
		if st.sendable() {
			s.markReadyLocked(st)
		}
		s.mu.Unlock()
		st.notifyWriter()
		s.c.rawOut.Add(uint64(consumed))
		s.c.framesOut.Add(1)
	}
	return out
}

// frame appends one OPEN or DATA frame of st carrying (a prefix of) data.
// When the encoder consumes nothing of data that is not final, it is
// encoded as final, unless hold: then frame appends nothing and returns 0.
func (s *Session) frame(out []byte, st *Stream, open bool, data []byte, final, hold, fin bool) ([]byte, int, error) {
	typ := uint8(typeData)
	if open {
		typ = typeOpen
	}
	h := len(out)
	out = appendHeader(out, typ, 0, st.id, 0)
	if open {
		out = binary.BigEndian.AppendUint16(out, uint16(len(st.hdr)))
		out = append(out, st.hdr...)
	}
	consumed := len(data)
	var flags uint8
	if s.enc != nil && len(data) > 0 {
		flags |= flagENC
		mark := len(out)
		out, consumed = s.enc.Encode(out, data, final)
		if consumed == 0 && !final {
			if hold {
				return out[:h], 0, nil
			}
			out = out[:mark]
			final = true
			out, consumed = s.enc.Encode(out, data, true)
		}
	} else {
		out = append(out, data...)
	}
	if fin && consumed == len(data) {
		flags |= flagFIN
	}
	length := len(out) - h - headerLen
	if body := length - headerBytes(open, st); body > s.opt.MaxFrame || body > len(data)+maxExpansion(len(data)) {
		// An encoder broke its expansion bound: a bug, not a peer's fault.
		return out, 0, fmt.Errorf("mux: internal error: %d bytes encoded to %d, beyond the bound or frame size %d", len(data), body, s.opt.MaxFrame)
	}
	putLength(out[h:], length)
	out[h+4] = flags
	return out, consumed, nil
}

// headerBytes is the size of an OPEN frame's header part.
func headerBytes(open bool, st *Stream) int {
	if open {
		return 2 + len(st.hdr)
	}
	return 0
}

func countFrames(b []byte) int {
	n := 0
	for len(b) >= headerLen {
		l := parseHeader(b).length
		b = b[min(len(b), headerLen+l):]
		n++
	}
	return n
}

// ---- reader ----

// maxCtrlBacklog bounds the control frames waiting for the writer.
const maxCtrlBacklog = 1 << 20

// ErrProtocol wraps the connection errors a peer causes.
var ErrProtocol = errors.New("mux: protocol error")

func (s *Session) readLoop() {
	defer s.wg.Done()
	r := bufio.NewReaderSize(countingReader{s.conn, &s.c.wireIn}, 64<<10)
	var hb [headerLen]byte
	var payload, decoded []byte
	for {
		if _, err := io.ReadFull(r, hb[:]); err != nil {
			s.CloseWithError(readErr(err))
			return
		}
		h := parseHeader(hb[:])
		if h.typ >= numTypes {
			s.CloseWithError(fmt.Errorf("%w: unknown frame type %d", ErrProtocol, h.typ))
			return
		}
		limit := s.opt.MaxFrame + 4096 + 2
		if h.typ != typeData && h.typ != typeOpen {
			limit = 4 + maxReason
		}
		if h.length > limit {
			s.CloseWithError(fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrProtocol, h.length, limit))
			return
		}
		if cap(payload) < h.length {
			payload = make([]byte, h.length)
		}
		payload = payload[:h.length]
		if _, err := io.ReadFull(r, payload); err != nil {
			s.CloseWithError(readErr(err))
			return
		}
		s.c.framesIn.Add(1)
		s.mu.Lock()
		s.lastRecv = time.Now()
		s.mu.Unlock()
		var err error
		decoded, err = s.handle(h, payload, decoded[:0])
		if err != nil {
			s.CloseWithError(err)
			return
		}
		// Replies the peer's frames call for (PING acks, RSTs of refused
		// opens) wait in s.ctrl until the writer sends them; a peer that
		// sends them and does not read would grow it without end.
		s.mu.Lock()
		backlog := len(s.ctrl)
		s.mu.Unlock()
		if backlog > maxCtrlBacklog {
			s.CloseWithError(fmt.Errorf("%w: %d bytes of replies queued: the peer sends control frames and does not read", ErrProtocol, backlog))
			return
		}
		if cap(decoded) > 4<<20 {
			decoded = nil
		}
	}
}

func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("mux: connection closed by peer: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("mux: read: %w", err)
}

type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(uint64(n))
	return n, err
}

// handle processes one frame; an error closes the session.
func (s *Session) handle(h header, p, buf []byte) ([]byte, error) {
	switch h.typ {
	case typeData, typeOpen:
		return s.handleData(h, p, buf)
	case typeWindow:
		if len(p) != 4 || h.stream == 0 {
			return buf, fmt.Errorf("%w: bad WINDOW frame", ErrProtocol)
		}
		inc := binary.BigEndian.Uint32(p)
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.streams[h.stream]
		if st == nil {
			return buf, nil // a stream that ended
		}
		if inc == 0 || int64(st.sendWindow)+int64(inc) > 1<<31-1 {
			return buf, fmt.Errorf("%w: WINDOW increment %d on stream %d", ErrProtocol, inc, h.stream)
		}
		st.sendWindow += int(inc)
		if st.sendable() {
			s.markReadyLocked(st)
		}
		st.notifyWriter()
	case typeRst:
		if len(p) < 4 || h.stream == 0 {
			return buf, fmt.Errorf("%w: bad RST frame", ErrProtocol)
		}
		s.mu.Lock()
		st := s.streams[h.stream]
		if st != nil {
			st.resetLocked(&ResetError{Code: binary.BigEndian.Uint32(p), Reason: printable(p[4:]), Remote: true}, false)
		}
		s.mu.Unlock()
	case typePing:
		if len(p) != 8 {
			return buf, fmt.Errorf("%w: bad PING frame", ErrProtocol)
		}
		id := binary.BigEndian.Uint64(p)
		s.mu.Lock()
		defer s.mu.Unlock()
		if h.flags&flagACK == 0 {
			s.ctrl = appendPing(s.ctrl, flagACK, id)
			s.kick()
			return buf, nil
		}
		sample := time.Since(s.start) - time.Duration(id)
		if sample < 0 || id > uint64(time.Since(s.start)) {
			return buf, nil // not one of ours
		}
		if old := s.c.rtt.Load(); old == 0 {
			s.c.rtt.Store(int64(sample))
		} else {
			s.c.rtt.Store(old + (int64(sample)-old)/8)
		}
		if m := s.c.minRTT.Load(); m == 0 || int64(sample) < m {
			s.c.minRTT.Store(int64(sample))
		}
		for i := 0; i < len(s.pingWait); i++ {
			if s.pingWait[i].id == id {
				close(s.pingWait[i].ch)
				s.pingWait = append(s.pingWait[:i], s.pingWait[i+1:]...)
				break
			}
		}
	case typeGoAway:
		if len(p) < 4 || h.stream != 0 {
			return buf, fmt.Errorf("%w: bad GOAWAY frame", ErrProtocol)
		}
		s.mu.Lock()
		s.goAwayIn = true
		s.mu.Unlock()
	case typeResync:
		if len(p) != 1 || h.stream != 0 {
			return buf, fmt.Errorf("%w: bad RESYNC frame", ErrProtocol)
		}
		s.c.resyncIn.Add(1)
		s.mu.Lock()
		s.resync = append(s.resync, p[0])
		s.mu.Unlock()
		s.kick()
	}
	return buf, nil
}

func printable(b []byte) string {
	r := []rune(string(b))
	for i, c := range r {
		if c < 0x20 || c == 0x7f {
			r[i] = '?'
		}
	}
	return string(r)
}

// handleData processes a DATA or OPEN frame.
func (s *Session) handleData(h header, p, buf []byte) ([]byte, error) {
	if h.stream == 0 {
		return buf, fmt.Errorf("%w: data on stream 0", ErrProtocol)
	}
	var hdr []byte
	if h.typ == typeOpen {
		if len(p) < 2 || len(p) < 2+int(binary.BigEndian.Uint16(p)) {
			return buf, fmt.Errorf("%w: bad OPEN frame", ErrProtocol)
		}
		n := int(binary.BigEndian.Uint16(p))
		hdr, p = p[2:2+n], p[2+n:]
	}
	s.mu.Lock()
	st := s.streams[h.stream]
	var opened, refused bool
	if h.typ == typeOpen {
		if st != nil || h.stream&1 == s.nextID&1 || h.stream <= s.lastPeerID {
			s.mu.Unlock()
			return buf, fmt.Errorf("%w: OPEN of stream %d out of order or reused", ErrProtocol, h.stream)
		}
		s.lastPeerID = h.stream
		switch {
		case s.goAwayOut || s.peerOpen >= s.opt.MaxStreams || len(s.accept) == cap(s.accept):
			refused = true
			s.c.refused.Add(1)
			s.ctrl = appendCoded(s.ctrl, typeRst, h.stream, CodeRefused, "refused")
			s.kick()
		default:
			st = s.newStream(h.stream, append([]byte(nil), hdr...), false)
			st.openSent = true
			if st.openCredit > 0 {
				s.ctrl = appendWindow(s.ctrl, st.id, uint32(st.openCredit))
				st.openCredit = 0
				s.kick()
			}
			s.streams[st.id] = st
			s.peerOpen++
			opened = true
		}
	}
	maxOut := s.opt.MaxWindow
	if st != nil {
		maxOut = st.recvAvail
	}
	s.mu.Unlock()

	// Decode whatever the stream's fate: the decoder must see every
	// encoded payload to stay in step with the peer's encoder.
	data := p
	var derr error
	if h.flags&flagENC != 0 {
		if s.dec == nil {
			return buf, fmt.Errorf("%w: encoded frame without a negotiated decoder", ErrProtocol)
		}
		buf, derr = s.dec.Decode(buf, p, maxOut)
		data = buf
		if derr != nil {
			s.c.decodeFail.Add(1)
			if epoch, reset := s.dec.Resync(); reset {
				s.c.resyncOut.Add(1)
				s.mu.Lock()
				s.ctrl = append(appendHeader(s.ctrl, typeResync, 0, 0, 1), epoch)
				s.mu.Unlock()
				s.kick()
			}
		}
	}
	s.c.rawIn.Add(uint64(len(data)))

	s.mu.Lock()
	defer s.mu.Unlock()
	if st == nil || s.streams[h.stream] != st {
		if !refused && h.typ == typeData && (h.stream&1 == s.nextID&1 && h.stream >= s.nextID ||
			h.stream&1 != s.nextID&1 && h.stream > s.lastPeerID) {
			return buf, fmt.Errorf("%w: DATA for stream %d never opened", ErrProtocol, h.stream)
		}
		s.c.dropped.Add(1)
		return buf, nil
	}
	if derr != nil {
		st.resetLocked(&ResetError{Code: CodeOptimization, Reason: "payload failed to decode: " + derr.Error()}, true)
	} else {
		if st.recvFIN {
			return buf, fmt.Errorf("%w: DATA after FIN on stream %d", ErrProtocol, h.stream)
		}
		if len(data) > st.recvAvail {
			return buf, fmt.Errorf("%w: stream %d overran its window (%d > %d)", ErrProtocol, h.stream, len(data), st.recvAvail)
		}
		st.recvAvail -= len(data)
		if !st.reset && !st.readClosed {
			st.recv.push(data)
		} else {
			st.unacked += len(data) // nobody reads: count it as consumed
		}
		if h.flags&flagFIN != 0 {
			st.recvFIN = true
			s.maybeRemoveLocked(st)
		}
		st.notifyReader()
	}
	if opened {
		s.c.accepted.Add(1)
		s.accept <- st // cannot block: checked under the same lock
	}
	return buf, nil
}

// maybeRemoveLocked drops st from the table once nothing more can arrive
// for it or leave for it.
func (s *Session) maybeRemoveLocked(st *Stream) {
	if (st.finSent && st.recvFIN) || st.reset {
		if s.streams[st.id] == st {
			delete(s.streams, st.id)
			if !st.local {
				s.peerOpen--
			}
			s.growth -= st.grown
			st.grown = 0
		}
	}
}
