package virtual

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// serverConn is one server-side HTTP connection, kept open between requests
// when OneConnect is on.
type serverConn struct {
	conn      net.Conn
	raw       *net.TCPConn // the TCP connection under conn (nil if not TCP)
	br        *bufio.Reader
	bw        *bufio.Writer
	member    *pool.Member
	key       idleKey
	idleSince time.Time
	requests  int          // requests carried so far (>0 means reused)
	w         *serverWatch // the parker's registration (nil: not watched)
	// owner is the client connection using it (nil while idle): its
	// activity keeps the server side's idle deadline alive.
	owner atomic.Pointer[httpConn]
	// idleArmed says the read deadline in force is an idle deadline, which
	// progress of the exchange extends (not a response timeout).
	idleArmed atomic.Bool

	// The latency histogram for this member, looked up once per plan rather
	// than per request (label hashing on every response showed in profiles).
	obsPlan *Plan
	obs     prometheus.Observer
}

// observer returns the request-latency observer for the connection's
// member under plan p (nil when p has no metrics).
func (s *serverConn) observer(p *Plan) prometheus.Observer {
	if s.obsPlan != p {
		s.obsPlan, s.obs = p, nil
		if p.Observer != nil {
			s.obs = p.Observer(s.member.PoolName(), s.member.String())
		}
	}
	return s.obs
}

func (s *serverConn) close() {
	if s.w != nil {
		s.w.pk.forget(&s.w.watch)
	}
	s.conn.Close()
}

// countIn and countOut make serverConn the counter of its own countConn:
// bytes go to the member.
func (s *serverConn) countIn(n int64)  { s.member.AddBytes(0, n) }
func (s *serverConn) countOut(n int64) { s.member.AddBytes(n, 0) }

// extendIdle renews an idle read deadline that expired while the exchange
// was still moving bytes (see countConn).
func (s *serverConn) extendIdle() bool {
	h := s.owner.Load()
	if h == nil || !s.idleArmed.Load() || s.raw == nil {
		return false
	}
	return h.renewIdle(s.raw, &s.idleArmed)
}

// clean reports whether an idle connection can carry another request: the
// member sent nothing while it was idle (no unsolicited response, no stray
// body bytes, no FIN or RST). Anything the member sent between exchanges
// would otherwise be read as the next client's response.
func (s *serverConn) clean() bool {
	if s.br.Buffered() > 0 {
		return false
	}
	if s.raw == nil {
		return false
	}
	if s.w != nil && s.w.quiet() {
		return true // the parker saw nothing arrive: no system call needed
	}
	rc, err := s.raw.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = err == unix.EAGAIN // nothing to read, not closed
		return true
	})
	return ok
}

// idleKey is everything that makes two server connections interchangeable
// (net/http's connectMethodKey): the member, the server-ssl settings (a
// reload that changes them compiles a new *tls.Config), the serverside TCP
// profile and the source address the member sees. Connections made under
// an older plan never serve a newer plan's requests.
type idleKey struct {
	addr    netip.AddrPort
	tls     *tls.Config
	profile *tcp.Profile
	source  netip.Addr // SNAT pool or transparent source; zero for automap
}

// idlePool keeps idle server-side connections per key (F5 OneConnect with a
// /0 source mask: any client's request may reuse any idle connection to the
// member it was balanced to, under the same key). Newest first, so old ones
// age out.
type idlePool struct {
	mu        sync.Mutex
	conns     map[idleKey][]*serverConn
	lastSweep time.Time
}

// get returns a clean idle connection for k, closing ones idle longer than
// maxIdle or that the member wrote to (or closed) while they were idle.
func (ip *idlePool) get(k idleKey, maxIdle time.Duration, now time.Time) *serverConn {
	for {
		ip.mu.Lock()
		list := ip.conns[k]
		if len(list) == 0 {
			ip.mu.Unlock()
			return nil
		}
		sc := list[len(list)-1]
		list[len(list)-1] = nil
		ip.conns[k] = list[:len(list)-1]
		ip.mu.Unlock()
		// The check is a system call: outside the lock.
		if now.Sub(sc.idleSince) <= maxIdle && sc.clean() {
			return sc
		}
		sc.close()
	}
}

