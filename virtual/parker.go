package virtual

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// parker is the listener's readiness loop for plain HTTP: one epoll set of
// the listener's own, waited on through Go's poller, in which every client
// connection that has waited for a request once, and every server
// connection that has carried a request, stays registered, edge-triggered,
// for its whole life (a watch). Registering once instead of per wait keeps
// epoll_ctl(2) off the per-request path.
//
// The set serves three purposes:
//
//   - Idle client connections hold no goroutine: a connection with nothing
//     to read is parked (a few hundred bytes of state) and its goroutine
//     ends; the loop starts a new goroutine when data arrives. That is what
//     lets many thousands of idle keep-alive clients fit in little memory.
//   - Readiness without a failed read: Go's net.Conn reads first and waits
//     on EAGAIN, which costs a system call on every wait for a request or a
//     response. A goroutine waiting for a member's response instead waits
//     for the loop to see the member's socket readable (await) and only then
//     reads; a client connection is parked at once after its response and
//     read when the loop says it has data.
//   - Quiet idle server connections: a pooled connection the loop has seen
//     no event for since it was parked, over a whole loop round that began
//     after it was parked, received nothing (no unsolicited bytes, no FIN):
//     OneConnect can reuse it without a MSG_PEEK system call (quiet).
//
// Exactly one of three things ends a parking: data (the connection resumes),
// its timer (header or keep-alive timeout), or take by the connection
// table's closer (idle reaping, shutdown). take decides the winner.
type parker struct {
	epfd     int
	epf      *os.File // epfd, registered with Go's poller
	mu       sync.Mutex
	watched  map[int32]*watch // by file descriptor, for the descriptor's life
	parked   map[int32]*parkedConn
	closed   bool
	draining bool // drain was called: park refuses
	// holding: a planned handover is under way; parked connections stay
	// parked when their client sends (the request waits in the socket and
	// moves with it). Under mu.
	holding   bool
	done      chan struct{} // closed when both goroutines have ended
	stop      chan struct{}
	work      chan job // to a waiting worker (unbuffered)
	closeOnce sync.Once

	// rounds counts epoll_wait calls begun; finished is the last round whose
	// events have all been handled (quiet compares them with a parking).
	rounds, finished atomic.Uint64
}

type parkedConn struct {
	h        *httpConn
	fd       int32
	first    bool      // still waiting for the connection's first request
	deadline time.Time // header or keep-alive timeout
}

// watch is one registered socket: a client connection (h, the watch is
// part of its httpConn) or a server connection (sw). seq counts the loop's
// events for it.
type watch struct {
	pk  *parker
	fd  int32
	h   *httpConn
	sw  *serverWatch
	seq atomic.Uint64
	// readSeq is seq as it was before the owner's last read of the socket
	// (^0 when that read filled its buffer: more may be waiting).
	readSeq atomic.Uint64
}

// serverWatch is a server connection's watch: a goroutine awaiting its
// response, and its parking in the idle pool.
type serverWatch struct {
	watch
	waiting  bool        // under pk.mu
	gone     atomic.Bool // forgotten: the socket is closing
	ready    chan struct{}
	timer    *time.Timer
	putSeq   uint64 // seq when parked in the idle pool
	putRound uint64 // rounds begun when parked in the idle pool
}

// sweepEvery is how often the parker looks for parked connections whose
// timeout has passed: timeouts are honoured to within this (one sweep over
// the set instead of a timer per connection keeps a parked connection small).
const sweepEvery = 250 * time.Millisecond

// newParker makes the epoll set. The set's own descriptor is non-blocking
// and handed to Go's poller, so the loop waits like any network read
// instead of sitting in epoll_wait(2): a blocking system call would keep
// the only P (GOMAXPROCS=1) from running anything else until the runtime's
// monitor took it back, milliseconds later.
func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	pk := &parker{epfd: epfd, epf: os.NewFile(uintptr(epfd), "fulcrum-parker"),
		watched: make(map[int32]*watch), parked: make(map[int32]*parkedConn),
		done: make(chan struct{}), stop: make(chan struct{}), work: make(chan job)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pk.loop() }()
	go func() { defer wg.Done(); pk.sweeper() }()
	go func() { wg.Wait(); close(pk.done) }()
	return pk, nil
}

// watchEvents: edge-triggered, for the socket's life. EPOLL_CTL_ADD on a
// socket that already has data reports it at once.
const watchEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// addWatchLocked registers fd; the caller holds pk.mu and fills h or sc.
func (pk *parker) addWatchLocked(w *watch) error {
	if pk.closed {
		return errDraining
	}
	pk.watched[w.fd] = w
	ev := unix.EpollEvent{Events: watchEvents, Fd: w.fd}
	if err := unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, int(w.fd), &ev); err != nil {
		delete(pk.watched, w.fd)
		return err
	}
	return nil
}

