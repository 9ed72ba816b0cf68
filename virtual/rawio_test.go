package virtual

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// rawIO reads and writes like net.Conn: data, EOF, deadlines, a closed
// connection, a peer's reset; the errors classify the same way.
func TestRawIOBehavesLikeNetConn(t *testing.T) {
	a, b := tcpPair(t)
	r := newRawIO(a)
	if n, err := r.write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	buf := make([]byte, 16)
	if n, err := io.ReadFull(b, buf[:5]); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer read %q %v", buf[:n], err)
	}
	b.Write([]byte("world"))
	if n, err := r.read(buf); err != nil || string(buf[:n]) != "world" {
		t.Fatalf("read %q %v", buf[:n], err)
	}

	// A large write completes across EAGAIN while the peer reads.
	big := make([]byte, 8<<20)
	go io.Copy(io.Discard, b)
	if n, err := r.write(big); n != len(big) || err != nil {
		t.Fatalf("large write: %d %v", n, err)
	}

	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := r.read(buf); !isTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	a.SetReadDeadline(time.Time{})

	b.CloseWrite()
	if _, err := r.read(buf); err != io.EOF {
		t.Fatalf("read after the peer's FIN: %v, want io.EOF", err)
	}

	c, d := tcpPair(t)
	rc := newRawIO(c)
	d.SetLinger(0)
	d.Close() // reset
	time.Sleep(20 * time.Millisecond)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, err = rc.write([]byte("x"))
	}
	if err == nil || !isStale(err) {
		t.Fatalf("write to a reset connection: %v, want a stale-connection error", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("error %T %v is not a write *net.OpError", err, err)
	}

	a.Close()
	if _, err := r.read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := r.write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v, want net.ErrClosed", err)
	}
}
