package virtual

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/profile/tcp"
	"golang.org/x/sys/unix"
)

// Server is what the engine needs from a virtual server's listener,
// whatever the virtual's kind: its socket, the plan it serves, and a life
// that ends in Close (stop accepting) and Wait (connections over, everything
// released).
type Server interface {
	// Addr is the bound address.
	Addr() net.Addr
	// Transport is "tcp" or "udp": the socket kind, which decides whether a
	// reload can keep the listener for a new plan.
	Transport() string
	// Plan is the plan new connections get; Swap publishes a new one.
	Plan() *Plan
	Swap(p *Plan)
	// Close stops accepting; established connections carry on.
	Close() error
	// Wait closes the listener if needed, waits until its connections have
	// ended (or ctx is done: then it cancels their dials and handshakes and
	// still waits), and releases everything the listener holds.
	Wait(ctx context.Context)
	// Done is closed once Wait has released everything.
	Done() <-chan struct{}
}

var _ Server = (*Listener)(nil)

// Listener is one virtual server's socket and its accept loop.
type Listener struct {
	plan atomic.Pointer[Plan]

	ln     net.Listener // tcp, http
	pc     *net.UDPConn // udp
	ctx    context.Context
	cancel context.CancelFunc
	loop   sync.WaitGroup // accept / read loop
	conns  sync.WaitGroup // live connections and flows

	mirMu    sync.Mutex
	mirrored map[*mirrored]struct{} // mirrored connections a planned handover can move
	// afterHold: connections taken over, waiting for their traffic
	// group's addresses to be announced from here before they send
	// (Announced).
	afterHold      []func()
	afterHoldTimer *time.Timer
	// httpMirrored: client connections of a mirrored http virtual (those
	// waiting for a request move in a planned handover)
	httpMirrored map[*httpConn]struct{}

	closing   atomic.Bool // Close was called: an accept error ends the loop
	closeOnce sync.Once
	closeErr  error
	endOnce   sync.Once
	done      chan struct{} // closed when the listener has released everything

	seed maphash.Seed
	idle idlePool // http: server-side connections kept for reuse (OneConnect)
	// http: client-side buffers, held only while a connection is busy
	readers, writers sync.Pool
	chunks           sync.Pool // tcp: proxy-buffer chunks
	readahead        sync.Pool // http: buffers for requests read while waiting
	udp              *udpFlows // udp: flow table
	// parker holds idle http client connections without goroutines. The
	// accept loop creates it with the first http connection (a tcp virtual
	// never needs one) and only it writes the field; connections, Close and
	// Wait read it after the loop started them or ended. Nil until then, or
	// when it could not be created (noParker: connections then wait on
	// goroutines).
	noParker bool
	parker   *parker
	// kernel is a fastl4 listener's kernel relay (sockmap), created with
	// the first plan of type fastl4 and closed by Wait once every
	// connection has ended.
	kernel kernelRelay
}

// Listen opens the socket for p.Destination and starts serving p.
//
// An IPv4 destination gets an IPv4 socket and an IPv6 destination an
// IPv6-only one: 0.0.0.0:P takes IPv4 only and [::]:P IPv6 only, so either
// can share its port with a listener of the other family (Go's "tcp" would
// bind 0.0.0.0 as a dual-stack [::] socket, which takes both).
func Listen(p *Plan) (*Listener, error) {
	network, addr := listenNetwork(p)
	// Keep-alive is the TCP profile's business (Go would otherwise set its
	// own on every accepted socket, three system calls each).
	lc := net.ListenConfig{KeepAlive: -1, Control: listenControl(p)}
	// The context only bounds the listen call itself.
	if p.Type == "udp" {
		pc, err := lc.ListenPacket(context.Background(), network, addr)
		if err != nil {
			return nil, err
		}
		return ServeUDP(p, pc.(*net.UDPConn))
	}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	return serve(p, ln), nil
}

// listenNetwork is the network and address to listen on for p: "tcp4" or
// "udp4" for an IPv4 destination (an IPv4-mapped IPv6 one included), "tcp6"
// or "udp6" for an IPv6 one.
func listenNetwork(p *Plan) (network, addr string) {
	network = "tcp"
	if p.Type == "udp" {
		network = "udp"
	}
	a := p.Destination.Addr()
	if a.Is4() || a.Is4In6() {
		return network + "4", net.JoinHostPort(a.Unmap().String(), fmt.Sprint(p.Destination.Port()))
	}
	return network + "6", p.Destination.String()
}

