package tcprepair

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// moveOrder is how the target host takes the connection over.
type moveOrder int

const (
	// holdFirst: hold the address on B, add it, restore without a
	// window probe, release, then Probe.
	holdFirst moveOrder = iota
	// restoreFirst: restore before the address exists on B (IP_FREEBIND),
	// then add it and Probe; with the socket already there, nothing can
	// draw a RST, so B needs no hold.
	restoreFirst
)

// TestMove moves the server end of a busy connection from host A to host
// B (checked byte streams both ways, unread bytes in A's receive queue,
// sent-but-unacknowledged and unsent bytes in A's send queue), and checks
// the peer's connection continues byte-exact with no reset.
func TestMove(t *testing.T) {
	for _, tc := range []struct {
		name      string
		v6        bool
		dual      bool
		order     moveOrder
		smallRmem bool // B's tcp_rmem[2] below the receive queue
	}{
		{"v4", false, false, holdFirst, false},
		{"v6", true, false, holdFirst, false},
		{"v4mapped", false, true, holdFirst, false},
		{"v4/restore-first", false, false, restoreFirst, false},
		{"v6/restore-first", true, false, restoreFirst, false},
		{"v4mapped/restore-first", false, true, restoreFirst, false},
		{"v4/small-rmem", false, false, holdFirst, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testMove(t, tc.v6, tc.dual, tc.order, tc.smallRmem)
		})
	}
}

func testMove(t *testing.T, v6, dual bool, order moveOrder, smallRmem bool) {
	l := newLab(t, v6)
	if smallRmem {
		// The kernel grows a receive buffer only up to tcp_rmem[2]:
		// restoring 512 KB of receive queue then takes Restore's
		// SO_RCVBUFFORCE.
		if err := l.b.SetSysctl("net.ipv4.tcp_rmem", "4096 65536 262144"); err != nil {
			t.Fatal(err)
		}
	}
	pc, ac := l.connect(t, dual)
	const total = 4 << 20
	up, down := newPattern(1), newPattern(2) // P→A, A→P
	deadline := time.Now().Add(15 * time.Second)

	// Writers are paced by limits: 1 MB each way first.
	var upLimit, downLimit atomic.Int64
	upLimit.Store(1 << 20)
	downLimit.Store(1 << 20)
	pw := startWriter(pc, up, 0, total, &upLimit, nil, deadline)
	pr := startReader(pc, down, 0, total, nil, nil, deadline)
	stopAR, stopAW := make(chan struct{}), make(chan struct{})
	ar := startReader(ac, up, 0, total, nil, stopAR, deadline)
	aw := startWriter(ac, down, 0, total, &downLimit, stopAW, deadline)
	waitFor(t, 10*time.Second, "1 MB both ways", func() bool {
		return ar.off.Load() == 1<<20 && pr.off.Load() == 1<<20
	})

	// A stops reading and P writes 512 KB more: they wait in A's
	// receive queue.
	close(stopAR)
	aRead := ar.wait(t, "A reader")
	upLimit.Store(1<<20 + 512<<10)
	waitFor(t, 5*time.Second, "P to write 512 KB more", func() bool { return pw.off.Load() == upLimit.Load() })
	time.Sleep(10 * time.Millisecond)
	// Freeze: from here nothing of the flow reaches A and A sends no
	// RST. Then A writes up to 1 MB more, as much as its send buffer
	// takes in 50 ms: what its window and congestion window allow goes
	// out and is never acknowledged (the peer's ACKs are dropped), the
	// rest stays unsent.
	releaseA, err := l.holdA.Hold([]netip.Addr{l.vip})
	if err != nil {
		t.Fatal(err)
	}
	defer releaseA()
	downLimit.Store(2 << 20)
	time.Sleep(50 * time.Millisecond)
	close(stopAW)
	aWrote := aw.wait(t, "A writer")

	dumpStart := time.Now()
	st, err := Dump(ac)
	dumpTook := time.Since(dumpStart)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dump: local %v remote %v, recv queue %d bytes, send queue %d (%d unsent), mss %d, wscale %d/%d, sack %v, ts %v, window %+v",
		st.Local, st.Remote, len(st.RecvQueue), len(st.SendQueue), st.Unsent, st.MSS, st.SndWscale, st.RcvWscale, st.SACK, st.Timestamps, st.Window)
	if dual != st.Local.Addr().Is4In6() {
		t.Fatalf("dumped local address %v: IPv4-mapped %v, want %v", st.Local, st.Local.Addr().Is4In6(), dual)
	}
	if len(st.RecvQueue) == 0 || len(st.SendQueue)-st.Unsent == 0 {
		t.Fatalf("want unread bytes and sent-unacknowledged bytes at the move, got recv %d, send %d (%d unsent)", len(st.RecvQueue), len(st.SendQueue), st.Unsent)
	}
	if err := up.check(st.RecvQueue, aRead); err != nil {
		t.Fatalf("dumped receive queue: %v", err)
	}
	if err := down.check(st.SendQueue, aWrote-int64(len(st.SendQueue))); err != nil {
		t.Fatalf("dumped send queue: %v", err)
	}
	if err := CloseSilently(ac); err != nil {
		t.Fatal(err)
	}
	l.delVIP(t, l.a)

	var bc *net.TCPConn
	var restoreTook time.Duration
	switch order {
	case holdFirst:
		releaseB, err := l.holdB.Hold([]netip.Addr{l.vip})
		if err != nil {
			t.Fatal(err)
		}
		l.moveVIPTo(t, l.b)
		l.pointVIPAt(t, l.bMAC)
		restoreStart := time.Now()
		bc = restoreIn(t, l.b, st, RestoreOptions{NoWindowProbe: true})
		restoreTook = time.Since(restoreStart)
		if err := releaseB(); err != nil {
			t.Fatal(err)
		}
	case restoreFirst:
		restoreStart := time.Now()
		bc = restoreIn(t, l.b, st, RestoreOptions{NoWindowProbe: true})
		restoreTook = time.Since(restoreStart)
		l.moveVIPTo(t, l.b)
		l.pointVIPAt(t, l.bMAC)
	}
	t.Logf("Dump took %v, Restore %v (%d queued bytes)", dumpTook.Round(time.Microsecond), restoreTook.Round(time.Microsecond), len(st.RecvQueue)+len(st.SendQueue))
	pAtMove := pr.off.Load()
	moved := time.Now()
	if err := Probe(bc); err != nil {
		t.Fatal(err)
	}
	br := startReader(bc, up, aRead, total, nil, nil, deadline)
	bw := startWriter(bc, down, aWrote, total, nil, nil, deadline)
	upLimit.Store(total)
	waitFor(t, 10*time.Second, "P to receive again", func() bool { return pr.off.Load() > pAtMove })
	t.Logf("P received again %v after the probe", time.Since(moved).Round(time.Microsecond))

	pw.wait(t, "P writer")
	pr.wait(t, "P reader")
	br.wait(t, "B reader")
	bw.wait(t, "B writer")
	t.Logf("all %d bytes each way checked, %v after the probe", total, time.Since(moved).Round(time.Millisecond))
	if d, err := l.holdA.Dropped(); err == nil {
		t.Logf("held on A: %d packets dropped", d)
	}
}
