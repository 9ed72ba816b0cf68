package isession

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/isession/mux"
	"golang.org/x/sys/unix"
)

// Terminator is the data-center end: it accepts tunnel connections and
// hands each inner connection to its target (F5: the iSession listener's
// target virtual).
type Terminator struct {
	settings *Settings
	// Resolve says where an inner connection goes: the address of a local
	// virtual server, or the original destination; ok false refuses it.
	resolve func(Target) (addr netip.AddrPort, via string, ok bool)
	dial    func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	log     *slog.Logger
	opt     TerminatorOptions

	mu        sync.Mutex
	tunnels   map[*Tunnel]struct{}
	closed    bool
	dedupUsed int64 // de-duplication cache granted to tunnels being set up or up

	handshakes                                   chan struct{} // bounds handshakes in flight
	accepted, refused, streams, noTarget, failed atomic.Uint64
	wg                                           sync.WaitGroup
}

// TerminatorOptions bound what remote parties can make a Terminator hold.
type TerminatorOptions struct {
	MaxTunnels    int           // tunnel connections at once (default 256)
	MaxHandshakes int           // handshakes in flight (default 64)
	IdleTimeout   time.Duration // an inner connection idle this long both ways is closed (default 300 s)
	// DedupMemory bounds the de-duplication cache all tunnel connections
	// together may hold here (default 4 × the profile's cache): a tunnel
	// set up when it is spent gets a smaller cache, or none (de-duplication
	// off for it, which the hello tells the peer).
	DedupMemory int64
}

// NewTerminator returns a Terminator.
func NewTerminator(s *Settings, opt TerminatorOptions, resolve func(Target) (netip.AddrPort, string, bool),
	dial func(ctx context.Context, addr netip.AddrPort) (net.Conn, error), log *slog.Logger) *Terminator {
	if opt.MaxTunnels <= 0 {
		opt.MaxTunnels = 256
	}
	if opt.MaxHandshakes <= 0 {
		opt.MaxHandshakes = 64
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 300 * time.Second
	}
	if opt.DedupMemory <= 0 {
		opt.DedupMemory = 4 * s.DedupCache
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Terminator{settings: s, resolve: resolve, dial: dial, log: log, opt: opt,
		tunnels: map[*Tunnel]struct{}{}, handshakes: make(chan struct{}, opt.MaxHandshakes)}
}

// Serve accepts tunnel connections on ln until ln is closed.
func (t *Terminator) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		select {
		case t.handshakes <- struct{}{}:
		default:
			t.refused.Add(1)
			c.Close() // too many handshakes in flight: the peer retries
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serveConn(c)
		}()
	}
}

// minDedupCache is the smallest cache worth de-duplicating with.
const minDedupCache = 1 << 20

func (t *Terminator) serveConn(c net.Conn) {
	// This tunnel's share of the de-duplication memory, taken before the
	// hello advertises it and given back when the tunnel ends.
	s := *t.settings
	t.mu.Lock()
	grant := min(s.DedupCache, t.opt.DedupMemory-t.dedupUsed)
	if !s.Dedup || grant < minDedupCache {
		grant = 0
		s.Dedup = false
	}
	s.DedupCache = grant
	t.dedupUsed += grant
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.dedupUsed -= grant
		t.mu.Unlock()
	}()
	tu, err := Server(context.Background(), c, &s)
	<-t.handshakes
	if err != nil {
		t.refused.Add(1)
		t.log.Warn("iSession tunnel refused", "remote", c.RemoteAddr(), "err", err)
		return
	}
	t.mu.Lock()
	if t.closed || len(t.tunnels) >= t.opt.MaxTunnels {
		t.mu.Unlock()
		t.refused.Add(1)
		t.log.Warn("iSession tunnel refused: too many tunnel connections", "remote", c.RemoteAddr(), "max", t.opt.MaxTunnels)
		tu.Close()
		return
	}
	t.tunnels[tu] = struct{}{}
	t.mu.Unlock()
	t.accepted.Add(1)
	t.log.Info("iSession tunnel up", "remote", c.RemoteAddr(), "peer", tu.Peer, "negotiated", tu.Outcome.String())
	defer func() {
		t.mu.Lock()
		delete(t.tunnels, tu)
		t.mu.Unlock()
		tu.Close()
		t.log.Info("iSession tunnel down", "remote", c.RemoteAddr(), "peer", tu.Peer, "err", tu.Err())
	}()
	for {
		st, err := tu.Accept()
		if err != nil {
			return
		}
		t.streams.Add(1)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serveStream(st)
		}()
	}
}

