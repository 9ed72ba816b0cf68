package tcp

import (
	"context"
	"io"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

// pair opens a listener with p's ListenControl, dials it with p's
// DialControl and applies p to both ends. It returns the accepted
// (clientside) and the dialed (serverside) connection.
func pair(t *testing.T, p *Profile, network, addr string) (accepted, dialed *net.TCPConn) {
	t.Helper()
	lc := net.ListenConfig{Control: p.ListenControl}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	d := net.Dialer{Control: p.DialControl, Timeout: 10 * time.Second}
	dc, err := d.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { dc.Close() })
	if p.DeferredAccept {
		// Deferred accept: the listener wakes only when data arrives.
		if _, err := dc.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	var r res
	select {
	case r = <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("accept did not return")
	}
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	accepted, dialed = r.c.(*net.TCPConn), dc.(*net.TCPConn)
	if err := p.ApplyConn(accepted, Clientside); err != nil {
		t.Fatalf("ApplyConn clientside: %v", err)
	}
	if err := p.ApplyConn(dialed, Serverside); err != nil {
		t.Fatalf("ApplyConn serverside: %v", err)
	}
	return accepted, dialed
}

func sys(t *testing.T) System {
	t.Helper()
	s, err := ReadSystem()
	if err != nil {
		t.Logf("ReadSystem: %v", err)
	}
	return s
}

// otherCC returns an available congestion control that is not the system
// default (and that this process may set), or "".
func otherCC(s System) string {
	for _, cc := range s.Available {
		if cc != s.CongestionControl && (s.Privileged || slices.Contains(s.Allowed, cc)) {
			return cc
		}
	}
	return ""
}

func custom(t *testing.T, s System) *Profile {
	t.Helper()
	d := func(v time.Duration) *Duration { x := Duration(v); return &x }
	b := func(v bool) *bool { return &v }
	i := func(v int) *int { return &v }
	sz := func(v int64) *BufferSize { x := BufferSize(v); return &x }
	cc := otherCC(s)
	set := &Settings{
		Parent:            BuiltinLAN,
		KeepAliveInterval: d(10 * time.Second),
		FinWait2Timeout:   d(30 * time.Second),
		UserTimeout:       d(5 * time.Second),
		MinRTO:            d(50 * time.Millisecond),
		SynMaxRetrans:     i(5),
		SendBuffer:        sz(256 << 10),
		ReceiveWindow:     sz(128 << 10),
		ProxyBufferHigh:   sz(512 << 10),
		ProxyBufferLow:    sz(256 << 10),
		Nagle:             b(true),
		DelayedACK:        b(false),
		MSS:               i(1200),
		CongestionControl: &cc,
		NotSentLowat:      sizeP(32 << 10),
		PacingRate:        rateP(10_000_000),
		IPToS:             i(184),
		IPv6TClass:        i(104),
		LinkQoS:           i(3),
	}
	all, err := Resolve(map[string]*Settings{"custom": set})
	if err != nil {
		t.Fatal(err)
	}
	return all["custom"]
}

// TestApplyReadBack applies every built-in and a custom profile to real
// loopback sockets and reads each option back from both ends.
func TestApplyReadBack(t *testing.T) {
	s := sys(t)
	profiles := Builtins()
	profiles["custom"] = custom(t, s)
	for _, name := range []string{BuiltinTCP, BuiltinLAN, BuiltinWAN, BuiltinMobile, "custom"} {
		p := profiles[name]
		for _, fam := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
			t.Run(name+"/"+fam.network, func(t *testing.T) {
				if fam.network == "tcp6" {
					if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
						t.Skip("no IPv6 loopback")
					} else {
						ln.Close()
					}
				}
				acc, dial := pair(t, p, fam.network, fam.addr)
				for _, side := range []struct {
					name string
					c    *net.TCPConn
				}{{"accepted", acc}, {"dialed", dial}} {
					ap, err := ReadBack(side.c)
					if err != nil {
						t.Fatalf("%s: ReadBack: %v", side.name, err)
					}
					checkApplied(t, side.name, p, ap, s, fam.network == "tcp6", side.c == dial)
				}
			})
		}
	}
}

