package guardnet

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
)

// Listener caps concurrent connections and keeps a descriptor reserve.
// Accept blocks while MaxConns connections are open: further clients wait
// in the kernel's accept queue (as HAProxy's maxconn and
// golang.org/x/net/netutil.LimitListener do) rather than being refused.
type Listener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	reserve []*os.File
	want    int
	closed  bool
	used    uint64 // times a reserved descriptor was spent on an accept
}

// New wraps inner. maxConns < 1 means 1; reserve is the number of
// descriptors to hold (0 disables the reserve). The reserve is filled
// before New returns, as far as descriptors allow.
func New(inner net.Listener, maxConns, reserve int) *Listener {
	if maxConns < 1 {
		maxConns = 1
	}
	l := &Listener{
		Listener: inner,
		sem:      make(chan struct{}, maxConns),
		done:     make(chan struct{}),
		want:     reserve,
	}
	l.refill()
	return l
}

// Accept waits for a free connection slot, then accepts. When the process
// is out of descriptors it spends reserved ones to take the connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	l.refill()
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return &conn{Conn: c, l: l}, nil
		}
		if !outOfDescriptors(err) || !l.spendOne() {
			<-l.sem
			return nil, err
		}
		// A descriptor is free now: accept again. Another goroutine of
		// the process may win it first; then the next reserved one goes.
	}
}

// outOfDescriptors reports the errors a reserved descriptor can cure.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// spendOne closes one reserved descriptor; false if none is left.
func (l *Listener) spendOne() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.reserve)
	if n == 0 {
		return false
	}
	l.reserve[n-1].Close()
	l.reserve = l.reserve[:n-1]
	l.used++
	return true
}

// refill opens /dev/null until the reserve is whole or descriptors run out
// (then it tries again at the next Accept or connection close).
func (l *Listener) refill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.closed && len(l.reserve) < l.want {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return
		}
		l.reserve = append(l.reserve, f)
	}
}

// Reserved is how many descriptors are held now.
func (l *Listener) Reserved() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reserve)
}

// Spent is how many times a reserved descriptor was used to accept.
func (l *Listener) Spent() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used
}

// Close closes the listener and releases the reserve. Open connections are
// not closed.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	l.mu.Lock()
	l.closed = true
	for _, f := range l.reserve {
		f.Close()
	}
	l.reserve = nil
	l.mu.Unlock()
	return l.Listener.Close()
}

// conn frees its slot exactly once when closed and lets the reserve take
// back the descriptor it frees.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		<-c.l.sem
		c.l.refill()
	})
	return err
}