// put parks sc for reuse, dropping the oldest connection of its key when
// the key already has max. Connections of keys nobody asks for any more
// (an old plan's) are swept once per maxIdle.
func (ip *idlePool) put(sc *serverConn, max int, maxIdle time.Duration, now time.Time) {
	sc.owner.Store(nil)
	sc.idleArmed.Store(false)
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.conns == nil {
		ip.conns = make(map[idleKey][]*serverConn)
	}
	if now.Sub(ip.lastSweep) > maxIdle {
		ip.sweepLocked(now.Add(-maxIdle))
		ip.lastSweep = now
	}
	list := ip.conns[sc.key]
	if len(list) >= max {
		// Drop the oldest, keep the warm one.
		list[0].close()
		copy(list, list[1:])
		list[len(list)-1] = nil
		list = list[:len(list)-1]
	}
	sc.idleSince = now
	if sc.w != nil {
		sc.w.parkedIdle()
	}
	ip.conns[sc.key] = append(list, sc)
}

// sweepLocked closes connections idle since before cutoff.
func (ip *idlePool) sweepLocked(cutoff time.Time) {
	for k, list := range ip.conns {
		keep := list[:0]
		for _, sc := range list {
			if sc.idleSince.Before(cutoff) {
				sc.close()
			} else {
				keep = append(keep, sc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(ip.conns, k)
		} else {
			ip.conns[k] = keep
		}
	}
}

func (ip *idlePool) closeAll() {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	for k, list := range ip.conns {
		for _, sc := range list {
			sc.close()
		}
		delete(ip.conns, k)
	}
}

// counter is told the bytes a countConn moves.
type counter interface {
	countIn(n int64)  // bytes read from the connection
	countOut(n int64) // bytes written to it
}

// idleExtender is a counter whose connection's read deadline may be an idle
// deadline: when it expires, extendIdle renews it if the exchange moved
// bytes in the meantime (in either direction) and reports whether it did.
type idleExtender interface {
	extendIdle() bool
}

// countConn counts bytes read and written on the wire. Write errors come
// back wrapped in a writeError, so a caller copying from one side to the
// other can tell which side failed. An expired idle read deadline is
// renewed, and the read retried, while the exchange is still making
// progress: idle means no bytes for that long, not a total time.
type countConn struct {
	net.Conn
	c counter
	// Plain TCP: reads and writes without the runtime's system call
	// bookkeeping (rawio.go); nil: through Conn.
	rio, wio *rawIO
}

func newCountConn(c net.Conn, cnt counter) *countConn {
	cc := &countConn{Conn: c, c: cnt}
	if tc, ok := c.(*net.TCPConn); ok {
		cc.rio = newRawIO(tc)
		cc.wio = cc.rio
	}
	return cc
}

func (c *countConn) Read(b []byte) (int, error) {
	for {
		var n int
		var err error
		if c.rio != nil {
			n, err = c.rio.read(b)
		} else {
			n, err = c.Conn.Read(b)
		}
		if n > 0 {
			c.c.countIn(int64(n))
		}
		if err != nil && n == 0 && isTimeout(err) {
			if x, ok := c.c.(idleExtender); ok && x.extendIdle() {
				continue
			}
		}
		return n, err
	}
}

func (c *countConn) Write(b []byte) (int, error) {
	var n int
	var err error
	if c.wio != nil {
		n, err = c.wio.write(b)
	} else {
		n, err = c.Conn.Write(b)
	}
	if n > 0 {
		c.c.countOut(int64(n))
	}
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// CloseWrite lets half-close reach the wrapped TCP connection (upgrade tunnels).
func (c *countConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// writeError marks an error as a failure to write to a connection (as
// opposed to reading from the other one).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func isWriteError(err error) bool {
	var we *writeError
	return errors.As(err, &we)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