func checkApplied(t *testing.T, side string, p *Profile, ap Applied, s System, v6, dialed bool) {
	t.Helper()
	errf := func(format string, args ...any) { t.Errorf(side+": "+format, args...) }
	t.Logf("%s: %+v", side, ap)
	// Linux doubles SO_SNDBUF/SO_RCVBUF values for its own overhead.
	if !p.AutoSendBuffer && (s.Privileged || p.SendBuffer <= s.WmemMax) && ap.SendBuffer != 2*p.SendBuffer {
		errf("SO_SNDBUF = %d, want 2 × %d", ap.SendBuffer, p.SendBuffer)
	}
	if p.AutoSendBuffer && ap.SendBuffer != 2*min(AutoInitial, p.AutoBufferCeiling) {
		errf("auto SO_SNDBUF = %d, want 2 × %d", ap.SendBuffer, AutoInitial)
	}
	if !p.AutoReceiveWindow {
		if ap.ReceiveBuffer != 2*p.ReceiveWindow {
			errf("SO_RCVBUF = %d, want 2 × %d", ap.ReceiveBuffer, p.ReceiveWindow)
		}
		if ap.WindowClamp > p.ReceiveWindow || ap.WindowClamp < p.ReceiveWindow/2 {
			errf("TCP_WINDOW_CLAMP = %d, want ≤ %d (and not far below)", ap.WindowClamp, p.ReceiveWindow)
		}
	} else if ap.ReceiveBuffer != 2*min(AutoInitial, p.AutoBufferCeiling) {
		errf("auto SO_RCVBUF = %d, want 2 × %d", ap.ReceiveBuffer, AutoInitial)
	}
	if ap.NoDelay != !p.Nagle {
		errf("TCP_NODELAY = %t, Nagle = %t", ap.NoDelay, p.Nagle)
	}
	if !p.DelayedACK && s.DelackMaxPerSocket && (ap.DelackMaxUS <= 0 || ap.DelackMaxUS > 20000) {
		errf("TCP_DELACK_MAX_US = %d, want two jiffies (≤ 20 ms) with delayed_ack off", ap.DelackMaxUS)
	}
	if p.DelayedACK && s.DelackMaxPerSocket && ap.DelackMaxUS < 100000 {
		errf("TCP_DELACK_MAX_US = %d with delayed_ack on, want the kernel default (200 ms)", ap.DelackMaxUS)
	}
	if p.KeepAliveInterval > 0 {
		sec := int(p.KeepAliveInterval / time.Second)
		if !ap.KeepAlive || ap.KeepIdle != sec || ap.KeepIntvl != sec || ap.KeepCnt != KeepAliveProbes {
			errf("keepalive = %t idle %d intvl %d cnt %d, want on %d %d %d", ap.KeepAlive, ap.KeepIdle, ap.KeepIntvl, ap.KeepCnt, sec, sec, KeepAliveProbes)
		}
	} else if ap.KeepAlive {
		errf("SO_KEEPALIVE on with keepalive_interval 0")
	}
	if want := int(p.FinWait2Timeout / time.Second); p.FinWait2Timeout > 0 && ap.Linger2 != want {
		errf("TCP_LINGER2 = %d, want %d", ap.Linger2, want)
	}
	if dialed && ap.SynCnt != p.SynMaxRetrans {
		errf("TCP_SYNCNT = %d, want %d", ap.SynCnt, p.SynMaxRetrans)
	}
	if want := int(p.UserTimeout / time.Millisecond); ap.UserTimeoutMS != want {
		errf("TCP_USER_TIMEOUT = %d, want %d", ap.UserTimeoutMS, want)
	}
	if p.MinRTO > 0 && s.RTOMinPerSocket {
		// Kept in jiffies: allow one jiffy at HZ=100.
		if d := time.Duration(ap.RTOMinUS)*time.Microsecond - p.MinRTO; d < -10*time.Millisecond || d > 10*time.Millisecond {
			errf("TCP_RTO_MIN_US = %d, want %d", ap.RTOMinUS, p.MinRTO.Microseconds())
		}
	}
	if p.MSS > 0 && (ap.MaxSeg > p.MSS || ap.MaxSeg < p.MSS-64) {
		errf("TCP_MAXSEG = %d, want %d (less the TCP options)", ap.MaxSeg, p.MSS)
	}
	wantCC := p.CongestionControl
	if wantCC == "" {
		wantCC = s.CongestionControl
	}
	if wantCC != "" && ap.CongestionControl != wantCC {
		errf("TCP_CONGESTION = %q, want %q", ap.CongestionControl, wantCC)
	}
	if p.NotSentLowat > 0 && ap.NotSentLowat != int64(p.NotSentLowat) {
		errf("TCP_NOTSENT_LOWAT = %d, want %d", ap.NotSentLowat, p.NotSentLowat)
	}
	if ap.MaxPacingRate != uint64(p.PacingRate) {
		errf("SO_MAX_PACING_RATE = %d, want %d", ap.MaxPacingRate, p.PacingRate)
	}
	if p.IPToS >= 0 && !v6 && ap.TOS != p.IPToS {
		errf("IP_TOS = %d, want %d", ap.TOS, p.IPToS)
	}
	if p.IPv6TClass >= 0 && v6 && ap.TClass != p.IPv6TClass {
		errf("IPV6_TCLASS = %d, want %d", ap.TClass, p.IPv6TClass)
	}
	if p.LinkQoS >= 0 && ap.Priority != p.LinkQoS {
		errf("SO_PRIORITY = %d, want %d", ap.Priority, p.LinkQoS)
	}
	// System-wide options: what was negotiated matches the host.
	if ap.SACK != s.SACK || ap.Timestamps != s.Timestamps || ap.WindowScaling != s.WindowScaling {
		errf("negotiated sack %t ts %t wscale %t, host has %t %t %t", ap.SACK, ap.Timestamps, ap.WindowScaling, s.SACK, s.Timestamps, s.WindowScaling)
	}
}

