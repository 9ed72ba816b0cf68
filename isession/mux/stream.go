package mux

import (
	"io"
	"net"
	"os"
	"time"
)

// Stream is one inner connection. It is a net.Conn with half-close
// (CloseWrite). Read and Write may be called concurrently with each other
// but each only from one goroutine at a time, as with a TCP connection.
type Stream struct {
	s     *Session
	id    uint32
	hdr   []byte
	local bool // opened by this end

	// All below guarded by s.mu.
	send       queue // queued raw bytes not yet framed
	sendWindow int   // bytes the peer lets us send
	finQueued  bool  // FIN goes after the queued bytes
	// more (SetMore) and pushing (a Write still queueing) say that more
	// bytes follow at once: the writer may then hold back a tail too
	// short to end a de-duplication chunk (see fill).
	more, pushing bool
	finSent       bool
	openSent      bool
	queued        bool // in s.ready

	recv      queue // received, not yet read
	recvAvail int   // bytes the peer may still send (its send window as we see it)
	window    int   // current receive window
	unacked   int   // read since the last WINDOW
	lastCred  time.Time
	grown     int // window beyond the initial one, from the session budget
	recvFIN   bool
	// openCredit is credit beyond the initial window granted at creation,
	// not yet sent (it follows the OPEN frame).
	openCredit int

	readClosed  bool
	writeClosed bool
	reset       bool
	err         error // the reset error

	rdl, wdl time.Time

	rch, wch chan struct{}
}

// newStream makes a stream. s.mu held. A new stream's receive window
// starts at the largest window auto-tuning has reached on this session
// (the path is the same for every stream), as far as the growth budget
// allows: the credit beyond the initial window the peer assumes goes out
// in a WINDOW frame right after the stream's OPEN, so even a stream's
// first round trip can fill the path.
func (s *Session) newStream(id uint32, hdr []byte, local bool) *Stream {
	st := &Stream{
		s: s, id: id, hdr: hdr, local: local,
		sendWindow: s.opt.PeerInitialWindow,
		recvAvail:  s.opt.InitialWindow,
		window:     s.opt.InitialWindow,
		rch:        make(chan struct{}, 1),
		wch:        make(chan struct{}, 1),
	}
	if extra := min(s.tuned-st.window, s.opt.SessionWindow-s.growth); extra > 0 {
		st.window += extra
		st.recvAvail += extra
		st.grown += extra
		s.growth += extra
		st.openCredit = extra
	}
	return st
}

// ID is the stream's ID on the wire.
func (st *Stream) ID() uint32 { return st.id }

// Header is the open header the opener sent.
func (st *Stream) Header() []byte { return st.hdr }

// sendable: the writer has something to do for st. s.mu held.
func (st *Stream) sendable() bool {
	if st.reset {
		return false
	}
	return !st.openSent || (st.send.len() > 0 && st.sendWindow > 0) ||
		(st.finQueued && !st.finSent && st.send.len() == 0)
}

func (st *Stream) notifyReader() {
	select {
	case st.rch <- struct{}{}:
	default:
	}
}

func (st *Stream) notifyWriter() {
	select {
	case st.wch <- struct{}{}:
	default:
	}
}

func (st *Stream) notify() {
	st.notifyReader()
	st.notifyWriter()
}

// wait blocks until ch is signalled, the session closes or the deadline
// passes; it reports false on the deadline.
func (st *Stream) wait(ch chan struct{}, deadline time.Time) bool {
	if deadline.IsZero() {
		select {
		case <-ch:
		case <-st.s.done:
		}
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-st.s.done:
	case <-t.C:
	}
	return true
}