func (t *Terminator) serveStream(st *mux.Stream) {
	tg, err := ParseTarget(st.Header())
	if err != nil {
		t.noTarget.Add(1)
		st.Reset(mux.CodeProtocol)
		return
	}
	addr, via, ok := t.resolve(tg)
	if !ok {
		t.noTarget.Add(1)
		t.log.Debug("iSession stream refused: no target", "destination", tg.Dst, "client", tg.Src)
		st.Reset(mux.CodeRefused)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := t.dial(ctx, addr)
	cancel()
	if err != nil {
		t.failed.Add(1)
		t.log.Debug("iSession stream: target unreachable", "target", addr, "via", via, "client", tg.Src, "err", err)
		st.Reset(mux.CodeRefused)
		return
	}
	Relay(st, s, t.opt.IdleTimeout)
}

// pendingIn returns how many bytes c's receive buffer holds (SIOCINQ), 0
// when c is not a socket or the kernel does not say.
func pendingIn(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

// halfCloser is a connection that can end its sending direction alone.
type halfCloser interface{ CloseWrite() error }

// Relay copies both ways between a and b until both directions ended
// (each end's FIN is passed on as a half-close) or neither moved a byte
// for idle; then it closes both.
func Relay(a, b net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			src.SetReadDeadline(time.Now().Add(idle))
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				if ms, ok := dst.(interface{ SetMore(bool) }); ok {
					// More bytes follow at once if src's receive buffer
					// holds some: de-duplication chunks then end where
					// the data says, not where this read stopped.
					ms.SetMore(n == len(buf) && pendingIn(src) > 0)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					a.Close()
					b.Close()
					return
				}
			}
			if err == nil {
				continue
			}
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
				continue // the other direction is moving
			}
			if err == io.EOF {
				if hc, ok := dst.(halfCloser); ok {
					hc.CloseWrite()
					return
				}
			}
			a.Close()
			b.Close()
			return
		}
	}
	wg.Add(2)
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// TerminatorStats summarises a Terminator.
type TerminatorStats struct {
	Accepted, Refused, Streams, NoTarget, TargetFailed uint64
	Tunnels                                            []Stats
}

// Stats returns the counters and every tunnel connection's stats.
func (t *Terminator) Stats() TerminatorStats {
	t.mu.Lock()
	ts := make([]*Tunnel, 0, len(t.tunnels))
	for tu := range t.tunnels {
		ts = append(ts, tu)
	}
	t.mu.Unlock()
	s := TerminatorStats{Accepted: t.accepted.Load(), Refused: t.refused.Load(), Streams: t.streams.Load(),
		NoTarget: t.noTarget.Load(), TargetFailed: t.failed.Load()}
	for _, tu := range ts {
		s.Tunnels = append(s.Tunnels, tu.Stats())
	}
	return s
}

// Close closes every tunnel connection (the caller closes the listener)
// and waits for the inner connections to end.
func (t *Terminator) Close() {
	t.mu.Lock()
	t.closed = true
	ts := make([]*Tunnel, 0, len(t.tunnels))
	for tu := range t.tunnels {
		ts = append(ts, tu)
	}
	t.mu.Unlock()
	for _, tu := range ts {
		tu.Close()
	}
	t.wg.Wait()
}
