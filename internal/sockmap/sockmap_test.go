package sockmap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// send writes n pattern bytes to c, then half-closes it.
func send(c *net.TCPConn, n int, seed byte) error {
	buf := make([]byte, 256<<10)
	c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	for off := 0; off < n; {
		k := min(len(buf), n-off)
		pattern(buf[:k], uint64(off), seed)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		off += k
	}
	return c.CloseWrite()
}

// sendEmptyFIN is send, but the FIN goes alone (an empty segment, not
// on the last data segment): c half-closes once its peer has acknowledged
// every byte.
func sendEmptyFIN(c *net.TCPConn, n int, seed byte) error {
	buf := make([]byte, 256<<10)
	c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	for off := 0; off < n; {
		k := min(len(buf), n-off)
		pattern(buf[:k], uint64(off), seed)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		off += k
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		outq, err := ioctl(rc, unix.SIOCOUTQ)
		if err != nil {
			return err
		}
		if outq == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d bytes still unacknowledged", outq)
		}
	}
	return c.CloseWrite()
}

// recvCheck reads c to its end and checks every byte against the pattern.
func recvCheck(c *net.TCPConn, n int, seed byte) error {
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	return recvCheck2(c, n, seed)
}

func recvCheck2(c *net.TCPConn, n int, seed byte) error {
	buf := make([]byte, 256<<10)
	want := make([]byte, len(buf))
	off := 0
	for {
		k, err := c.Read(buf)
		if k > 0 {
			if off+k > n {
				return fmt.Errorf("got %d bytes, want %d", off+k, n)
			}
			pattern(want[:k], uint64(off), seed)
			if i := firstDiff(buf[:k], want[:k]); i >= 0 {
				j := i &^ 7
				e := min(j+32, k)
				return fmt.Errorf("byte %d is %#x, want %#x (got % x, want % x, read of %d at %d)", off+i, buf[i], want[i], buf[j:e], want[j:e], k, off)
			}
			off += k
		}
		if err == io.EOF {
			if off != n {
				return fmt.Errorf("EOF after %d bytes, want %d", off, n)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", off, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestByteExactBothWays: 64 MiB each way at once, checked byte by byte at
// the far ends, with the FINs forwarded after the data. A small window
// makes the flow switch between kernel and user-space copies many times.
func TestByteExactBothWays(t *testing.T) {
	knownDuplication(t)
	for _, w := range []int{DefaultWindow, 256 << 10} {
		t.Run(fmt.Sprintf("window=%d", w), func(t *testing.T) {
			r := newRelay(t, Options{Window: w})
			q := newQuad(t)
			f, err := r.Splice(q.a, q.b)
			if err != nil {
				t.Fatal(err)
			}
			wait := runFlow(t, f)
			const n = 64 << 20
			errs := make(chan error, 4)
			go func() { errs <- send(q.client, n, 0x11) }()
			go func() { errs <- send(q.server, n, 0x22) }()
			go func() { errs <- recvCheck(q.server, n, 0x11) }()
			go func() { errs <- recvCheck(q.client, n, 0x22) }()
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if res := wait(); res.Err != nil {
				t.Fatalf("flow ended with %v", res.Err)
			}
			if ab, ba := f.Counts(); ab != n || ba != n {
				t.Errorf("counted %d and %d bytes, want %d each", ab, ba, n)
			}
		})
	}
}

// TestCreditBoundaryBothWays: a small window makes both directions cross
// the credit boundary (kernel redirect, user-space copy, redirect again)
// thousands of times, 64 MiB each way at once, byte-exact.
//
// With readsLate, one side sends everything and half-closes before it
// reads, and its socket buffers and the proxy's toward it are small (less
// than the window): redirected bytes are stuck in that proxy socket's
// psock queue when the FIN arrives on it. That used to break the flow:
// the FIN's empty skb was queued behind them, the kernel's backlog worker
// took its 0-byte result for a failure, set EPIPE on the socket and
// dropped every later redirect to it.
func TestCreditBoundaryBothWays(t *testing.T) {
	knownDuplication(t)
	for _, c := range []struct {
		window int
		late   string
	}{{64 << 10, "none"}, {64 << 10, "client"}, {64 << 10, "server"}, {8 << 20, "client"}, {8 << 20, "server"}} {
		t.Run(fmt.Sprintf("window=%d/readsLate=%s", c.window, c.late), func(t *testing.T) {
			r := newRelay(t, Options{Window: c.window})
			q := newQuad(t)
			late := c.late
			f, err := r.Splice(q.a, q.b)
			if err != nil {
				t.Fatal(err)
			}
			wait := runFlow(t, f)
			const n = 64 << 20
			errs := make(chan error, 4)
			side := func(c *net.TCPConn, sendSeed, recvSeed byte, readLate bool) {
				if readLate {
					errs <- sendEmptyFIN(c, n, sendSeed)
					errs <- recvCheck(c, n, recvSeed)
					return
				}
				go func() { errs <- send(c, n, sendSeed) }()
				errs <- recvCheck(c, n, recvSeed)
			}
			go side(q.client, 0x11, 0x22, late == "client")
			go side(q.server, 0x22, 0x11, late == "server")
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if res := wait(); res.Err != nil {
				t.Fatalf("flow ended with %v", res.Err)
			}
			if ab, ba := f.Counts(); ab != n || ba != n {
				t.Errorf("counted %d and %d bytes, want %d each", ab, ba, n)
			}
		})
	}
}

// TestEarlyData: bytes that arrived before the hand-off (in each socket's
// receive queue) are delivered, in order, with nothing sent after them.
func TestEarlyData(t *testing.T) {
	r := newRelay(t, Options{})
	q := newQuad(t)
	q.client.Write([]byte("hello from the client"))
	q.server.Write([]byte("banner from the server"))
	time.Sleep(20 * time.Millisecond) // both are queued on the proxy's sockets
	f, err := r.Splice(q.a, q.b)
	if err != nil {
		t.Fatal(err)
	}
	wait := runFlow(t, f)
	for _, c := range []struct {
		conn *net.TCPConn
		want string
	}{{q.server, "hello from the client"}, {q.client, "banner from the server"}} {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(c.want))
		if _, err := io.ReadFull(c.conn, got); err != nil || string(got) != c.want {
			t.Fatalf("got %q, %v; want %q", got, err, c.want)
		}
	}
	q.client.CloseWrite()
	q.server.CloseWrite()
	if res := wait(); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// TestHalfClose: one side sends and half-closes; the other keeps sending
// after it has seen the FIN, then closes. Both ways round.
func TestHalfClose(t *testing.T) {
	for _, clientFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("clientFirst=%v", clientFirst), func(t *testing.T) {
			r := newRelay(t, Options{})
			q := newQuad(t)
			f, err := r.Splice(q.a, q.b)
			if err != nil {
				t.Fatal(err)
			}
			wait := runFlow(t, f)
			first, second := q.client, q.server
			if !clientFirst {
				first, second = second, first
			}
			if err := send(first, 3<<20, 1); err != nil {
				t.Fatal(err)
			}
			if err := recvCheck(second, 3<<20, 1); err != nil {
				t.Fatal(err) // includes: the FIN came after every byte
			}
			// The half-closed side still receives.
			errs := make(chan error, 1)
			go func() { errs <- recvCheck(first, 8<<20, 2) }()
			if err := send(second, 8<<20, 2); err != nil {
				t.Fatal(err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			if res := wait(); res.Err != nil {
				t.Fatal(res.Err)
			}
		})
	}
}

// TestReset: a reset on one side ends the flow with Reset set.
func TestReset(t *testing.T) {
	r := newRelay(t, Options{})
	q := newQuad(t)
	f, err := r.Splice(q.a, q.b)
	if err != nil {
		t.Fatal(err)
	}
	wait := runFlow(t, f)
	q.client.Write([]byte("x"))
	q.client.SetLinger(0)
	q.client.Close()
	res := wait()
	if !res.Reset {
		t.Fatalf("result %+v, want Reset", res)
	}
}

// TestFull: a relay for one flow refuses a second, and takes one again
// after the first ended.
func TestFull(t *testing.T) {
	r := newRelay(t, Options{Flows: 1})
	q1, q2 := newQuad(t), newQuad(t)
	f, err := r.Splice(q1.a, q1.b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Splice(q2.a, q2.b); !errors.Is(err, ErrFull) {
		t.Fatalf("second Splice: %v, want ErrFull", err)
	}
	wait := runFlow(t, f)
	q1.client.CloseWrite()
	q1.server.CloseWrite()
	if res := wait(); res.Err != nil {
		t.Fatal(res.Err)
	}
	if r.Flows() != 0 {
		t.Fatalf("%d flows left", r.Flows())
	}
	f2, err := r.Splice(q2.a, q2.b)
	if err != nil {
		t.Fatal(err)
	}
	wait2 := runFlow(t, f2)
	q2.client.CloseWrite()
	q2.server.CloseWrite()
	wait2()
}

// slowReader pushes as fast as it can toward a reader that takes 16 KiB
// every 50 ms, and returns the largest backlog seen: bytes the program
// redirected that the destination socket had not yet taken (kernel
// memory outside any socket's accounting).
func slowReader(t *testing.T, window int, stopAt uint64) uint64 {
	r := newRelay(t, Options{Window: window})
	q := newQuad(t)
	f, err := r.Splice(q.a, q.b)
	if err != nil {
		t.Fatal(err)
	}
	wait := runFlow(t, f)
	go func() {
		chunk := make([]byte, 1<<20)
		q.client.SetWriteDeadline(time.Now().Add(3 * time.Second))
		for range 4000 {
			if _, err := q.client.Write(chunk); err != nil {
				return
			}
		}
	}()
	d := f.dirs[0]
	var worst uint64
	buf := make([]byte, 16<<10)
	for range 40 {
		time.Sleep(50 * time.Millisecond)
		q.server.SetReadDeadline(time.Now().Add(time.Second))
		io.ReadFull(q.server, buf)
		red, _, err := d.counters()
		if err != nil {
			t.Fatal(err)
		}
		w, err := written(d.dstRC)
		if err != nil {
			t.Fatal(err)
		}
		if taken := int64(w - d.dstBase - d.consumed.Load()); int64(red)-taken > int64(worst) {
			worst = uint64(int64(red) - taken)
		}
		if worst > stopAt {
			break
		}
	}
	q.client.SetLinger(0)
	q.client.Close()
	q.server.SetLinger(0)
	q.server.Close()
	wait()
	return worst
}

// TestSlowReaderBounded: toward a slow reader the backlog stays within the
// window (the program leaves bytes on the source socket, whose receive
// buffer fills and whose TCP window closes).
func TestSlowReaderBounded(t *testing.T) {
	const window = 1 << 20
	if worst := slowReader(t, window, 64<<20); worst > window {
		t.Fatalf("backlog reached %d bytes, window %d", worst, window)
	}
}

// TestRedirectIgnoresBackpressure records the kernel behaviour the window
// exists for: with unlimited credit, sk_skb egress redirect queues without
// bound toward a socket whose send buffer is full. If a kernel starts to
// push back by itself, this test says so.
func TestRedirectIgnoresBackpressure(t *testing.T) {
	if worst := slowReader(t, 1<<50, 64<<20); worst <= 64<<20 {
		t.Fatalf("backlog stayed at %d bytes without credit: this kernel pushes back on redirects", worst)
	} else {
		t.Logf("without credit the backlog reached %d MiB in under 2 s", worst>>20)
	}
}

// knownDuplication skips the two-way byte-exact tests: about one run in
// 20-40 receives a stretch of bytes twice (receive-queue pruning on
// Linux 6.18, cause not confirmed; docs/fastl4.md). The configuration
// refuses kernel_relay on until this is fixed; set
// FULCRUM_SOCKMAP_DEFECT=1 to run them while working on it.
func knownDuplication(t *testing.T) {
	t.Helper()
	if os.Getenv("FULCRUM_SOCKMAP_DEFECT") == "" {
		t.Skip("known defect: a two-way stream is occasionally delivered with bytes twice (docs/fastl4.md); FULCRUM_SOCKMAP_DEFECT=1 runs it")
	}
}
