package tcprepair

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/flowhold"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"golang.org/x/sys/unix"
)

// loop is one namespace whose loopback carries a connection from client
// 127.0.0.1 to server 127.0.0.2 (prerouting and output hooks see loopback
// traffic, so the server's address can be held).
type loop struct {
	ns   *testnet.NS
	hold *flowhold.Holder
}

func newLoop(t testing.TB) *loop {
	t.Helper()
	needRoot(t)
	l := &loop{ns: testnet.TempNS(t, nsName(t, "lo"))}
	err := l.ns.Do(func() (err error) {
		l.hold, err = flowhold.New("fulcrum_hold")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.hold.Close() })
	return l
}

// The loop's addresses.
func loopClient() netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, 1}) }
func loopServer() netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, 2}) }

func (l *loop) connect(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := l.ns.Listen("tcp", netip.AddrPortFrom(loopServer(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(loopClient(), 0))}
	c, err := l.ns.Dial(ctx, d, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func sockIoctl(t testing.TB, c *net.TCPConn, req uint) int {
	t.Helper()
	var n int
	err := withFD(c, func(fd int) (err error) {
		n, err = unix.IoctlGetInt(fd, req)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSnapshotConsistent takes snapshots of a server socket while the peer
// streams into it over a veth (packets arrive while each snapshot is
// taken), with reads and writes between the snapshots, then dumps it
// under a hold: every snapshot's sequence numbers must agree with the dump
// and the bytes read and written since. Then the socket resumes and both
// streams complete intact.
func TestSnapshotConsistent(t *testing.T) {
	l := newLab(t, false)
	pc, ac := l.connect(t, false)
	const total = 1 << 30
	up, down := newPattern(3), newPattern(4)
	deadline := time.Now().Add(15 * time.Second)
	stopPW := make(chan struct{})
	pw := startWriter(pc, up, 0, total, nil, stopPW, deadline)
	pr := startReader(pc, down, 0, total, nil, nil, deadline)

	type sample struct {
		s             *State
		read, written int64
	}
	var (
		samples       []sample
		aRead, aWrote int64
		moved, busy   int
		queued        int
		buf           = make([]byte, 1<<20)
	)
	for i := range 300 {
		var s *State
		var m int
		err := withFD(ac, func(fd int) (err error) {
			s, m, err = snapshot(ac, fd, false)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if s.RecvQueue != nil || s.SendQueue != nil || s.Unsent != 0 {
			t.Fatalf("Snapshot returned queues")
		}
		moved += m
		samples = append(samples, sample{s, aRead, aWrote})
		// Read what is there (keeping the window open, so the peer
		// keeps sending), write some.
		_ = ac.SetReadDeadline(time.Now().Add(time.Second))
		n, err := ac.Read(buf[:(i%7+1)*64<<10])
		if err != nil {
			t.Fatal(err)
		}
		if err := up.check(buf[:n], aRead); err != nil {
			t.Fatal(err)
		}
		aRead += int64(n)
		w := (i%5 + 1) * 3000
		down.fill(buf[:w], aWrote)
		_ = ac.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := ac.Write(buf[:w]); err != nil {
			t.Fatal(err)
		}
		aWrote += int64(w)
		// SnapshotSent: the send queue is the tail of what was written,
		// ending at write_seq.
		ss, err := SnapshotSent(ac)
		if err != nil {
			t.Fatal(err)
		}
		if ss.SendSeq+uint32(len(ss.SendQueue)) != s.SendSeq+uint32(w) {
			t.Fatalf("snapshot %d: SendSeq %d + %d queued, want write_seq %d", i, ss.SendSeq, len(ss.SendQueue), s.SendSeq+uint32(w))
		}
		if err := down.check(ss.SendQueue, aWrote-int64(len(ss.SendQueue))); err != nil {
			t.Fatalf("snapshot %d: send queue: %v", i, err)
		}
		if len(ss.SendQueue) > 0 {
			queued++
		}
		if after, err := Snapshot(ac); err == nil && after.RecvSeq != s.RecvSeq+uint32(n) {
			t.Fatalf("snapshot %d: RecvSeq %d after reading %d bytes, want %d", i, after.RecvSeq, n, s.RecvSeq+uint32(n))
		}
		if sockIoctl(t, ac, unix.SIOCINQ) > 0 {
			busy++
		}
	}
	t.Logf("%d snapshots: rcv_nxt moved during %d of the reads (retried); data waiting after %d; unacknowledged bytes read by %d", len(samples), moved, busy, queued)

	// Freeze the flow and dump.
	close(stopPW)
	pWrote := pw.wait(t, "peer writer")
	release, err := l.holdA.Hold([]netip.Addr{l.vip})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	d, err := Dump(ac)
	if err != nil {
		t.Fatal(err)
	}
	for i, sm := range samples {
		if got, want := d.SendSeq+uint32(len(d.SendQueue)), sm.s.SendSeq+uint32(aWrote-sm.written); got != want {
			t.Errorf("snapshot %d: write_seq %d at the dump, want snapshot's %d + %d written = %d", i, got, sm.s.SendSeq, aWrote-sm.written, want)
		}
		if got, want := d.RecvSeq, sm.s.RecvSeq+uint32(aRead-sm.read); got != want {
			t.Errorf("snapshot %d: next byte to read %d at the dump, want snapshot's %d + %d read = %d", i, got, sm.s.RecvSeq, aRead-sm.read, want)
		}
	}
	if err := up.check(d.RecvQueue, aRead); err != nil {
		t.Fatalf("dumped receive queue: %v", err)
	}

	// Called off: resume, release, and finish both streams.
	if err := Resume(ac); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	ar := startReader(ac, up, aRead, pWrote, nil, nil, deadline)
	aw := startWriter(ac, down, aWrote, aWrote+1<<20, nil, nil, deadline)
	ar.wait(t, "server reader")
	aw.wait(t, "server writer")
	waitFor(t, 10*time.Second, "the peer to read everything", func() bool { return pr.off.Load() == aWrote+1<<20 })
}

// TestCloseSilently: the peer sees neither FIN nor RST, and no TIME_WAIT
// socket is left behind; the peer's next segment is answered with a RST by
// a kernel that no longer has the socket.
func TestCloseSilently(t *testing.T) {
	l := newLoop(t)
	pc, ac := l.connect(t)
	port := ac.LocalAddr().(*net.TCPAddr).Port
	if _, err := ac.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := CloseSilently(ac); err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := pc.Read(b[:]); n != 1 || err != nil {
		t.Fatalf("read %d bytes, %v; want the 1 byte written before", n, err)
	}
	if n, err := pc.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after CloseSilently the peer read %d bytes, %v; want nothing", n, err)
	}
	// No socket of the server's port remains, TIME_WAIT included.
	err := l.ns.Do(func() error {
		tab, err := os.ReadFile("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		needle := strings.ToUpper(":" + strings.TrimPrefix(hex16(port), "0x"))
		for _, line := range strings.Split(string(tab), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 3 && strings.HasSuffix(f[1], needle) {
				return errors.New("socket still listed: " + line)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := pc.Read(b[:]); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("peer's next read: %v, want ECONNRESET", err)
	}
}

func hex16(v int) string {
	const digits = "0123456789ABCDEF"
	return "0x" + string([]byte{digits[v>>12&15], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}

// TestDumpRefuses: a socket that is not ESTABLISHED, or has urgent data
// pending, is refused with an error that says why, and is left usable.
func TestDumpRefuses(t *testing.T) {
	l := newLoop(t)
	t.Run("close-wait", func(t *testing.T) {
		pc, ac := l.connect(t)
		if err := pc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		_ = ac.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := ac.Read(b[:]); err == nil {
			t.Fatal("read data, want EOF")
		}
		_, err := Dump(ac)
		if err == nil || !strings.Contains(err.Error(), "CLOSE_WAIT") {
			t.Fatalf("Dump in CLOSE_WAIT: %v, want an error naming CLOSE_WAIT", err)
		}
		t.Log(err)
		if _, err := ac.Write([]byte("still usable")); err != nil {
			t.Fatalf("write after refused Dump: %v", err)
		}
	})
	t.Run("urgent", func(t *testing.T) {
		pc, ac := l.connect(t)
		err := withFD(pc, func(fd int) error { return unix.Sendto(fd, []byte("!"), unix.MSG_OOB, nil) })
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_, err = Dump(ac)
		if err == nil || !strings.Contains(err.Error(), "urgent") {
			t.Fatalf("Dump with urgent data: %v, want an urgent-data error", err)
		}
		t.Log(err)
		if _, err := ac.Write([]byte("still usable")); err != nil {
			t.Fatalf("write after refused Dump: %v", err)
		}
	})
}

// TestDumpResume: a dump called off leaves the connection as it was.
func TestDumpResume(t *testing.T) {
	l := newLoop(t)
	pc, ac := l.connect(t)
	up := newPattern(5)
	buf := make([]byte, 100000)
	up.fill(buf, 0)
	if _, err := pc.Write(buf); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "bytes to arrive", func() bool { return sockIoctl(t, ac, unix.SIOCINQ) == len(buf) })
	release, err := l.hold.Hold([]netip.Addr{loopServer()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Dump(ac)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.check(s.RecvQueue, 0); err != nil || len(s.RecvQueue) != len(buf) {
		t.Fatalf("receive queue: %d bytes, %v", len(s.RecvQueue), err)
	}
	// Repair mode refuses ordinary reads.
	if _, err := ac.Read(buf[:1]); err == nil {
		t.Fatal("read in repair mode succeeded")
	}
	if err := Resume(ac); err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	r := startReader(ac, up, 0, int64(len(buf))+5000, nil, nil, time.Now().Add(5*time.Second))
	up.fill(buf[:5000], int64(len(buf)))
	if _, err := pc.Write(buf[:5000]); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "reader after Resume")
}

func TestErrorMessage(t *testing.T) {
	err := opErr("set TCP_QUEUE_SEQ", unix.EPERM)
	if got, want := err.Error(), "tcprepair: set TCP_QUEUE_SEQ: operation not permitted (TCP repair needs CAP_NET_ADMIN)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(err, unix.EPERM) {
		t.Error("error does not unwrap to EPERM")
	}
	if got, want := opErr("get TCP_INFO", unix.EBADF).Error(), "tcprepair: get TCP_INFO: bad file descriptor"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAdvanceTimestamp(t *testing.T) {
	s := &State{Timestamp: 1000}
	s.AdvanceTimestamp(1500 * time.Millisecond)
	if s.Timestamp != 2500 {
		t.Errorf("ms clock: got %d, want 2500", s.Timestamp)
	}
	s.AdvanceTimestamp(3 * time.Millisecond) // 2503: the flag bit stays clear
	if s.Timestamp != 2502 {
		t.Errorf("ms clock: got %d, want 2502", s.Timestamp)
	}
	s = &State{Timestamp: 0xffffff01} // µs clock, wraps
	s.AdvanceTimestamp(time.Millisecond)
	if want := uint32(0xffffff01+1000-1<<32) | 1; s.Timestamp != want {
		t.Errorf("µs clock: got %#x, want %#x", s.Timestamp, want)
	}
}

func TestRestoreRejectsBadState(t *testing.T) {
	good := State{
		Local: netip.MustParseAddrPort("10.0.0.1:80"), Remote: netip.MustParseAddrPort("10.0.0.2:4000"), MSS: 1460,
	}
	for name, mod := range map[string]func(*State){
		"mixed families": func(s *State) { s.Remote = netip.MustParseAddrPort("[2001:db8::1]:4000") },
		"no port":        func(s *State) { s.Local = netip.AddrPortFrom(s.Local.Addr(), 0) },
		"unsent":         func(s *State) { s.Unsent = 1 },
		"mss":            func(s *State) { s.MSS = 0 },
		"wscale":         func(s *State) { s.WindowScaling, s.SndWscale = true, 15 },
		"window":         func(s *State) { s.HasWindow, s.Window.SndWnd = true, 10 },
	} {
		s := good
		mod(&s)
		if _, err := Restore(&s, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "tcprepair: check state") {
			t.Errorf("%s: %v, want a check-state error", name, err)
		}
	}
}

// BenchmarkSnapshot is Snapshot's cost on the connection-setup path.
func BenchmarkSnapshot(b *testing.B) {
	l := newLoop(b)
	_, ac := l.connect(b)
	for b.Loop() {
		if _, err := Snapshot(ac); err != nil {
			b.Fatal(err)
		}
	}
}