// listenControl sets the socket options a listening socket for p needs
// before bind: IPV6_V6ONLY on IPv6 sockets (Go sets it too for "tcp6" and
// "udp6"; stating it here keeps [::] from taking IPv4 whatever the runtime
// does), then the clientside TCP profile's options.
func listenControl(p *Plan) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if network == "tcp6" || network == "udp6" {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("setting IPV6_V6ONLY: %w", serr)
			}
		}
		if p.TrafficGroup != "" {
			if err := freebind(network, c); err != nil {
				return err
			}
		}
		if network == "tcp6" && p.lbspOn() {
			if err := enableLBSP(c); err != nil {
				return err
			}
		}
		if p.Type != "udp" && p.Clientside != nil {
			return p.Clientside.ListenControl(network, address, c)
		}
		return nil
	}
}

// freebind lets the socket bind an address the host does not (yet) hold:
// a traffic group's virtuals start listening as the group's floating
// addresses are being added.
func freebind(network string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "tcp6" || network == "udp6" {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting IP_FREEBIND: %w", serr)
	}
	return nil
}

// Serve serves p (a tcp or http virtual) on connections accepted from ln,
// as net/http's Server.Serve does: tests hand in a listener of their own.
// The Listener owns ln from then on (Close closes it). The clientside TCP
// profile is applied to ln when it is a *net.TCPListener.
func Serve(p *Plan, ln net.Listener) (*Listener, error) {
	if p.Type == "udp" {
		return nil, fmt.Errorf("virtual %s: a udp virtual is served on a packet socket (ServeUDP)", p.Name)
	}
	if tl, ok := ln.(*net.TCPListener); ok && p.Clientside != nil {
		if err := p.Clientside.ApplyListener(tl); err != nil {
			p.Log.Warn("clientside TCP profile not fully applied to the listener", "profile", p.Clientside.Name, "err", err)
		}
	}
	return serve(p, ln), nil
}

func serve(p *Plan, ln net.Listener) *Listener {
	l := newListener(p)
	l.ln = ln
	l.kernel.ensure(p)
	if p.Type == "http" {
		// Before the loop: connections taken over from a mirror (Adopt)
		// read the field too.
		l.ensureParker(p)
	}
	l.loop.Add(1)
	go l.acceptLoop()
	return l
}

// ServeUDP serves p (a udp virtual) on datagrams read from pc, which the
// Listener owns from then on.
func ServeUDP(p *Plan, pc *net.UDPConn) (*Listener, error) {
	if p.Type != "udp" {
		return nil, fmt.Errorf("virtual %s: a %s virtual is served on a stream listener (Serve)", p.Name, p.Type)
	}
	l := newListener(p)
	l.pc = pc
	l.udp = newUDPFlows()
	l.loop.Add(1)
	go l.serveUDP()
	return l, nil
}

func newListener(p *Plan) *Listener {
	l := &Listener{seed: maphash.MakeSeed(), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.plan.Store(p)
	return l
}

// Transport is "tcp" or "udp": the socket kind, which decides whether a
// reload can keep this listener for a new plan.
func (l *Listener) Transport() string {
	if l.pc != nil {
		return "udp"
	}
	return "tcp"
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr {
	if l.pc != nil {
		return l.pc.LocalAddr()
	}
	return l.ln.Addr()
}

// Plan returns the plan new connections get.
func (l *Listener) Plan() *Plan { return l.plan.Load() }

// Swap publishes a new plan; connections already accepted keep theirs. A
// changed clientside TCP profile is applied to the open listening socket
// (what accepted connections inherit from it).
func (l *Listener) Swap(p *Plan) {
	old := l.plan.Swap(p)
	l.kernel.ensure(p)
	if tl, ok := l.ln.(*net.TCPListener); ok && p.lbspOn() && (old == nil || !old.lbspOn()) {
		if rc, err := tl.SyscallConn(); err == nil {
			if err := enableLBSP(rc); err != nil {
				p.Log.Warn("lbsp: cannot ask the listener for the SYNs' destination options", "err", err)
			}
		}
	}
	if tl, ok := l.ln.(*net.TCPListener); ok && p.Clientside != nil && (old == nil || old.Clientside != p.Clientside) {
		if err := p.Clientside.ApplyListener(tl); err != nil {
			p.Log.Warn("clientside TCP profile not fully applied to the listener", "profile", p.Clientside.Name, "err", err)
		}
	}
}

// Close stops accepting. Established connections carry on until they end
// (or Wait's context expires). Calling it again does nothing.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.closing.Store(true)
		if l.ln != nil {
			l.closeErr = l.ln.Close()
		}
		if l.pc != nil {
			// UDP flows live on this socket: closing it ends them.
			l.closeErr = l.pc.Close()
			l.udp.closeAll()
		}
		l.loop.Wait()
		if l.parker != nil {
			l.parker.drain()
		}
		l.idle.closeAll()
	})
	return l.closeErr
}

