//go:build linux

package lbsp_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/netip"

	"github.com/fulcrum-adc/fulcrum/lbsp"
)

// A client that names itself, learns the server that answered and names
// it in its next connections, so the load balancer keeps it there. (It
// needs CAP_NET_RAW and a service, so this example is compiled, not run.)
func ExampleClient() {
	c := &lbsp.Client{Identity: lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8::c1"))}
	for range 2 {
		conn, err := c.DialContext(context.Background(), "[2001:db8::80]:443")
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, conn)
		if srv, ok := conn.Learn(); ok {
			log.Printf("served by %s", srv)
		}
		conn.Close()
	}
}

// A server that reads the client's option and names itself in reply.
// (Compiled, not run: it needs CAP_NET_RAW.)
func ExampleListen() {
	ln, err := lbsp.Listen(context.Background(), "[::]:443", netip.MustParseAddr("2001:db8:10::5"), 0)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if o, ok := c.Option(); ok {
			log.Printf("client %x", o.Client)
		}
		c.Write([]byte("hello\n"))
		c.Close()
	}
}

// A forward proxy passes the client's option on unchanged. (Compiled, not
// run.)
func ExampleForwardControl() {
	lc := net.ListenConfig{}
	ln, err := lc.Listen(context.Background(), "tcp6", "[::]:3128")
	if err != nil {
		log.Fatal(err)
	}
	// (The proxy's listener needs lbsp.EnableRecvDestOpts before clients
	// connect, for the kernel to keep their SYNs' options.)
	lbsp.EnableRecvDestOpts(ln.(*net.TCPListener))
	in, err := ln.Accept()
	if err != nil {
		log.Fatal(err)
	}
	ctl, err := lbsp.ForwardControl(in.(*net.TCPConn), 0)
	if err != nil {
		log.Fatal(err)
	}
	d := net.Dialer{Control: ctl}
	out, err := d.Dial("tcp6", "[2001:db8::80]:443")
	if err != nil {
		log.Fatal(err)
	}
	go io.Copy(out, in)
	io.Copy(in, out)
}
