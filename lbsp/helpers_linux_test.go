//go:build linux

package lbsp

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// A Client names itself, learns the server from the reply, and names it
// in its next connection; a Listener reads the option and answers.
func TestClientAndListener(t *testing.T) {
	canSend(t)
	ctx := context.Background()
	self := netip.MustParseAddr("::1")
	ln, err := Listen(ctx, "[::1]:0", self, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan Option, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o, _ := c.Option()
			got <- o
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	cl := &Client{Identity: ClientFromAddr(netip.MustParseAddr("2001:db8::c1"))}
	addr := ln.Addr().String()
	for i := range 2 {
		c, err := cl.DialContext(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
			t.Fatalf("read %q %v", b, err)
		}
		srv, ok := c.Learn()
		c.Close()
		if !ok || srv != self {
			t.Fatalf("connection %d learnt %v %v, want %v", i, srv, ok, self)
		}
		o := <-got
		if o.Client != cl.Identity {
			t.Fatalf("server saw client %x", o.Client)
		}
		if want := i == 1; o.HasServer() != want {
			t.Fatalf("connection %d: server address in the option %v, want %v", i, o.Server, want)
		}
	}
	if s, ok := cl.Server(addr); !ok || s != self {
		t.Fatalf("Server(%s) = %v %v", addr, s, ok)
	}
}

// Direct follow-up connections go to the learnt server on the service's
// port; without Direct they go to the service.
func TestClientDirectTarget(t *testing.T) {
	cl := &Client{servers: map[string]netip.Addr{"[2001:db8::80]:443": netip.MustParseAddr("2001:db8:10::5")}}
	if to, srv := cl.target("[2001:db8::80]:443"); to != "[2001:db8::80]:443" || srv.String() != "2001:db8:10::5" {
		t.Fatalf("without Direct: %s %v", to, srv)
	}
	cl.Direct = true
	if to, _ := cl.target("[2001:db8::80]:443"); to != "[2001:db8:10::5]:443" {
		t.Fatalf("with Direct: %s", to)
	}
	if to, srv := cl.target("[2001:db8::81]:443"); to != "[2001:db8::81]:443" || srv.IsValid() {
		t.Fatalf("unknown service: %s %v", to, srv)
	}
}

// A forward proxy passes the client's option on to the server unchanged.
func TestForwardControl(t *testing.T) {
	canSend(t)
	ctx := context.Background()
	srv, err := Listen(ctx, "[::1]:0", netip.MustParseAddr("::1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan Option, 1)
	go func() {
		c, err := srv.Accept()
		if err != nil {
			return
		}
		o, _ := c.Option()
		got <- o
		c.Close()
	}()
	// The proxy's listener must ask for the SYNs' options too.
	plc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return EnableRecvDestOptsRaw(rc) }}
	pln, err := plc.Listen(ctx, "tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pln.Close()
	go func() {
		in, err := pln.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		ctl, err := ForwardControl(in.(*net.TCPConn), 0)
		if err != nil {
			return
		}
		d := net.Dialer{Control: ctl}
		if out, err := d.Dial("tcp6", srv.Addr().String()); err == nil {
			io.Copy(io.Discard, out)
			out.Close()
		}
	}()
	cl := &Client{Identity: RandomClient()}
	c, err := cl.DialContext(ctx, pln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case o := <-got:
		if o.Client != cl.Identity {
			t.Fatalf("the server saw client %x, want %x", o.Client, cl.Identity)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server got no connection")
	}
}
