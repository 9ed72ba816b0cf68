package sockmap

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// newRelay creates a relay or skips the test when this process cannot
// (not root, or a kernel without sockmap).
func newRelay(t testing.TB, o Options) *Relay {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN) for a sockmap")
	}
	r, err := New(o)
	if err != nil {
		t.Skipf("no sockmap on this kernel: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// quad is client ⇄ a (proxy) and b (proxy) ⇄ server, on loopback.
type quad struct{ client, a, b, server *net.TCPConn }

func newQuad(t testing.TB) quad {
	t.Helper()
	accept := func(ln net.Listener) *net.TCPConn {
		ch := make(chan net.Conn, 1)
		go func() { c, _ := ln.Accept(); ch <- c }()
		select {
		case c := <-ch:
			if c == nil {
				t.Fatal("accept failed")
			}
			return c.(*net.TCPConn)
		case <-time.After(5 * time.Second):
			t.Fatal("accept timed out")
		}
		return nil
	}
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	c, err := net.Dial("tcp", l1.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := accept(l1)
	b, err := net.Dial("tcp", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := accept(l2)
	q := quad{c.(*net.TCPConn), a, b.(*net.TCPConn), s}
	t.Cleanup(func() {
		for _, x := range []*net.TCPConn{q.client, q.a, q.b, q.server} {
			x.Close()
		}
	})
	return q
}

// runFlow runs f in the background; the returned function waits for its
// result (bounded).
func runFlow(t testing.TB, f *Flow) func() Result {
	ch := make(chan Result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { ch <- f.Run(ctx, nil) }()
	return func() Result {
		select {
		case r := <-ch:
			return r
		case <-time.After(30 * time.Second):
			t.Fatal("the flow did not end")
			return Result{Err: errors.New("timeout")}
		}
	}
}

// pattern fills b with the stream's bytes from offset off: each 8-byte
// word is its own offset (sequence-stamped), so any loss, duplication or
// reordering shows.
func pattern(b []byte, off uint64, seed byte) {
	for i := range b {
		o := off + uint64(i)
		w := o &^ 7
		b[i] = byte(w>>(8*(o&7))) ^ seed
	}
}
