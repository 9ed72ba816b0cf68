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
	"time"

	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// Listener is one virtual server's socket and its accept loop.
type Listener struct {
	plan atomic.Pointer[Plan]

	ln     net.Listener // tcp, http
	pc     *net.UDPConn // udp
	ctx    context.Context
	cancel context.CancelFunc
	loop   sync.WaitGroup // accept / read loop
	conns  sync.WaitGroup // live connections and flows

	seed maphash.Seed
	idle idlePool // http: server-side connections kept for reuse (OneConnect)
	// http: client-side buffers, held only while a connection is busy
	readers, writers sync.Pool
	chunks           sync.Pool // tcp: proxy-buffer chunks
	readahead        sync.Pool // http: buffers for requests read while waiting
	udp              *udpFlows // udp: flow table
	// parker holds idle http client connections without goroutines (nil
	// when it could not be created: connections then wait on goroutines).
	parker *parker
}

// Listen opens the socket for p.Destination and starts serving p.
func Listen(p *Plan) (*Listener, error) {
	l := &Listener{seed: maphash.MakeSeed()}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.plan.Store(p)
	// Keep-alive is the TCP profile's business (Go would otherwise set its
	// own on every accepted socket, three system calls each).
	lc := net.ListenConfig{KeepAlive: -1}
	switch p.Type {
	case "udp":
		pc, err := lc.ListenPacket(l.ctx, "udp", p.Destination.String())
		if err != nil {
			l.cancel()
			return nil, err
		}
		l.pc = pc.(*net.UDPConn)
		l.udp = newUDPFlows()
		l.loop.Add(1)
		go l.serveUDP()
	default:
		if p.Clientside != nil {
			lc.Control = p.Clientside.ListenControl
		}
		ln, err := lc.Listen(l.ctx, "tcp", p.Destination.String())
		if err != nil {
			l.cancel()
			return nil, err
		}
		l.ln = ln
		if pk, err := newParker(); err == nil {
			l.parker = pk
		} else {
			p.Log.Warn("idle connections will each hold a goroutine: epoll unavailable", "err", err)
		}
		l.loop.Add(1)
		go l.acceptLoop()
	}
	return l, nil
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
	if tl, ok := l.ln.(*net.TCPListener); ok && p.Clientside != nil && (old == nil || old.Clientside != p.Clientside) {
		if err := p.Clientside.ApplyListener(tl); err != nil {
			p.Log.Warn("clientside TCP profile not fully applied to the listener", "profile", p.Clientside.Name, "err", err)
		}
	}
}

// Close stops accepting. Established connections carry on until they end
// (or Shutdown's context expires).
func (l *Listener) Close() error {
	var err error
	if l.ln != nil {
		err = l.ln.Close()
	}
	if l.pc != nil {
		// UDP flows live on this socket: closing it ends them.
		err = l.pc.Close()
		l.udp.closeAll()
	}
	l.loop.Wait()
	l.idle.closeAll()
	return err
}

// stopParker ends the parker once no connection can be parked any more.
func (l *Listener) stopParker() {
	if l.parker != nil {
		l.parker.close()
	}
}

// Wait blocks until every connection of this listener has ended or ctx is done;
// then it cancels the rest.
func (l *Listener) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { l.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		l.cancel()
		<-done
	}
	l.cancel()
	l.stopParker()
}

func (l *Listener) acceptLoop() {
	defer l.loop.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
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
			l.serveTCP(p, c)
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