// forget ends a watch before its socket is closed, waking a goroutine
// waiting on it. The descriptor leaves the set when it is closed.
func (pk *parker) forget(w *watch) {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.watched[w.fd] == w {
		delete(pk.watched, w.fd)
	}
	if w.sw != nil {
		w.sw.gone.Store(true)
		w.sw.wakeLocked()
	}
}

// forgetClient is forget for a client connection's watch, if it has one.
func (pk *parker) forgetClient(pre *prefetchConn) {
	pk.mu.Lock()
	w := pre.w
	pk.mu.Unlock()
	if w != nil {
		pk.forget(w)
	}
}

// wakeLocked wakes the goroutine awaiting w, if any (pk.mu held).
func (w *serverWatch) wakeLocked() {
	if w.waiting {
		w.waiting = false
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
}

// errMaybeData: park refused because the client's socket may hold data
// the owner has not read yet (the loop saw an event since its last read).
var errMaybeData = errors.New("data may be waiting")

// park registers h for wake-up when its client sends data, or to be ended
// (idleExpired) once timeout has passed. On error h was not parked.
func (pk *parker) park(h *httpConn, timeout time.Duration, first bool) error {
	pk.mu.Lock()
	if pk.closed || pk.draining {
		pk.mu.Unlock()
		return errDraining
	}
	w := h.pre.w
	if w != nil && w.readSeq.Load() != w.seq.Load() {
		pk.mu.Unlock()
		return errMaybeData
	}
	// The parking record is the connection's own, reused (one allocation
	// fewer per request); sweep re-checks its deadline under the lock.
	pc := &h.pc
	pc.h, pc.first, pc.deadline = h, first, time.Now().Add(timeout)
	if w == nil {
		fd, err := fdOf(h.raw)
		if err != nil {
			pk.mu.Unlock()
			return err
		}
		w = &h.cw
		w.pk, w.fd, w.h = pk, fd, h
		// Parked before it is added: data already waiting is reported at
		// once and must find it parked.
		pc.fd = fd
		pk.parked[fd] = pc
		h.parked.Store(pc)
		if err := pk.addWatchLocked(w); err != nil {
			delete(pk.parked, fd)
			h.parked.Store(nil)
			pk.mu.Unlock()
			return err
		}
		h.pre.w = w
		pk.mu.Unlock()
		return nil
	}
	pc.fd = w.fd
	pk.parked[w.fd] = pc
	h.parked.Store(pc)
	pk.mu.Unlock()
	return nil
}

// take removes pc from the parked set; true for the one caller that gets it.
func (pk *parker) take(pc *parkedConn) bool {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	return pk.takeLocked(pc)
}

func (pk *parker) takeLocked(pc *parkedConn) bool {
	if pk.parked[pc.fd] != pc {
		return false
	}
	delete(pk.parked, pc.fd)
	pc.h.parked.Store(nil)
	return true
}

// watchServer registers a server connection (once) so that its owner can
// await its response and the idle pool can tell it quiet.
func (pk *parker) watchServer(sc *serverConn) {
	if sc.w != nil || sc.raw == nil {
		return
	}
	fd, err := fdOf(sc.raw)
	if err != nil {
		return
	}
	w := &serverWatch{ready: make(chan struct{}, 1)}
	w.pk, w.fd, w.sw = pk, fd, w
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.addWatchLocked(&w.watch) == nil {
		sc.w = w
	}
}

// await returns once the loop has seen w's socket become readable since
// its event count was seq0, or at deadline, or when w is forgotten. It is
// only a hint that saves the read that would fail: the read after it keeps
// its own deadline.
func (w *serverWatch) await(seq0 uint64, deadline time.Time) {
	pk := w.pk
	pk.mu.Lock()
	if w.seq.Load() != seq0 || w.gone.Load() || pk.closed {
		pk.mu.Unlock()
		return
	}
	w.waiting = true
	pk.mu.Unlock()
	d := time.Until(deadline)
	if d <= 0 {
		d = time.Nanosecond
	}
	// The timer wakes the waiter through the same channel as the loop does
	// (one channel receive, no select).
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.expire)
	} else {
		w.timer.Reset(d)
	}
	<-w.ready
	w.timer.Stop()
	pk.mu.Lock()
	w.waiting = false
	pk.mu.Unlock()
	select { // a wake-up that raced the other one
	case <-w.ready:
	default:
	}
}

// expire is an await's timer.
func (w *serverWatch) expire() {
	w.pk.mu.Lock()
	w.wakeLocked()
	w.pk.mu.Unlock()
}

// parkedIdle records a server connection's entry into the idle pool.
func (w *serverWatch) parkedIdle() {
	w.putSeq = w.seq.Load()
	w.putRound = w.pk.rounds.Load()
}

