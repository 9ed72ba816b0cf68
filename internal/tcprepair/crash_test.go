package tcprepair

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRestoreFromSnapshot is crash recovery: the standby knows only a
// Snapshot taken at connection setup and what was mirrored since (every
// byte the server wrote, how many it read, when the server was last
// alive). The server host dies silently; the standby builds a State by
// hand, restores it, and the peer's connection continues byte-exact both
// ways, although the peer had not received all that was written.
func TestRestoreFromSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    crashOpts
	}{
		// Kernel's window defaults, Restore's own window probe (a
		// quiet peer, no hold on B).
		{"v4/kernel-window", crashOpts{restoreProbe: true}},
		// The snapshot's window moved to the new rcv_nxt; hold on B,
		// Probe after the release.
		{"v4/adjusted-window", crashOpts{adjustedWindow: true}},
		// Bytes the peer never got are resent as new data at once
		// (see Restore's doc) instead of at the retransmission timeout.
		{"v6/kernel-window/requeue", crashOpts{v6: true, requeue: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCrash(t, tc.o)
		})
	}
}

type crashOpts struct {
	v6             bool
	adjustedWindow bool // else HasWindow false
	restoreProbe   bool // Restore's own probe, no hold on B; else hold on B and Probe after
	requeue        bool
}