// TestDeferredAccept observes TCP_DEFER_ACCEPT: Accept does not return for a
// connection that has sent nothing, and returns once data arrives.
func TestDeferredAccept(t *testing.T) {
	p := Builtins()[BuiltinTCP]
	p.DeferredAccept = true
	ln, err := (&net.ListenConfig{Control: p.ListenControl}).Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ap, err := ReadBackListener(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	if ap.DeferAcceptS <= 0 {
		t.Fatalf("TCP_DEFER_ACCEPT = %d on the listener", ap.DeferAcceptS)
	}
	got := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			got <- c
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case a := <-got:
		a.Close()
		t.Fatal("accept returned before any data arrived")
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		buf := make([]byte, 5)
		a.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q, %v", buf, err)
		}
		a.Close()
	case <-time.After(20 * time.Second):
		t.Fatal("accept did not return after data arrived")
	}

	// Off again on the same, open listener (a reload).
	p.DeferredAccept = false
	if err := p.ApplyListener(ln.(*net.TCPListener)); err != nil {
		t.Fatal(err)
	}
	if ap, _ := ReadBackListener(ln.(*net.TCPListener)); ap.DeferAcceptS != 0 {
		t.Fatalf("TCP_DEFER_ACCEPT = %d after ApplyListener with deferred_accept off", ap.DeferAcceptS)
	}
}

// TestPacing observes SO_MAX_PACING_RATE: the kernel's internal pacing
// holds a transfer to the rate (lower bound only: a loaded machine can
// only make it slower).
func TestPacing(t *testing.T) {
	p := Builtins()[BuiltinTCP]
	p.PacingRate = 1 << 20 // 1 MiB/s
	acc, dial := pair(t, p, "tcp4", "127.0.0.1:0")
	const n = 2 << 20
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, dial, n)
		done <- err
	}()
	start := time.Now()
	if _, err := acc.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	// 2 MiB at 1 MiB/s is 2 s; the first window (10 loopback-sized
	// segments) leaves unpaced, so allow a generous margin below.
	if el < 1200*time.Millisecond {
		t.Fatalf("2 MiB at a 1 MiB/s pacing rate took %s: pacing is not applied", el)
	}
	t.Logf("2 MiB paced at 1 MiB/s: %s", el)
}

