//go:build linux

package lbsp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Helpers for applications: a client that sends the option and learns the
// server that answered, a server that reads the client's option and names
// itself in reply, and a forward proxy that passes the option through.
// Sending the option needs CAP_NET_RAW (see the package documentation);
// without it Dial and Accept fail with an error that says so.

// find returns the LBSP option among hdrs.
func find(hdrs [][]byte, typ byte) (Option, bool) {
	p := Parser{Type: typ, KernelChecked: true}
	for _, h := range hdrs {
		if r, err := p.Parse(h); err == nil && r.Found {
			return r.Option, true
		}
	}
	return Option{}, false
}

func typeOr(t byte) byte {
	if t == 0 {
		return DefaultType
	}
	return t
}

// Client dials with the LBSP option and learns, per service address, the
// server that answered, which its next connections name so that the load
// balancer keeps them on it. The zero Client is not usable: set Identity.
type Client struct {
	// Identity is the client's identity: ClientFromAddr of its own
	// address, or RandomClient for an anonymous one.
	Identity [16]byte
	// Type is the option type (0: DefaultType).
	Type byte
	// Direct sends later connections to a service straight to the server
	// learnt from the first one (the seed's "direct follow-up
	// connections"; default off). The load balancer then neither sees nor
	// protects them: no health checks, no limits, no failover to another
	// member if that server goes away.
	Direct bool
	// Dialer is used for the connections (nil: a zero net.Dialer).
	Dialer *net.Dialer

	mu      sync.Mutex
	servers map[string]netip.Addr // service address -> server learnt
}

// Server returns the server learnt for the service address, if any.
func (c *Client) Server(address string) (netip.Addr, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.servers[address]
	return a, ok
}

// target is where a connection to address goes: the service, or with
// Direct the server learnt for it, on the service's port.
func (c *Client) target(address string) (string, netip.Addr) {
	srv, ok := c.Server(address)
	if !ok || !c.Direct {
		return address, srv
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return address, srv
	}
	return net.JoinHostPort(srv.String(), port), srv
}

// DialContext connects to address (tcp6) with the option: the client's
// identity and the server learnt for address, if any. Call Learn on the
// connection after reading from it to learn the server that answered.
func (c *Client) DialContext(ctx context.Context, address string) (*ClientConn, error) {
	to, srv := c.target(address)
	hdr := BuildDestOpts(0, Option{Client: c.Identity, Server: srv}.Append(nil, typeOr(c.Type)))
	var d net.Dialer
	if c.Dialer != nil {
		d = *c.Dialer
	}
	prev := d.Control
	d.Control = func(network, addr string, rc syscall.RawConn) error {
		if prev != nil {
			if err := prev(network, addr, rc); err != nil {
				return err
			}
		}
		if err := EnableRecvDestOptsRaw(rc); err != nil {
			return err
		}
		return SetDestOptsRaw(rc, hdr)
	}
	conn, err := d.DialContext(ctx, "tcp6", to)
	if err != nil {
		return nil, err
	}
	return &ClientConn{TCPConn: conn.(*net.TCPConn), client: c, address: address}, nil
}

// ClientConn is a connection a Client made.
type ClientConn struct {
	*net.TCPConn
	client  *Client
	address string
}

// Learn reads the option of the last segment received (call it after a
// Read) and, if it names a server, records it for the connection's
// service address and returns it.
func (cc *ClientConn) Learn() (netip.Addr, bool) {
	hdrs, err := TCPDestOpts(cc.TCPConn)
	if err != nil {
		return netip.Addr{}, false
	}
	o, ok := find(hdrs, typeOr(cc.client.Type))
	if !ok || !o.HasServer() {
		return netip.Addr{}, false
	}
	cc.client.mu.Lock()
	if cc.client.servers == nil {
		cc.client.servers = map[string]netip.Addr{}
	}
	cc.client.servers[cc.address] = o.Server
	cc.client.mu.Unlock()
	return o.Server, true
}

// Listen returns a TCP listener on address (tcp6) whose connections carry
// the client's option (ServerConn.Option) and answer with it, the
// server's own address self filled in, from the server's first data on.
func Listen(ctx context.Context, address string, self netip.Addr, typ byte) (*Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return EnableRecvDestOptsRaw(rc) }}
	ln, err := lc.Listen(ctx, "tcp6", address)
	if err != nil {
		return nil, err
	}
	return &Listener{ln: ln.(*net.TCPListener), self: self, typ: typeOr(typ)}, nil
}

// Listener is a server's listener (Listen).
type Listener struct {
	ln   *net.TCPListener
	self netip.Addr
	typ  byte
}

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening.
func (l *Listener) Close() error { return l.ln.Close() }

// Accept accepts a connection, reads its SYN's option and, when there was
// one, sets the reply option (its client identity, this server's address)
// on the connection. A connection without the option is returned as is.
func (l *Listener) Accept() (*ServerConn, error) {
	c, err := l.ln.AcceptTCP()
	if err != nil {
		return nil, err
	}
	sc := &ServerConn{TCPConn: c}
	hdrs, err := TCPDestOpts(c)
	if err != nil {
		return sc, nil
	}
	if o, ok := find(hdrs, l.typ); ok {
		sc.opt, sc.has = o, true
		reply := Option{Client: o.Client, Server: l.self}
		if err := SetDestOpts(c, BuildDestOpts(0, reply.Append(nil, l.typ))); err != nil {
			c.Close()
			return nil, fmt.Errorf("lbsp: reply option: %w", err)
		}
	}
	return sc, nil
}

// ServerConn is an accepted connection.
type ServerConn struct {
	*net.TCPConn
	opt Option
	has bool
}

// Option is the option the client's SYN carried, if any.
func (sc *ServerConn) Option() (Option, bool) { return sc.opt, sc.has }

// ForwardControl is the forward proxy's helper (the seed's rule for
// proxies: pass the option through unchanged): a net.Dialer Control
// function that puts on the outgoing connection the option the accepted
// connection in's SYN carried. Call it right after accept. With no option
// on in, the outgoing connection carries none.
func ForwardControl(in *net.TCPConn, typ byte) (func(network, address string, c syscall.RawConn) error, error) {
	hdrs, err := TCPDestOpts(in)
	if err != nil {
		return nil, err
	}
	o, ok := find(hdrs, typeOr(typ))
	if !ok {
		return func(string, string, syscall.RawConn) error { return nil }, nil
	}
	return DialerControl(BuildDestOpts(0, o.Append(nil, typeOr(typ)))), nil
}