func testCrash(t *testing.T, o crashOpts) {
	l := newLab(t, o.v6)
	pc, ac := l.connect(t, false)
	snap, err := Snapshot(ac)
	if err != nil {
		t.Fatal(err)
	}
	snapped := time.Now()
	up, down := newPattern(6), newPattern(7)
	deadline := time.Now().Add(15 * time.Second)

	// The peer sends 300 KB, all read by the server (and mirrored as
	// read); the server writes up to 1 MB while the peer reads only
	// 100 KB, so the rest is in the peer's receive queue, in flight, or in
	// the server's send queue when it dies. The mirror has all of it and
	// 256 KB more: mirroring writes ahead, so the standby holds bytes the
	// active was about to write when it died, which certainly never
	// reached the peer.
	const upBefore, upTotal = 300 << 10, 600 << 10
	const downAfter = 512 << 10
	pw := startWriter(pc, up, 0, upBefore, nil, nil, deadline)
	ar := startReader(ac, up, 0, upBefore, nil, nil, deadline)
	pw.wait(t, "peer writer")
	aRead := ar.wait(t, "server reader")
	stopAW := make(chan struct{})
	aw := startWriter(ac, down, 0, 1<<20, nil, stopAW, deadline)
	var pLimit atomicInt
	pLimit.Store(100 << 10)
	pr := startReader(pc, down, 0, 1<<30, &pLimit.Int64, nil, deadline)
	waitFor(t, 5*time.Second, "the peer to read 100 KB", func() bool { return pr.off.Load() == 100<<10 })
	time.Sleep(20 * time.Millisecond)
	close(stopAW)
	aWrote := aw.wait(t, "server writer")
	mirror := make([]byte, aWrote+256<<10)
	down.fill(mirror, 0)

	// The server host dies: nothing more leaves it or reaches its socket.
	// The standby knows when it was last alive (its last mirrored
	// message).
	lastAlive := time.Now()
	releaseA, err := l.holdA.Hold([]netip.Addr{l.vip})
	if err != nil {
		t.Fatal(err)
	}
	defer releaseA()
	unread := sockIoctl(t, pc, unix.SIOCINQ)
	if err := CloseSilently(ac); err != nil {
		t.Fatal(err)
	}
	l.delVIP(t, l.a)
	missing := int64(len(mirror)) - pr.off.Load() - int64(unread)

	st := *snap
	st.SendQueue = mirror // all of it: the standby cannot know what was acknowledged
	st.RecvSeq = snap.RecvSeq + uint32(aRead)
	// The peer last saw a TSval from about lastAlive: the restored clock
	// starts just after it (see Restore's doc).
	st.AdvanceTimestamp(lastAlive.Sub(snapped) + 5*time.Millisecond)
	if o.adjustedWindow {
		rcvNxt := st.RecvSeq + uint32(len(st.RecvQueue))
		st.Window.SndWl1, st.Window.RcvWup = rcvNxt, rcvNxt
	} else {
		st.HasWindow = false
	}
	t.Logf("crash: %d bytes written, %d mirrored; the peer read %d and has %d more waiting, %d never reached it; %d read",
		aWrote, len(mirror), pr.off.Load(), unread, missing, aRead)

	var bc *net.TCPConn
	var restored time.Time
	if o.restoreProbe {
		// A quiet peer (nothing unacknowledged, no delayed ACK due)
		// sends nothing, so B needs no hold; Restore's own window
		// probe gets its answer at once.
		time.Sleep(100 * time.Millisecond)
		l.moveVIPTo(t, l.b)
		l.pointVIPAt(t, l.bMAC)
		bc = restoreIn(t, l.b, &st, RestoreOptions{})
		restored = time.Now()
	} else {
		releaseB, err := l.holdB.Hold([]netip.Addr{l.vip})
		if err != nil {
			t.Fatal(err)
		}
		l.moveVIPTo(t, l.b)
		l.pointVIPAt(t, l.bMAC)
		bc = restoreIn(t, l.b, &st, RestoreOptions{NoWindowProbe: true})
		if err := releaseB(); err != nil {
			t.Fatal(err)
		}
		restored = time.Now()
		if err := Probe(bc); err != nil {
			t.Fatal(err)
		}
	}
	if o.requeue {
		bc = requeue(t, l, bc, len(mirror))
	}

	// The peer reads on: the restored socket resends what the peer
	// lacks. Then more both ways.
	written := int64(len(mirror))
	pLimit.Store(written + downAfter)
	bw := startWriter(bc, down, written, written+downAfter, nil, nil, deadline)
	br := startReader(bc, up, aRead, upTotal, nil, nil, deadline)
	pw = startWriter(pc, up, upBefore, upTotal, nil, nil, deadline)
	waitFor(t, 10*time.Second, "the peer to read what was mirrored before the crash", func() bool { return pr.off.Load() >= written })
	caughtUp := time.Since(restored)
	t.Logf("the peer had all mirrored bytes %v after the restore", caughtUp.Round(time.Microsecond))
	// With a timestamp too far ahead (the first RTT sample then comes
	// out seconds long) this took 2-4 s; with the right one about a
	// retransmission timeout (≈0.3 s), and with requeue a few ms.
	if caughtUp > 2*time.Second {
		t.Errorf("the peer caught up only %v after the restore", caughtUp)
	}
	bw.wait(t, "restored writer")
	br.wait(t, "restored reader")
	pw.wait(t, "peer writer")
	waitFor(t, 10*time.Second, "the peer to read everything", func() bool { return pr.off.Load() == written+downAfter })
}

// requeue is the recipe from Restore's doc: once the peer has acknowledged
// what it has, dump the restored socket again under a hold and restore
// the bytes still unacknowledged as unsent, so they go out at once.
func requeue(t *testing.T, l *lab, c *net.TCPConn, queued int) *net.TCPConn {
	t.Helper()
	start := time.Now()
	waitFor(t, 5*time.Second, "the peer's ACK", func() bool { return sockIoctl(t, c, unix.SIOCOUTQ) < queued })
	release, err := l.holdB.Hold([]netip.Addr{l.vip})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Dump(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := CloseSilently(c); err != nil {
		t.Fatal(err)
	}
	s.Unsent = len(s.SendQueue)
	c = restoreIn(t, l.b, s, RestoreOptions{NoWindowProbe: true})
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := Probe(c); err != nil {
		t.Fatal(err)
	}
	t.Logf("requeue: %d unacknowledged bytes requeued as unsent in %v", len(s.SendQueue), time.Since(start).Round(time.Microsecond))
	return c
}