// Read reads received data; io.EOF after the peer's FIN.
func (st *Stream) Read(p []byte) (int, error) {
	s := st.s
	for {
		s.mu.Lock()
		switch {
		case st.recv.len() > 0:
			n := copy(p, st.recv.bytes())
			st.recv.pop(n)
			st.unacked += n
			s.creditLocked(st)
			s.mu.Unlock()
			return n, nil
		case st.reset:
			err := st.err
			s.mu.Unlock()
			return 0, err
		case st.recvFIN:
			s.mu.Unlock()
			return 0, io.EOF
		case st.readClosed:
			s.mu.Unlock()
			return 0, net.ErrClosed
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return 0, err
		case len(p) == 0:
			s.mu.Unlock()
			return 0, nil
		}
		dl := st.rdl
		s.mu.Unlock()
		if !st.wait(st.rch, dl) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// creditLocked returns credit to the peer once half the window was read,
// growing the window when credit falls due within two (least) round
// trips.
func (s *Session) creditLocked(st *Stream) {
	if st.unacked < st.window/2 || st.recvFIN || st.reset {
		return
	}
	now := time.Now()
	grow := 0
	// Against the least RTT, not the smoothed one: a window's own bytes
	// queued in the socket buffers inflate later samples, and growth
	// would feed on itself where the reader, not the window, is slow.
	if rtt := s.MinRTT(); rtt > 0 && !st.lastCred.IsZero() && now.Sub(st.lastCred) < 2*rtt {
		grow = min(st.window, s.opt.MaxWindow-st.window, s.opt.SessionWindow-s.growth)
		if grow > 0 {
			st.window += grow
			st.grown += grow
			s.growth += grow
			s.tuned = max(s.tuned, st.window)
			s.c.growths.Add(1)
		} else {
			grow = 0
		}
	}
	inc := st.unacked + grow
	st.recvAvail += inc
	st.unacked = 0
	st.lastCred = now
	s.ctrl = appendWindow(s.ctrl, st.id, uint32(inc))
	s.kick()
}

// Window is the stream's current receive window.
func (st *Stream) Window() int {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	return st.window
}

// sendLimit is how much may wait in a stream's send queue. The window's
// bytes in flight are in the connection's socket buffer, not here, so the
// queue need only keep the writer busy between two Writes.
func (st *Stream) sendLimit() int { return 512 << 10 }

// Write queues p for sending; it blocks while the queue is full.
func (st *Stream) Write(p []byte) (int, error) {
	s := st.s
	total := 0
	for len(p) > 0 {
		s.mu.Lock()
		switch {
		case st.reset:
			err := st.err
			s.mu.Unlock()
			return total, err
		case st.writeClosed:
			s.mu.Unlock()
			return total, net.ErrClosed
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return total, err
		}
		if room := st.sendLimit() - st.send.len(); room > 0 {
			n := min(room, len(p))
			st.send.push(p[:n])
			p = p[n:]
			total += n
			st.pushing = len(p) > 0
			s.markReadyLocked(st)
			s.mu.Unlock()
			continue
		}
		dl := st.wdl
		s.mu.Unlock()
		if !st.wait(st.wch, dl) {
			st.donePushing()
			return total, os.ErrDeadlineExceeded
		}
	}
	return total, nil
}

// donePushing ends a Write that returns before queueing all its bytes.
func (st *Stream) donePushing() {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	if st.pushing {
		st.pushing = false
		st.s.markReadyLocked(st)
	}
}

// SetMore is a hint, like MSG_MORE: more says that the caller will write
// more bytes at once (say, they are already in its source socket's
// receive buffer). The writer then holds back a queued tail too short to
// end a de-duplication chunk until they come, so that chunks end where
// the data says, not where a Write happened to stop; a chunk cut short
// hides its repetitions from de-duplication. false (the default) lets
// the writer send everything queued. A caller that sets it must write
// again soon or set it false.
func (st *Stream) SetMore(more bool) {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st.more = more
	if !more && st.send.len() > 0 {
		s.markReadyLocked(st)
	}
}

// CloseWrite sends FIN after the queued data; reading goes on.
func (st *Stream) CloseWrite() error {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.reset {
		return st.err
	}
	if st.finQueued {
		return nil
	}
	st.finQueued, st.writeClosed = true, true
	s.markReadyLocked(st)
	return nil
}

// Close ends the stream. If the peer finished and everything it sent was
// read, this end's FIN follows its queued data (a clean close). Otherwise,
// like TCP closing with unread data, the stream is reset (RST code
// CodeClosed) so the peer does not wait for a reader that is gone.
func (st *Stream) Close() error {
	s := st.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.reset || (st.readClosed && st.writeClosed) {
		st.readClosed, st.writeClosed = true, true
		return nil
	}
	st.readClosed = true
	if !st.recvFIN || st.recv.len() > 0 {
		st.resetLocked(&ResetError{Code: CodeClosed, Reason: "closed"}, true)
		return nil
	}
	st.recv.reset()
	st.writeClosed = true
	if !st.finQueued {
		st.finQueued = true
		s.markReadyLocked(st)
	}
	st.notify()
	return nil
}

// Reset abandons the stream at once: queued data is dropped and the peer
// gets RST with code.
func (st *Stream) Reset(code uint32) {
	st.s.mu.Lock()
	defer st.s.mu.Unlock()
	st.resetLocked(&ResetError{Code: code, Reason: "reset"}, true)
}

// resetLocked marks st reset with err, tells the peer when sendRST, and
// wakes its reader and writer. s.mu held.
func (st *Stream) resetLocked(err *ResetError, sendRST bool) {
	if st.reset {
		return
	}
	s := st.s
	st.reset, st.err = true, err
	st.send, st.recv = queue{}, queue{}
	if sendRST && s.err == nil {
		s.ctrl = appendCoded(s.ctrl, typeRst, st.id, err.Code, err.Reason)
		s.kick()
	}
	s.maybeRemoveLocked(st)
	st.notify()
}

// LocalAddr is the tunnel connection's local address.
func (st *Stream) LocalAddr() net.Addr { return st.s.conn.LocalAddr() }

// RemoteAddr is the tunnel connection's remote address.
func (st *Stream) RemoteAddr() net.Addr { return st.s.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.s.mu.Lock()
	st.rdl = t
	st.s.mu.Unlock()
	st.notifyReader()
	return nil
}

// SetWriteDeadline sets the deadline for Write.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.s.mu.Lock()
	st.wdl = t
	st.s.mu.Unlock()
	st.notifyWriter()
	return nil
}
