package virtual

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/sockmap"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// LooseCloseLinger is how long a loose_close flow stays open after its
// first FIN (forwarded at once) before both sides are closed.
const LooseCloseLinger = time.Second

// defaultKernelFlows bounds a fastl4 listener's socket map when the virtual
// has no connection limit: 32768 flows, 65536 sockets.
const defaultKernelFlows = 32768

// activityEvery is how often a kernel-relayed flow's byte counters are
// read into the connection table (counters, idle clock), at most.
const activityEvery = time.Second

// kernelRelay is a fastl4 listener's sockmap relay: created once, with the
// first fastl4 plan whose profile wants it; if that fails the listener
// relays in user space and says why, once.
type kernelRelay struct {
	mu    sync.Mutex
	tried bool
	r     *sockmap.Relay
	mode  string // "kernel" or "user: REASON"
}

// ensure creates the relay for p if p is a fastl4 plan and none was tried
// yet, and publishes the relay mode in p's counters.
func (k *kernelRelay) ensure(p *Plan) {
	if p.Type != "fastl4" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.tried && p.FastL4.KernelRelay {
		k.tried = true
		newRelay := p.NewKernelRelay
		if newRelay == nil {
			newRelay = sockmap.New
		}
		flows := p.ConnectionLimit
		if flows <= 0 {
			flows = defaultKernelFlows
		}
		r, err := newRelay(sockmap.Options{Flows: flows})
		if err != nil {
			k.mode = "user: kernel relay unavailable: " + err.Error()
			p.Log.Warn("fastl4 virtual relays in user space: the kernel relay (eBPF sockmap) cannot be set up; it needs CAP_BPF and CAP_NET_ADMIN and Linux 5.13 or later", "err", err)
		} else {
			k.r = r
			k.mode = "kernel"
			p.Log.Info("fastl4 virtual relays in the kernel (eBPF sockmap)", "max_flows", flows)
		}
	}
	mode := k.mode
	switch {
	case !p.FastL4.KernelRelay:
		mode = "user: kernel_relay off"
	case mode == "":
		mode = "user"
	}
	p.Stats.FastL4.Mode.Store(&mode)
}

// get returns the relay, or nil.
func (k *kernelRelay) get() *sockmap.Relay {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.r
}

func (k *kernelRelay) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.r != nil {
		k.r.Close()
		k.r = nil
	}
}

// closeOrReset ends a connection with RST when reset is set, else with FIN.
func closeOrReset(c net.Conn, reset bool) {
	if tc, ok := c.(*net.TCPConn); ok && reset {
		tcp.Abort(tc)
		return
	}
	c.Close()
}

// FastL4Detail is the detailed view of one fastl4 connection.
type FastL4Detail struct {
	Relay      string     `json:"relay"` // kernel | user
	Clientside SideDetail `json:"clientside"`
	Serverside SideDetail `json:"serverside"`
}

// relayFastL4 moves a fastl4 flow's bytes: in the kernel when the
// listener has a relay with room, else (counted) through proxyStreams.
func (l *Listener) relayFastL4(p *Plan, e *conntrack.Entry, c, s net.Conn, member func(in, out int64)) {
	r := l.kernel.get()
	cl, sv := tcpConnOf(c), tcpConnOf(s)
	if r == nil || !p.FastL4.KernelRelay || cl == nil || sv == nil {
		p.Stats.FastL4.UserFlows.Add(1)
		l.proxyStreams(p, e, c, s, member)
		return
	}
	f, err := r.Splice(cl, sv)
	if err != nil {
		p.Stats.FastL4.UserFlows.Add(1)
		switch {
		case errors.Is(err, sockmap.ErrFull):
			p.Stats.FastL4.MapFull.Add(1)
		case errors.Is(err, sockmap.ErrClosing):
			// A side sent its FIN before the member answered: nothing
			// left to gain from the kernel.
		default:
			p.Log.Debug("fastl4 flow relayed in user space", "err", err)
		}
		l.proxyStreams(p, e, c, s, member)
		return
	}
	p.Stats.FastL4.KernelFlows.Add(1)

	// The kernel's byte counts go into the connection table (counters and
	// idle clock), the virtual's and the member's counters: every second
	// while the flow lives, when it is shown, and when it ends.
	var mu sync.Mutex
	var in, out uint64
	count := func() {
		mu.Lock()
		defer mu.Unlock()
		ab, ba := f.Counts()
		if d := int64(ab - in); d > 0 {
			in = ab
			e.AddIn(d)
			p.Stats.BytesIn.Add(uint64(d))
			member(d, 0)
		}
		if d := int64(ba - out); d > 0 {
			out = ba
			e.AddOut(d)
			p.Stats.BytesOut.Add(uint64(d))
			member(0, d)
		}
	}
	e.SetDetail(func() any {
		count()
		return FastL4Detail{Relay: "kernel", Clientside: sideDetail(p.Clientside, c), Serverside: sideDetail(p.Serverside, s)}
	})

	var timer struct {
		sync.Mutex
		t *time.Timer
	}
	halfClosed := func(dir int) {
		// Direction dir's source sent its FIN (CLOSE_WAIT there) and the
		// other socket sent ours (FIN_WAIT): the profiles' close timers
		// run, as for tcp; loose_close ends the flow shortly.
		recvProfile, sentProfile := p.Clientside, p.Serverside
		if dir == 1 {
			recvProfile, sentProfile = p.Serverside, p.Clientside
		}
		d := closingTimeout(recvProfile, sentProfile)
		if p.FastL4.LooseClose && (d == 0 || d > LooseCloseLinger) {
			d = LooseCloseLinger
		}
		if d <= 0 {
			return
		}
		timer.Lock()
		defer timer.Unlock()
		if timer.t == nil {
			timer.t = time.AfterFunc(d, func() {
				closeOrReset(c, false)
				closeOrReset(s, false)
			})
		}
	}
	done := make(chan sockmap.Result, 1)
	go func() { done <- f.Run(context.Background(), halfClosed) }()
	tick := time.NewTicker(activityEvery)
	defer tick.Stop()
	var res sockmap.Result
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-tick.C:
			count()
		}
	}
	timer.Lock()
	if timer.t != nil {
		timer.t.Stop()
	}
	timer.Unlock()
	count()
	switch {
	case res.Reset:
		// One side reset: reset the other (the one that reset is gone).
		p.Stats.FastL4.Resets.Add(1)
		tcp.Abort(cl)
		tcp.Abort(sv)
	case res.Err != nil:
		c.Close()
		s.Close()
	}
}
