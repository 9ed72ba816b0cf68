package virtual

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
)

// maxConnectAttempts is how many members a flow tries before giving up
// (F5 reselect tries); each failure also feeds passive detection.
const maxConnectAttempts = 3

// serveTCP is the L4 full proxy: terminate the client connection, pick a
// member, connect, and pump bytes both ways until both sides are done.
func (l *Listener) serveTCP(p *Plan, c net.Conn) {
	now := time.Now()
	clientAP := addrPortOf(c.RemoteAddr())
	e := &conntrack.Entry{
		Virtual:     p.Name,
		Proto:       "tcp",
		Client:      clientAP,
		VirtualAddr: addrPortOf(c.LocalAddr()),
		Created:     now,
		IdleTimeout: p.IdleTimeout,
	}
	var server net.Conn
	var mu sync.Mutex
	closeAll := func() {
		c.Close()
		mu.Lock()
		if server != nil {
			server.Close()
		}
		mu.Unlock()
	}
	p.Conns.Add(e, closeAll)
	defer p.Conns.Remove(e)
	defer closeAll()

	if p.ClientTLS != nil {
		tc := tls.Server(c, p.ClientTLS)
		c.SetDeadline(now.Add(p.ConnectTimeout + 5*time.Second))
		if err := tc.HandshakeContext(l.ctx); err != nil {
			p.reject("tls_handshake")
			p.Log.Debug("client-ssl handshake failed", "client", clientAP, "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		c = tc
	}

	var key []byte
	if p.HashKey.Kind == HashSourceAddr {
		b := clientAP.Addr().As16()
		key = b[:]
	}
	var lastErr error
	for attempt := 0; attempt < maxConnectAttempts; attempt++ {
		ch, err := p.choose(clientAP.Addr(), nil, key, time.Now())
		if err != nil {
			p.reject("no_member")
			p.Log.Debug("no pool member for connection", "client", clientAP, "err", err)
			return
		}
		m := ch.member
		s, err := p.dialMember(l.ctx, clientAP.Addr(), m, l.seed, nil)
		if err != nil {
			m.Release()
			m.AddError()
			lastErr = err
			continue
		}
		mu.Lock()
		server = s
		mu.Unlock()
		e.SetServer(m.PoolName(), addrPortOf(s.LocalAddr()), m.Addr())
		l.proxyStreams(p, e, c, s, func(in, out int64) { m.AddBytes(in, out) })
		m.Release()
		return
	}
	p.Stats.Errors.Add(1)
	p.Log.Warn("connection failed: no member reachable", "virtual", p.Name, "client", clientAP, "err", lastErr)
}

// proxyStreams relays both directions through their proxy buffers; when one
// side finishes sending, the other side gets a FIN (half-close), and the flow
// ends when both directions are done or either fails.
func (l *Listener) proxyStreams(p *Plan, e *conntrack.Entry, c, s net.Conn, member func(in, out int64)) {
	toServer := newRelay(s, c, p.ToServer.High, p.ToServer.Low, func(n int64) {
		e.AddIn(n)
		p.Stats.BytesIn.Add(uint64(n))
		member(n, 0)
	}, &RelayStats{})
	toClient := newRelay(c, s, p.ToClient.High, p.ToClient.Low, func(n int64) {
		e.AddOut(n)
		p.Stats.BytesOut.Add(uint64(n))
		member(0, n)
	}, &RelayStats{})
	e.SetDetail(func() any {
		return relayDetail{ToServer: toServer.stats.Snapshot(), ToClient: toClient.stats.Snapshot()}
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); toClient.run() }()
	toServer.run()
	wg.Wait()
}

// relayDetail is what the connection table shows about the proxy buffers.
type relayDetail struct {
	ToServer BufferSnapshot `json:"proxy_buffer_to_server"`
	ToClient BufferSnapshot `json:"proxy_buffer_to_client"`
}
