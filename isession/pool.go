package isession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/isession/mux"
)

// Reuse is how a Pool keeps tunnel connections (F5: reuse-connection; its
// first release fixed reuse at 10 minutes).
type Reuse struct {
	// Off makes every inner connection use a tunnel connection of its
	// own, closed when it ends.
	Off bool
	// IdleTimeout closes a tunnel connection that carried no stream for
	// this long (0: never).
	IdleTimeout time.Duration
	// MaxAge stops giving a tunnel connection new streams after this long;
	// it closes once its streams end (0: no limit).
	MaxAge time.Duration
	// Connections is how many tunnel connections a Pool keeps per endpoint
	// (default 1): streams go to the least loaded; more than one helps
	// when one TCP connection cannot fill a lossy path.
	Connections int
}

// Pool is the remote (branch) end's set of tunnel connections, per
// endpoint of the data-center sites. It is safe for concurrent use.
type Pool struct {
	settings *Settings
	reuse    Reuse
	dial     func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	log      *slog.Logger

	mu     sync.Mutex
	peers  map[netip.AddrPort]*peer
	closed bool
	done   chan struct{}

	dials, dialFailures atomic.Uint64
}

type peer struct {
	tunnels []*pooled
	dialing int
	ready   chan struct{} // closed when a dial in progress ends
	lastErr error
}

type pooled struct {
	t        *Tunnel
	idleFrom time.Time // when it last had no streams (zero: busy)
	used     bool
}