// quiet reports whether the loop has handled a whole round of events that
// began after the connection was parked idle and saw nothing on it since:
// the member sent nothing (no byte, no FIN, no reset) before that round.
func (w *serverWatch) quiet() bool {
	return !w.gone.Load() && w.pk.finished.Load() > w.putRound && w.seq.Load() == w.putSeq
}

func (pk *parker) loop() {
	rc, err := pk.epf.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 128)
	// The callback drains the set without blocking and returns false to
	// wait (in Go's poller) for the set to become readable again; Read
	// returns only when the file is closed.
	rc.Read(func(fd uintptr) bool {
		for {
			round := pk.rounds.Add(1)
			n, err := unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return false
			}
			pk.mu.Lock()
			for _, ev := range events[:n] {
				pk.handleLocked(ev.Fd)
			}
			pk.mu.Unlock()
			pk.finished.Store(round)
			if n <= 0 {
				return false
			}
		}
	})
}

// handleLocked is one event: counted on the socket's watch, then a parked
// client connection resumes and a goroutine awaiting a response wakes.
func (pk *parker) handleLocked(fd int32) {
	w := pk.watched[fd]
	if w == nil {
		return
	}
	w.seq.Add(1)
	if w.sw != nil {
		w.sw.wakeLocked()
		return
	}
	if pk.holding {
		return // resumed (or moved) when the handover ends: see resumeHeld
	}
	if pc := pk.parked[fd]; pc != nil && pk.takeLocked(pc) {
		pk.dispatch(pc.h, pc.first)
	}
}

// workerIdle is how long a worker goroutine waits for another connection
// to resume before it ends.
const workerIdle = time.Second

// dispatch runs h (resumed, or a new connection's first request) on a
// waiting worker goroutine, or on a new one. Workers keep their grown
// stacks between requests: a new goroutine per request spent 5-6 % of the
// CPU growing its stack (runtime.morestack) to the depth of an exchange.
// Workers exist only while there is work: idle connections still hold none.
func (pk *parker) dispatch(h *httpConn, first bool) {
	select {
	case pk.work <- job{h, first}:
	default:
		go pk.worker(job{h, first})
	}
}

// job is a connection for a worker: resume h (first: its first request).
type job struct {
	h     *httpConn
	first bool
}

func (pk *parker) worker(j job) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		j.h.resume(j.first)
		t.Reset(workerIdle)
		select {
		case j = <-pk.work:
		case <-t.C:
			return
		case <-pk.stop:
			return
		}
	}
}

func (pk *parker) sweeper() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-pk.stop:
			return
		case now := <-t.C:
			pk.sweep(now)
		}
	}
}

// sweep ends the parked connections whose timeout has passed.
func (pk *parker) sweep(now time.Time) {
	var due []*parkedConn
	pk.mu.Lock()
	for _, pc := range pk.parked {
		if !now.Before(pc.deadline) {
			due = append(due, pc)
		}
	}
	pk.mu.Unlock()
	for _, pc := range due {
		pk.mu.Lock()
		// Still parked and still due: it may have resumed and parked again.
		ok := !now.Before(pc.deadline) && pk.takeLocked(pc)
		first := pc.first
		pk.mu.Unlock()
		if ok {
			pc.h.idleExpired(first)
		}
	}
}

// errDraining: the listener is closing; an idle connection is ended rather
// than parked.
var errDraining = errors.New("listener closing: idle connections are not kept")

// drain ends every parked (idle) connection and parks no more: a removed
// or stopping virtual does not keep idle keep-alive clients for their
// whole keep-alive timeout (HAProxy closes idle connections on soft stop
// too). Busy connections finish their exchange and then end.
func (pk *parker) drain() {
	pk.mu.Lock()
	pk.draining = true
	idle := make([]*parkedConn, 0, len(pk.parked))
	for _, pc := range pk.parked {
		idle = append(idle, pc)
	}
	pk.mu.Unlock()
	for _, pc := range idle {
		if pk.take(pc) {
			pc.h.end()
		}
	}
}

// close stops the parker's goroutines. Connections still parked stay open:
// the connection table's closers end them (they take, then close).
func (pk *parker) close() {
	pk.closeOnce.Do(func() {
		pk.mu.Lock()
		pk.closed = true // no new watches; awaits return at once
		for _, w := range pk.watched {
			if w.sw != nil {
				w.sw.wakeLocked() // the loop stops: nobody else would
			}
		}
		pk.mu.Unlock()
		close(pk.stop)
		pk.epf.Close() // ends loop's Read
		<-pk.done
	})
}

func fdOf(c net.Conn) (int32, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd int32
	if err := rc.Control(func(f uintptr) { fd = int32(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}
