package virtual

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// onlyConn hides *net.TCPConn so the relay reads through net.Conn.Read
// instead of inside the poller's callback.
type onlyConn struct{ net.Conn }

func (o onlyConn) CloseWrite() error { return o.Conn.(*net.TCPConn).CloseWrite() }

func TestRelayMovesEveryByteAndHalfCloses(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  bool
	}{{"raw", true}, {"wrapped", false}} {
		t.Run(tc.name, func(t *testing.T) {
			// writer → [srcFar srcNear] → relay → [dstNear dstFar] → reader
			srcFar, srcNear := tcpPair(t)
			dstNear, dstFar := tcpPair(t)
			var src, dst net.Conn = srcNear, dstNear
			if !tc.raw {
				src, dst = onlyConn{srcNear}, onlyConn{dstNear}
			}
			payload := make([]byte, 3<<20+17)
			rand.Read(payload)
			var counted int64
			st := &RelayStats{}
			r := newRelay(dst, src, 64<<10, 32<<10, func(n int64) { counted += n }, st, &sync.Pool{})
			done := make(chan error, 1)
			go func() { done <- r.run() }()
			go func() {
				srcFar.Write(payload)
				srcFar.CloseWrite()
			}()
			dstFar.SetDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(dstFar) // ends at the relayed FIN
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("relayed %d bytes, want %d identical bytes", len(got), len(payload))
			}
			if err := <-done; err != nil {
				t.Fatalf("relay: %v", err)
			}
			if counted != int64(len(payload)) {
				t.Errorf("counted %d bytes, want %d", counted, len(payload))
			}
			if m := st.MaxHeld.Load(); m > 64<<10 {
				t.Errorf("held %d bytes, above the high mark", m)
			}
			if len(r.buf.chunks) != 0 {
				t.Errorf("%d chunks still held after the relay ended", len(r.buf.chunks))
			}
		})
	}
}

func TestRelayErrorClosesBothSides(t *testing.T) {
	srcFar, srcNear := tcpPair(t)
	dstNear, dstFar := tcpPair(t)
	r := newRelay(dstNear, srcNear, 64<<10, 32<<10, func(int64) {}, nil, nil)
	done := make(chan error, 1)
	go func() { done <- r.run() }()
	dstFar.SetLinger(0)
	dstFar.Close() // the destination resets
	buf := make([]byte, 64<<10)
	for i := 0; i < 50; i++ {
		if _, err := srcFar.Write(buf); err != nil {
			break
		}
	}
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("relay reported success after the destination reset")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not stop after the destination reset")
	}
	srcFar.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srcFar.Read(buf); err == nil {
		t.Errorf("source side still open after the relay failed")
	}
}