// NewPool returns a Pool that dials endpoints with dial (which applies the
// tunnel's TCP profile) and sets tunnels up with s.
func NewPool(s *Settings, reuse Reuse, dial func(ctx context.Context, addr netip.AddrPort) (net.Conn, error), log *slog.Logger) *Pool {
	if reuse.Connections <= 0 {
		reuse.Connections = 1
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pool{settings: s, reuse: reuse, dial: dial, log: log, peers: map[netip.AddrPort]*peer{}, done: make(chan struct{})}
	go p.janitor()
	return p
}

// ErrPoolClosed is returned by Open after Close.
var ErrPoolClosed = errors.New("isession: tunnel pool closed")

// Open opens a stream to endpoint carrying target and first (the client's
// first bytes, sent in the same frame), over a tunnel connection it reuses
// or sets up.
func (p *Pool) Open(ctx context.Context, endpoint netip.AddrPort, target Target, first []byte) (*mux.Stream, *Tunnel, error) {
	for attempt := 0; ; attempt++ {
		t, err := p.tunnel(ctx, endpoint)
		if err != nil {
			return nil, nil, err
		}
		tg := target
		if !t.Outcome.PortTransparency {
			tg.Dst = netip.AddrPortFrom(tg.Dst.Addr(), 0)
		}
		hdr, err := AppendTarget(nil, tg)
		if err != nil {
			return nil, nil, err
		}
		st, err := t.OpenData(ctx, hdr, first)
		if err == nil {
			return st, t, nil
		}
		// The tunnel closed or is going away between choosing and opening:
		// once more with another.
		if attempt >= 2 {
			return nil, nil, err
		}
	}
}

// tunnel returns the least-loaded usable tunnel connection to endpoint,
// setting one up when fewer than Connections exist.
func (p *Pool) tunnel(ctx context.Context, endpoint netip.AddrPort) (*Tunnel, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		pe := p.peers[endpoint]
		if pe == nil {
			pe = &peer{}
			p.peers[endpoint] = pe
		}
		var best *pooled
		live := 0
		now := time.Now()
		for _, pt := range pe.tunnels {
			if !p.usable(pt, now) {
				continue
			}
			live++
			if p.reuse.Off && pt.used {
				continue
			}
			if best == nil || pt.t.NumStreams() < best.t.NumStreams() {
				best = pt
			}
		}
		if best != nil && (p.reuse.Off || live+pe.dialing >= p.reuse.Connections || best.t.NumStreams() == 0) {
			best.used, best.idleFrom = true, time.Time{}
			p.mu.Unlock()
			return best.t, nil
		}
		if !p.reuse.Off && pe.dialing > 0 && (best == nil || live+pe.dialing >= p.reuse.Connections) {
			// Someone is setting one up: wait for it rather than dial more.
			ready := pe.ready
			p.mu.Unlock()
			select {
			case <-ready:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		pe.dialing++
		if pe.ready == nil || pe.dialing == 1 {
			pe.ready = make(chan struct{})
		}
		ready := pe.ready
		p.mu.Unlock()

		t, err := p.connect(ctx, endpoint)

		p.mu.Lock()
		pe.dialing--
		if pe.dialing == 0 {
			close(ready)
		}
		if err != nil {
			pe.lastErr = err
			p.mu.Unlock()
			return nil, err
		}
		if p.closed {
			p.mu.Unlock()
			t.Close()
			return nil, ErrPoolClosed
		}
		pe.tunnels = append(pe.tunnels, &pooled{t: t, used: true})
		p.mu.Unlock()
		return t, nil
	}
}

// usable: open, able to open streams (no GOAWAY, IDs left), not too old.
func (p *Pool) usable(pt *pooled, now time.Time) bool {
	if !pt.t.CanOpen() {
		return false
	}
	return p.reuse.MaxAge <= 0 || now.Sub(pt.t.Created) < p.reuse.MaxAge
}

func (p *Pool) connect(ctx context.Context, endpoint netip.AddrPort) (*Tunnel, error) {
	p.dials.Add(1)
	conn, err := p.dial(ctx, endpoint)
	if err != nil {
		p.dialFailures.Add(1)
		return nil, fmt.Errorf("isession: connecting to %v: %w", endpoint, err)
	}
	t, err := Client(ctx, conn, p.settings)
	if err != nil {
		p.dialFailures.Add(1)
		return nil, fmt.Errorf("isession: tunnel to %v: %w", endpoint, err)
	}
	p.log.Info("iSession tunnel up", "endpoint", endpoint, "peer", t.Peer, "negotiated", t.Outcome.String())
	return t, nil
}

// janitor closes idle, drained-after-max-age and (reuse off) used tunnels,
// and forgets closed ones.
func (p *Pool) janitor() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		var closing []*Tunnel
		now := time.Now()
		p.mu.Lock()
		for ep, pe := range p.peers {
			kept := pe.tunnels[:0]
			for _, pt := range pe.tunnels {
				select {
				case <-pt.t.Done():
					p.log.Info("iSession tunnel down", "endpoint", ep, "peer", pt.t.Peer, "err", pt.t.Err())
					continue
				default:
				}
				busy := pt.t.NumStreams() > 0
				if busy {
					pt.idleFrom = time.Time{}
				} else if pt.idleFrom.IsZero() {
					pt.idleFrom = now
				}
				switch {
				case busy:
				case p.reuse.Off && pt.used,
					!p.usable(pt, now),
					p.reuse.IdleTimeout > 0 && now.Sub(pt.idleFrom) >= p.reuse.IdleTimeout:
					closing = append(closing, pt.t)
					continue
				}
				kept = append(kept, pt)
			}
			clear(pe.tunnels[len(kept):])
			pe.tunnels = kept
			if len(kept) == 0 && pe.dialing == 0 {
				delete(p.peers, ep)
			}
		}
		p.mu.Unlock()
		for _, t := range closing {
			t.Close()
		}
	}
}

// PoolStats summarises a Pool.
type PoolStats struct {
	Dials, DialFailures uint64
	Tunnels             []Stats
}

// Stats returns the pool's counters and every tunnel connection's stats.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	var ts []*Tunnel
	for _, pe := range p.peers {
		for _, pt := range pe.tunnels {
			ts = append(ts, pt.t)
		}
	}
	p.mu.Unlock()
	ps := PoolStats{Dials: p.dials.Load(), DialFailures: p.dialFailures.Load()}
	for _, t := range ts {
		ps.Tunnels = append(ps.Tunnels, t.Stats())
	}
	return ps
}

// Close closes every tunnel connection; Open fails from now on.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	var ts []*Tunnel
	for _, pe := range p.peers {
		for _, pt := range pe.tunnels {
			ts = append(ts, pt.t)
		}
	}
	p.peers = nil
	p.mu.Unlock()
	for _, t := range ts {
		t.Close()
	}
}
