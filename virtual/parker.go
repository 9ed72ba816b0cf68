package virtual

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// parker holds idle HTTP client connections without a goroutine each: a
// connection that has nothing to read is registered in an epoll set of the
// listener's own and its goroutine ends; one goroutine waits on the set and
// starts a new goroutine for a connection when data arrives. An idle
// connection then costs its socket and a few hundred bytes of state instead
// of a goroutine stack, which is what lets many thousands of idle keep-alive
// clients (or clients that connect and wait) fit in little memory.
//
// Exactly one of three things ends a parking: data (the connection resumes),
// its timer (header or keep-alive timeout), or take by the connection
// table's closer (idle reaping, shutdown). take decides the winner.
type parker struct {
	epfd      int
	epf       *os.File // epfd, registered with Go's poller
	mu        sync.Mutex
	parked    map[int32]*parkedConn
	closed    bool
	draining  bool          // drain was called: park refuses
	done      chan struct{} // closed when both goroutines have ended
	stop      chan struct{}
	closeOnce sync.Once
}

type parkedConn struct {
	h        *httpConn
	fd       int32
	first    bool      // still waiting for the connection's first request
	deadline time.Time // header or keep-alive timeout
}

// sweepEvery is how often the parker looks for parked connections whose
// timeout has passed: timeouts are honoured to within this (one sweep over
// the set instead of a timer per connection keeps a parked connection small).
const sweepEvery = 250 * time.Millisecond

// newParker makes the epoll set. The set's own descriptor is non-blocking
// and handed to Go's poller, so the wake-up goroutine waits like any network
// read instead of sitting in epoll_wait(2): a blocking system call would
// keep the only P (GOMAXPROCS=1) from running anything else until the
// runtime's monitor took it back, milliseconds later.
func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	pk := &parker{epfd: epfd, epf: os.NewFile(uintptr(epfd), "fulcrum-parker"), parked: make(map[int32]*parkedConn),
		done: make(chan struct{}), stop: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pk.loop() }()
	go func() { defer wg.Done(); pk.sweeper() }()
	go func() { wg.Wait(); close(pk.done) }()
	return pk, nil
}

// park registers h for wake-up when its client sends data, or to be ended
// (idleExpired) once timeout has passed. On error h was not parked.
func (pk *parker) park(h *httpConn, timeout time.Duration, first bool) error {
	fd, err := fdOf(h.raw)
	if err != nil {
		return err
	}
	pc := &parkedConn{h: h, fd: fd, first: first, deadline: time.Now().Add(timeout)}
	pk.mu.Lock()
	if pk.closed || pk.draining {
		pk.mu.Unlock()
		return errDraining
	}
	pk.parked[fd] = pc
	h.parked.Store(pc)
	pk.mu.Unlock()
	// Level-triggered and one-shot: data already waiting fires at once.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd}
	if err := unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		pk.take(pc)
		return err
	}
	return nil
}

// take removes pc from the set; true for the one caller that gets it.
func (pk *parker) take(pc *parkedConn) bool {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.parked[pc.fd] != pc {
		return false
	}
	delete(pk.parked, pc.fd)
	pc.h.parked.Store(nil)
	if !pk.closed {
		unix.EpollCtl(pk.epfd, unix.EPOLL_CTL_DEL, int(pc.fd), nil)
	}
	return true
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
			n, err := unix.EpollWait(int(fd), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return false
			}
			for _, ev := range events[:n] {
				pk.mu.Lock()
				pc := pk.parked[ev.Fd]
				pk.mu.Unlock()
				if pc != nil && pk.take(pc) {
					go pc.h.resume(pc.first)
				}
			}
		}
	})
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
		if pk.take(pc) {
			pc.h.idleExpired(pc.first)
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
		pk.closed = true // take no longer touches the (closing) set
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
