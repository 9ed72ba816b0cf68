package virtual

import (
	"bufio"
	"github.com/prometheus/client_golang/prometheus"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/pool"
)

// serverConn is one server-side HTTP connection, kept open between requests
// when OneConnect is on.
type serverConn struct {
	conn      net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	member    *pool.Member
	tls       bool
	idleSince time.Time
	requests  int // requests carried so far (>0 means reused)

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

func (s *serverConn) close() { s.conn.Close() }

// idlePool keeps idle server-side connections per member (F5 OneConnect
// with a /0 source mask: any client's request may reuse any idle connection
// to the member it was balanced to). Newest first, so old ones age out.
type idlePool struct {
	mu    sync.Mutex
	conns map[idleKey][]*serverConn
}

type idleKey struct {
	addr netip.AddrPort
	tls  bool
}

// get returns a live idle connection to m, discarding ones idle longer than maxIdle.
func (ip *idlePool) get(m *pool.Member, tls bool, maxIdle time.Duration, now time.Time) *serverConn {
	k := idleKey{m.Addr(), tls}
	ip.mu.Lock()
	defer ip.mu.Unlock()
	list, ok := ip.conns[k]
	if !ok {
		return nil
	}
	for len(list) > 0 {
		sc := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(sc.idleSince) > maxIdle || sc.member != m {
			sc.close()
			continue
		}
		ip.conns[k] = list
		return sc
	}
	ip.conns[k] = list
	return nil
}

// put parks sc for reuse; false (and sc closed) when the member's list is full.
func (ip *idlePool) put(sc *serverConn, max int, now time.Time) bool {
	k := idleKey{sc.member.Addr(), sc.tls}
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.conns == nil {
		ip.conns = make(map[idleKey][]*serverConn)
	}
	list := ip.conns[k]
	if len(list) >= max {
		// Drop the oldest, keep the warm one.
		list[0].close()
		copy(list, list[1:])
		list = list[:len(list)-1]
	}
	sc.idleSince = now
	ip.conns[k] = append(list, sc)
	return true
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

// countConn counts bytes read and written on the wire.
type countConn struct {
	net.Conn
	c counter
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.c.countIn(int64(n))
	}
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.c.countOut(int64(n))
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

// memberCounter counts a server-side connection's bytes for its member:
// what we read from it went toward the client.
type memberCounter struct{ m *pool.Member }

func (mc memberCounter) countIn(n int64)  { mc.m.AddBytes(0, n) }
func (mc memberCounter) countOut(n int64) { mc.m.AddBytes(n, 0) }