// Wait closes the listener if it is not closed yet and blocks until every
// connection of this listener has ended; when ctx is done first it cancels
// their dials and handshakes (ending the connections themselves is the
// connection table's business) and goes on waiting. Then it releases what
// the listener holds beyond its socket: the parker's epoll set and
// goroutines, the context, idle server connections. Concurrent calls are
// safe; each returns once everything is released.
func (l *Listener) Wait(ctx context.Context) {
	l.Close() // no connection is added once the loop has ended
	conns := make(chan struct{})
	go func() { l.conns.Wait(); close(conns) }()
	select {
	case <-conns:
	case <-ctx.Done():
		l.cancel()
		<-conns
	}
	l.endOnce.Do(func() {
		l.cancel()
		// No connection is left to park, wake or time out.
		if l.parker != nil {
			l.parker.close()
		}
		// Connections that ended after Close may have left server
		// connections for reuse.
		l.idle.closeAll()
		l.kernel.close()
		close(l.done)
	})
	<-l.done
}

// Done is closed once Wait has released everything.
func (l *Listener) Done() <-chan struct{} { return l.done }

func (l *Listener) acceptLoop() {
	defer l.loop.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			// Any listener handed to Serve ends its loop on Close, whatever
			// error its Accept then returns.
			if l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off rather than spin (as net/http does).
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			l.plan.Load().Log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p := l.plan.Load()
		if p.ConnectionLimit > 0 && p.Stats.Active.Load() >= int64(p.ConnectionLimit) {
			p.reject("connection_limit")
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, like F5 when a virtual's limit is hit
			}
			c.Close()
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && p.Clientside != nil {
			if err := p.Clientside.Finish(tc); err != nil {
				p.Log.Debug("clientside TCP profile not fully applied", "profile", p.Clientside.Name, "err", err)
			}
		}
		p.Stats.Active.Add(1)
		p.Stats.Total.Add(1)
		l.conns.Add(1)
		if p.Type == "http" {
			l.ensureParker(p)
			l.startHTTP(p, c) // its lifetime may outlast any one goroutine
			continue
		}
		go func() {
			defer l.conns.Done()
			defer p.Stats.Active.Add(-1)
			defer func() {
				if r := recover(); r != nil {
					recoverConn(p, c, r)
				}
			}()
			l.serveTCP(p, c) // tcp and fastl4
		}()
	}
}

// recoverConn keeps a bug in one connection's handling from taking the whole
// process down (as net/http does): given what recover returned, it closes the
// connection, counts it and logs the stack.
func recoverConn(p *Plan, c net.Conn, r any) {
	c.Close()
	p.Stats.Errors.Add(1)
	buf := make([]byte, 16<<10)
	buf = buf[:runtime.Stack(buf, false)]
	p.Log.Error("connection handler panicked; connection closed", "panic", fmt.Sprint(r), "client", c.RemoteAddr().String(), "stack", string(buf))
}

// clientMSS is the MSS negotiated on an accepted TCP connection, when the
// serverside profile wants it (proxy MSS); else 0.
func (p *Plan) clientMSS(c net.Conn) int {
	if p.Serverside == nil || !p.Serverside.ProxyMSS {
		return 0
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if mss, err := tcp.NegotiatedMSS(tc); err == nil {
			return mss
		}
	}
	return 0
}

// ensureParker creates the parker for the first http connection. Called
// only from the accept loop, or before it starts.
func (l *Listener) ensureParker(p *Plan) {
	if l.parker != nil || l.noParker {
		return
	}
	pk, err := newParker()
	if err != nil {
		l.noParker = true
		p.Log.Warn("idle connections will each hold a goroutine: epoll unavailable", "err", err)
		return
	}
	l.parker = pk
}
