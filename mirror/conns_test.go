package mirror

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/persist"
)

func testSetup() *ConnSetup {
	return &ConnSetup{Virtual: "v", Pool: "p", Member: netip.MustParseAddrPort("10.9.0.1:80"), At: time.Now(),
		Client: Socket{Local: netip.MustParseAddrPort("192.0.2.10:80"), Remote: netip.MustParseAddrPort("198.51.100.7:40000"),
			SendSeq: 1000, RecvSeq: 5000, MSS: 1460, SndWscale: 7, RcvWscale: 9, WindowScaling: true, SACK: true, Timestamps: true,
			Timestamp: 77, Window: [5]uint32{5000, 65535, 65535, 65535, 5000}, HasWindow: true},
		Server: Socket{Local: netip.MustParseAddrPort("192.0.2.11:41000"), Remote: netip.MustParseAddrPort("10.9.0.1:80"),
			SendSeq: 9000, RecvSeq: 3000, MSS: 1460},
	}
}

// TestConnMirroringGateAndShadow: a connection's bytes reach the standby
// before the write gate opens; acknowledged bytes are trimmed; a final
// state is acknowledged; a closed connection leaves nothing; a broken
// stream loses the open connections and the standby forgets their shadows
// when the next stream begins.
func TestConnMirroringGateAndShadow(t *testing.T) {
	root := trustDomain(t)
	p := port(t)
	a := startNode(t, cfgFor(t, root, "a", p, ""), persist.NewTable())
	b := startNode(t, cfgFor(t, root, "b", p, ""), persist.NewTable())
	if _, err := a.m.Open("tg1", testSetup()); err != ErrNotMirrored {
		t.Fatalf("open before the group is active: %v, want ErrNotMirrored", err)
	}
	a.m.SetActive("tg1", true)
	var c *Conn
	waitFor(t, 5*time.Second, "connection channel up", func() bool {
		var err error
		c, err = a.m.Open("tg1", testSetup())
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160000 bytes: three frames
	if !c.Data(ToServer, 0, big, 0) || !c.Wait(ctx, ToServer, int64(len(big))) {
		t.Fatal("write gate did not open")
	}
	// An acknowledged count read while a write was under way can come out
	// negative: it is clamped, the frame stays well formed.
	if !c.Data(ToClient, 0, []byte("hello"), -300) || !c.Wait(ctx, ToClient, 5) {
		t.Fatal("write gate did not open (to client)")
	}
	// The server acknowledged 100000 bytes by the time 10 more were read.
	if !c.Data(ToServer, int64(len(big)), []byte("0123456789"), 100000) || !c.Wait(ctx, ToServer, int64(len(big))+10) {
		t.Fatal("write gate did not open")
	}
	g := b.m.groups["tg1"]
	var sh *Shadow
	waitFor(t, 2*time.Second, "shadow", func() bool {
		g.shadows.mu.Lock()
		defer g.shadows.mu.Unlock()
		sh = g.shadows.conns[c.ID()]
		return sh != nil
	})
	g.shadows.mu.Lock()
	s0, s1 := sh.Streams[0], sh.Streams[1]
	setup := sh.Setup
	g.shadows.mu.Unlock()
	if s0.Base != 100000 || s0.End() != int64(len(big))+10 || !bytes.Equal(s0.Data, append(big[100000:], "0123456789"...)) {
		t.Errorf("to-server shadow: base %d end %d", s0.Base, s0.End())
	}
	if s1.Base != 0 || string(s1.Data) != "hello" {
		t.Errorf("to-client shadow: base %d %q", s1.Base, s1.Data)
	}
	want := testSetup()
	if setup.Client != want.Client || setup.Server != want.Server || setup.Member != want.Member || setup.Virtual != "v" {
		t.Errorf("setup: got %+v\nwant %+v", setup, *want)
	}
	if err := c.Final(ctx, [2]int64{int64(len(big)), 3}, [2]int64{int64(len(big)) + 10, 4}, [2]uint32{100, 200}); err != nil {
		t.Fatalf("final: %v", err)
	}
	g.shadows.mu.Lock()
	if !sh.Final || sh.Timestamps != [2]uint32{100, 200} || sh.Streams[0].Base != int64(len(big)) || string(sh.Streams[1].Data) != "lo" ||
		sh.SentEnd(0) != int64(len(big))+10 || sh.SentEnd(1) != 4 {
		t.Errorf("final shadow: %+v", sh)
	}
	g.shadows.mu.Unlock()
	st := a.m.Status().Groups[0].Connections
	if st.Mirrored != 1 || st.Open != 1 || st.Bytes != uint64(len(big)+15) {
		t.Errorf("active side stats: %+v", st)
	}

	// Handed over: closing it here leaves it to the standby.
	c.Close()
	// Closed otherwise: the standby forgets it.
	c3, err := a.m.Open("tg1", testSetup())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "second shadow", func() bool { n, _, _, _ := g.shadows.stats(); return n == 2 })
	c3.Close()
	waitFor(t, 2*time.Second, "closed shadow gone", func() bool { n, _, _, _ := g.shadows.stats(); return n == 1 })
	g.shadows.take() // the handed-over one, as a takeover would

	// A broken stream: open connections are lost; the next stream resets
	// the standby's shadows.
	c2, err := a.m.Open("tg1", testSetup())
	if err != nil {
		t.Fatal(err)
	}
	c2.Data(ToServer, 0, []byte("x"), 0)
	if !c2.Wait(ctx, ToServer, 1) {
		t.Fatal("gate")
	}
	b.stop()
	waitFor(t, 5*time.Second, "connection lost", c2.Lost)
	if c2.Wait(ctx, ToServer, 2) || c2.Data(ToServer, 1, []byte("y"), 0) {
		t.Error("a lost connection's gate still waits or takes data")
	}
	if n, _, _, _ := g.shadows.stats(); n != 1 {
		t.Errorf("the standby keeps the shadow of a peer that vanished (it may have crashed): have %d", n)
	}
	g.shadows.reset(g.streams.Add(1))
	if n, _, dropped, _ := g.shadows.stats(); n != 0 || dropped != 1 {
		t.Errorf("after a new stream: %d shadows, %d dropped", n, dropped)
	}
}

// TestShadowRefusesGaps: a data frame that does not continue the stream
// (bytes missing or repeated), or a final state acknowledging bytes never
// mirrored, drops the shadow: it is never restored with a hole.
func TestShadowRefusesGaps(t *testing.T) {
	tb := newShadows()
	now := time.Now()
	open := func(id uint64) {
		if err := tb.apply(0, &frame{typ: frameConnOpen, id: id, setup: testSetup()}, now); err != nil {
			t.Fatal(err)
		}
	}
	open(1)
	open(2)
	tb.apply(0, &frame{typ: frameConnData, id: 1, dir: 0, offset: 0, data: []byte("abc")}, now)
	tb.apply(0, &frame{typ: frameConnData, id: 1, dir: 0, offset: 5, data: []byte("x")}, now) // gap
	tb.apply(0, &frame{typ: frameConnData, id: 2, dir: 1, offset: 0, data: []byte("abc")}, now)
	tb.apply(0, &frame{typ: frameConnFinal, id: 2, acked: [2]uint64{0, 4}}, now) // acked past what it has
	if n, _, dropped, _ := tb.stats(); n != 0 || dropped != 2 {
		t.Errorf("shadows %d dropped %d, want 0 and 2", n, dropped)
	}
	if err := tb.apply(0, &frame{typ: frameConnOpen, id: 3, setup: testSetup()}, now); err != nil {
		t.Fatal(err)
	}
	if err := tb.apply(0, &frame{typ: frameConnOpen, id: 3, setup: testSetup()}, now); err == nil {
		t.Error("a connection opened twice is accepted")
	}
	if err := tb.apply(9, &frame{typ: frameConnClose, id: 3}, now); err == nil {
		t.Error("a frame of a replaced stream is applied")
	}
	if tb.bytes != 0 {
		t.Errorf("bytes accounted %d after drops, want 0", tb.bytes)
	}
}

// TestOnUp: a callback registered while the group's channel is down runs
// once when it comes up, not before; one registered while up runs at
// once; a cancelled one never runs; going down and up again does not run
// a callback twice.
func TestOnUp(t *testing.T) {
	cs := newConnSender()
	m := &Mirror{groups: map[string]*group{"tg1": {name: "tg1", conns: cs}}}
	ran := make(chan string, 8)
	m.OnUp("tg1", func() { ran <- "waiting" })
	cancel := m.OnUp("tg1", func() { ran <- "cancelled" })
	cancel()
	select {
	case r := <-ran:
		t.Fatalf("%s callback ran while the group was down", r)
	case <-time.After(50 * time.Millisecond):
	}
	cs.setUp(true)
	if r := <-ran; r != "waiting" {
		t.Fatalf("ran %q, want the waiting callback", r)
	}
	m.OnUp("tg1", func() { ran <- "now" })
	if r := <-ran; r != "now" {
		t.Fatalf("ran %q, want the one registered while up", r)
	}
	cs.setUp(false)
	cs.setUp(true)
	select {
	case r := <-ran:
		t.Fatalf("%s callback ran again", r)
	case <-time.After(50 * time.Millisecond):
	}
	if len(cs.waiters) != 0 {
		t.Fatalf("%d waiters kept", len(cs.waiters))
	}
	m.OnUp("nope", func() { ran <- "unknown group" }) // no such group: never runs
	select {
	case r := <-ran:
		t.Fatalf("%s callback ran", r)
	case <-time.After(50 * time.Millisecond):
	}
}