// TestGetInfoAndAutoTune moves data over loopback, reads TCP_INFO on both
// ends and lets AutoTune grow auto buffers within the ceiling.
func TestGetInfoAndAutoTune(t *testing.T) {
	p := Builtins()[BuiltinMobile]
	p.AutoBufferCeiling = 1 << 20
	acc, dial := pair(t, p, "tcp4", "127.0.0.1:0")
	before, err := ReadBack(acc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16 << 20
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, dial, n)
		done <- err
	}()
	chunk := make([]byte, 256<<10)
	var snd, rcv int
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := acc.Write(chunk); err != nil {
			t.Fatal(err)
		}
		in, err := GetInfo(acc)
		if err != nil {
			t.Fatal(err)
		}
		if snd, rcv, err = p.AutoTune(acc, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if snd <= before.SendBuffer || snd > 2*p.AutoBufferCeiling || rcv < before.ReceiveBuffer || rcv > 2*p.AutoBufferCeiling {
		t.Fatalf("AutoTune: sndbuf %d → %d, rcvbuf %d → %d; want growth within 2 × %d", before.SendBuffer, snd, before.ReceiveBuffer, rcv, p.AutoBufferCeiling)
	}
	t.Logf("AutoTune: sndbuf %d → %d (ceiling %d)", before.SendBuffer, snd, p.AutoBufferCeiling)

	beforeRcv, _ := ReadBack(dial)
	recvInfo, err := GetInfo(dial)
	if err != nil {
		t.Fatal(err)
	}
	if _, rcv, err = p.AutoTune(dial, recvInfo); err != nil {
		t.Fatal(err)
	}
	if recvInfo.RcvSpace > AutoInitial/2 && (rcv <= beforeRcv.ReceiveBuffer || rcv > 2*p.AutoBufferCeiling) {
		t.Errorf("AutoTune on the receiver (rcv_space %d): rcvbuf %d → %d, want growth within 2 × %d", recvInfo.RcvSpace, beforeRcv.ReceiveBuffer, rcv, p.AutoBufferCeiling)
	}
	t.Logf("AutoTune receiver: rcvbuf %d → %d (rcv_space %d)", beforeRcv.ReceiveBuffer, rcv, recvInfo.RcvSpace)

	sender, err := GetInfo(acc)
	if err != nil {
		t.Fatal(err)
	}
	recv, err := GetInfo(dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sender %+v", sender)
	t.Logf("receiver %+v", recv)
	if sender.State != "ESTABLISHED" || sender.BytesAcked < n || recv.BytesReceived < n {
		t.Errorf("state %s, acked %d, received %d; want ESTABLISHED and ≥ %d", sender.State, sender.BytesAcked, recv.BytesReceived, n)
	}
	if sender.RTT <= 0 || sender.MinRTT <= 0 || sender.MinRTT > time.Second || sender.Cwnd == 0 || sender.SndMSS == 0 || sender.DeliveryRate == 0 {
		t.Errorf("implausible sender info: rtt %s min %s cwnd %d mss %d rate %d", sender.RTT, sender.MinRTT, sender.Cwnd, sender.SndMSS, sender.DeliveryRate)
	}
	if sender.BDP() <= 0 {
		t.Errorf("BDP = %d", sender.BDP())
	}
}

// TestAbort observes reset on timeout: the peer sees ECONNRESET, not EOF.
func TestAbort(t *testing.T) {
	acc, dial := pair(t, Builtins()[BuiltinTCP], "tcp4", "127.0.0.1:0")
	if err := Abort(acc); err != nil {
		t.Fatal(err)
	}
	dial.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := dial.Read(make([]byte, 1))
	if err == nil || err == io.EOF {
		t.Fatalf("read after Abort = %v, want connection reset", err)
	}
}

func TestNegotiatedMSSAndProxyMSS(t *testing.T) {
	p := Builtins()[BuiltinTCP]
	p.MSS = 1000
	acc, _ := pair(t, p, "tcp4", "127.0.0.1:0")
	mss, err := NegotiatedMSS(acc)
	if err != nil || mss > 1000 || mss < 900 {
		t.Fatalf("NegotiatedMSS = %d, %v", mss, err)
	}
	q := Builtins()[BuiltinTCP]
	q.ProxyMSS = true
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: q.DialControlMSS(mss)}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := NegotiatedMSS(c.(*net.TCPConn))
	if got > mss {
		t.Fatalf("serverside MSS %d with proxy_mss, want ≤ clientside %d", got, mss)
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
