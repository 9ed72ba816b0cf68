package virtual

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// serverConnOn makes a serverConn over a, as the exchange's dial does.
func serverConnOn(a *net.TCPConn) *serverConn {
	sc := &serverConn{raw: a}
	sc.conn = newCountConn(a, discardCounter{})
	sc.br = bufio.NewReader(sc.conn)
	sc.bw = bufio.NewWriter(sc.conn)
	return sc
}

type discardCounter struct{}

func (discardCounter) countIn(int64)  {}
func (discardCounter) countOut(int64) {}

// An idle server connection is reused without a peek only when the loop
// has handled a whole round that began after it was parked and saw nothing
// on it; bytes or a FIN from the member make it unclean, whether the loop
// has seen them yet or a peek finds them.
func TestParkerQuietIdleServerConnection(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Fatal(err)
	}
	defer pk.close()
	a, member := tcpPair(t)
	sc := serverConnOn(a)
	pk.watchServer(sc)
	if sc.w == nil {
		t.Fatal("server connection not watched")
	}
	sc.w.parkedIdle()
	if sc.w.quiet() {
		t.Fatal("quiet before any loop round began after the parking")
	}
	if !sc.clean() {
		t.Fatal("an untouched idle connection is not clean (peek)")
	}
	// Another watched socket's event makes the loop run a round.
	b, peer := tcpPair(t)
	other := serverConnOn(b)
	pk.watchServer(other)
	peer.Write([]byte("x"))
	waitUntil(t, "a loop round after the parking", 2*time.Second, sc.w.quiet)
	if !sc.clean() {
		t.Fatal("quiet connection not clean")
	}

	// The member writes while the connection idles: never clean again.
	sc.w.parkedIdle()
	member.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
	if sc.clean() {
		t.Fatal("connection with unsolicited bytes reported clean")
	}
	waitUntil(t, "the loop to see the bytes", 2*time.Second, func() bool { return sc.w.seq.Load() != sc.w.putSeq })
	if sc.w.quiet() || sc.clean() {
		t.Fatal("connection with unsolicited bytes reported quiet or clean")
	}

	// A FIN on another idle connection: not clean.
	c, member2 := tcpPair(t)
	sc2 := serverConnOn(c)
	pk.watchServer(sc2)
	sc2.w.parkedIdle()
	member2.Close()
	waitUntil(t, "the loop to see the FIN", 2*time.Second, func() bool { return sc2.w.seq.Load() != sc2.w.putSeq })
	if sc2.clean() {
		t.Fatal("connection closed by the member reported clean")
	}
	sc.close()
	sc2.close()
	other.close()
}

// await returns when the member's bytes arrive, at its deadline when they
// do not, and at once when the connection is closed under it.
func TestParkerAwait(t *testing.T) {
	pk, err := newParker()
	if err != nil {
		t.Fatal(err)
	}
	defer pk.close()
	a, member := tcpPair(t)
	sc := serverConnOn(a)
	pk.watchServer(sc)

	seq := sc.w.seq.Load()
	go func() { time.Sleep(50 * time.Millisecond); member.Write([]byte("hi")) }()
	t0 := time.Now()
	sc.w.await(seq, time.Now().Add(5*time.Second))
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("await took %v for data sent after 50ms", d)
	}
	buf := make([]byte, 2)
	if _, err := sc.br.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}

	seq = sc.w.seq.Load()
	t0 = time.Now()
	sc.w.await(seq, time.Now().Add(100*time.Millisecond))
	if d := time.Since(t0); d < 90*time.Millisecond || d > 2*time.Second {
		t.Fatalf("await without data returned after %v, want its 100ms deadline", d)
	}

	seq = sc.w.seq.Load()
	go func() { time.Sleep(50 * time.Millisecond); sc.close() }()
	t0 = time.Now()
	sc.w.await(seq, time.Now().Add(5*time.Second))
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("await on a closed connection returned after %v", d)
	}
}
