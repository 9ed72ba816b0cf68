package virtual

import (
	"context"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// udpEchoServer answers every datagram with name:payload; it ends with the test.
func udpEchoServer(t testing.TB, name string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return addrPortOf(pc.LocalAddr())
}

// closedUDPPort is a loopback port with nothing listening (datagrams to it
// draw ICMP port unreachable).
func closedUDPPort(t testing.TB) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPortOf(pc.LocalAddr())
	pc.Close()
	return ap
}

type udpTest struct {
	l       *Listener
	p       *Plan
	pool    *pool.Pool
	conns   *conntrack.Table
	rejMu   sync.Mutex
	rejN    map[string]int // rejected datagrams by reason
	errLogs atomic.Int64   // records logged at level error (a double release is one)
}

// errCounter counts error records on their way to h.
type errCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (e errCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e.n.Add(1)
	}
	return e.Handler.Handle(ctx, r)
}

func (e errCounter) Enabled(context.Context, slog.Level) bool { return true }

func (e errCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return errCounter{e.Handler.WithAttrs(as), e.n}
}

func (e errCounter) WithGroup(g string) slog.Handler { return errCounter{e.Handler.WithGroup(g), e.n} }

func (u *udpTest) rejected(reason string) int {
	u.rejMu.Lock()
	defer u.rejMu.Unlock()
	return u.rejN[reason]
}

// startUDP serves a udp virtual on a loopback port for the given members
// (passive: one failure takes a member down for a minute).
func startUDP(t testing.TB, members []netip.AddrPort, limit int, idle time.Duration, passive bool) *udpTest {
	t.Helper()
	var mcs []pool.MemberConfig
	for _, m := range members {
		mcs = append(mcs, pool.MemberConfig{Addr: m, Ratio: 1})
	}
	u := &udpTest{conns: conntrack.NewTable(), rejN: map[string]int{}}
	var h slog.Handler = slog.DiscardHandler
	if testing.Verbose() {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
	}
	log := slog.New(errCounter{h, &u.errLogs})
	u.pool = pool.New(pool.Config{Name: "p", Members: mcs, Passive: pool.PassiveConfig{Enabled: passive, Failures: 1, Retry: time.Minute}}, nil, log)
	u.p = &Plan{
		Name: "vs", Type: "udp", Destination: netip.MustParseAddrPort("127.0.0.1:0"),
		Pool: u.pool, Conns: u.conns, IdleTimeout: idle, ConnectTimeout: time.Second,
		ConnectionLimit: limit, Stats: &Stats{}, Log: log,
		Rejected: func(r string) { u.rejMu.Lock(); u.rejN[r]++; u.rejMu.Unlock() },
	}
	l, err := Listen(u.p)
	if err != nil {
		t.Fatal(err)
	}
	u.l = l
	t.Cleanup(func() {
		l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Wait(ctx)
	})
	return u
}

func (u *udpTest) addr() netip.AddrPort { return addrPortOf(u.l.Addr()) }

// client is a connected UDP socket to the virtual.
func (u *udpTest) client(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(u.addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends msg and waits up to wait for a reply ("" when none came).
func ask(t testing.TB, c *net.UDPConn, msg string, wait time.Duration) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func waitUntil(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goMem is the memory the Go runtime holds for live objects and goroutine
// stacks, after a collection.
func goMem() (heap, stacks uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// vmRSS is the process's resident set in bytes (0 when unknown).
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// measureUDPFlows opens n flows through a udp virtual and returns the Go
// memory (live heap + goroutine stacks) and resident memory they added, per
// flow. Client sockets are made before the first measurement so only the
// proxy's side is counted. Kernel socket memory is not included (as in the
// bench's idle-memory figure).
func measureUDPFlows(t testing.TB, n int) (goPerFlow, rssPerFlow float64, goroutinesPerFlow float64) {
	member := udpEchoServer(t, "m")
	u := startUDP(t, []netip.AddrPort{member}, n+1, time.Minute, false)
	clients := make([]*net.UDPConn, n)
	for i := range clients {
		clients[i] = u.client(t)
		clients[i].SetReadDeadline(time.Now().Add(time.Minute))
	}
	buf := make([]byte, 2048)
	msg := []byte("x")
	h0, s0, g0 := goMem()
	r0 := vmRSS()
	for i, c := range clients {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
	}
	h1, s1, g1 := goMem()
	r1 := vmRSS()
	if got := u.conns.Len(); got != n {
		t.Fatalf("%d flows in the table, want %d", got, n)
	}
	f := float64(n)
	return (float64(h1) - float64(h0) + float64(s1) - float64(s0)) / f, (float64(r1) - float64(r0)) / f, float64(g1-g0) / f
}

// TestUDPFlowMemory measures memory per UDP flow. A flow used to hold a
// goroutine and a 64 KiB buffer of its own (about 72 KiB); it must now cost
// a few hundred bytes of state beside its socket.
func TestUDPFlowMemory(t *testing.T) {
	const n = 2000
	goPer, rssPer, gPer := measureUDPFlows(t, n)
	t.Logf("per UDP flow (%d flows): Go heap+stacks %.0f B, RSS %.0f B, goroutines %.2f", n, goPer, rssPer, gPer)
	if goPer > 2048 {
		t.Errorf("a UDP flow costs %.0f B of Go memory, want ≤ 2048 B", goPer)
	}
	if gPer > 0.01 {
		t.Errorf("%.2f goroutines per UDP flow, want none", gPer)
	}
}

// member is the test pool's only member.
func (u *udpTest) member() *pool.Member { return u.pool.Members()[0] }

// checkReleased fails unless every member slot and flow of u was given back,
// exactly once.
func (u *udpTest) checkReleased(t *testing.T) {
	t.Helper()
	waitUntil(t, "flows to end", 3*time.Second, func() bool { return u.conns.Len() == 0 })
	for _, m := range u.pool.Members() {
		if a := m.Active(); a != 0 {
			t.Errorf("member %s: %d active connections after every flow ended", m.Addr(), a)
		}
	}
	if a := u.p.Stats.Active.Load(); a != 0 {
		t.Errorf("virtual: %d active flows after every flow ended", a)
	}
	if n := u.l.udp.count(); n != 0 {
		t.Errorf("flow table still holds %d flows", n)
	}
	if n := u.errLogs.Load(); n != 0 {
		t.Errorf("%d errors logged (a member released twice?)", n)
	}
}

// The flow table is bounded by the virtual's connection limit: a flood of
// source ports fills it, a new client is refused (and counted) while it is
// full, flows already there keep working, and once the flood's flows have
// idled out the new client is served.
func TestUDPFlowLimitAndExpiry(t *testing.T) {
	const limit = 8
	const idle = 300 * time.Millisecond
	u := startUDP(t, []netip.AddrPort{udpEchoServer(t, "m")}, limit, idle, false)
	ctx, cancel := context.WithCancel(context.Background())
	reaped := make(chan struct{})
	go func() { defer close(reaped); u.conns.Run(ctx, 50*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-reaped })

	flood := make([]*net.UDPConn, limit)
	for i := range flood {
		flood[i] = u.client(t)
		if got := ask(t, flood[i], "f", 2*time.Second); got != "m:f" {
			t.Fatalf("flood client %d: reply %q", i, got)
		}
	}
	late := u.client(t)
	if got := ask(t, late, "late", 200*time.Millisecond); got != "" {
		t.Fatalf("new client served with a full table (limit %d): %q", limit, got)
	}
	if n := u.rejected("connection_limit"); n != 1 {
		t.Errorf("rejected connection_limit = %d, want 1", n)
	}
	if got := ask(t, flood[0], "again", 2*time.Second); got != "m:again" {
		t.Errorf("existing flow with a full table: reply %q", got)
	}
	if n := u.l.udp.count(); n != limit {
		t.Errorf("%d flows, want %d", n, limit)
	}
	// The flood stops; its flows idle out and the late client gets in.
	waitUntil(t, "flood flows to idle out", 5*time.Second, func() bool { return u.conns.Len() == 0 })
	if got := ask(t, late, "late", 2*time.Second); got != "m:late" {
		t.Fatalf("new client after the flood expired: reply %q", got)
	}
	if st := u.member().Stats(); st.Errors != 0 || st.Failures != 0 {
		t.Errorf("member charged for a flood it answered: errors %d, failures %d", st.Errors, st.Failures)
	}
	cancel()
	<-reaped
	u.conns.Reap(time.Now().Add(time.Hour))
	u.checkReleased(t)
}

// Fulcrum's own resource errors (here EMFILE from the socket call) never
// count against the member: no passive failure, no error; the datagram is
// dropped and counted as local_resources.
func TestUDPLocalFaultNotChargedToMember(t *testing.T) {
	u := startUDP(t, []netip.AddrPort{udpEchoServer(t, "m")}, 100, time.Minute, true)
	emfile := &net.OpError{Op: "dial", Net: "udp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	u.l.udp.setDial(func(context.Context, *Plan, netip.Addr, netip.AddrPort, maphash.Seed) (*net.UDPConn, error) {
		return nil, emfile
	})
	const tries = 3
	for i := range tries {
		c := u.client(t)
		if got := ask(t, c, "x", 100*time.Millisecond); got != "" {
			t.Fatalf("client %d answered %q without a socket to the member", i, got)
		}
	}
	st := u.member().Stats()
	if st.Failures != 0 || st.Errors != 0 || st.Availability == "offline" {
		t.Errorf("member charged for Fulcrum's EMFILE: failures %d, errors %d, %s", st.Failures, st.Errors, st.Availability)
	}
	if n := u.rejected("local_resources"); n != tries {
		t.Errorf("rejected local_resources = %d, want %d", n, tries)
	}
	u.checkReleased(t)
	// Descriptors are back: the member, never marked down, serves at once.
	u.l.udp.setDial(dialUDP)
	if got := ask(t, u.client(t), "y", 2*time.Second); got != "m:y" {
		t.Fatalf("after the local fault: reply %q", got)
	}
}

// ICMP port unreachable from the member is the member's fault: a passive
// failure and an error, and the flow ends with its slot released.
func TestUDPMemberRefusedIsPassiveFailure(t *testing.T) {
	u := startUDP(t, []netip.AddrPort{closedUDPPort(t)}, 100, time.Minute, true)
	c := u.client(t)
	if got := ask(t, c, "x", 200*time.Millisecond); got != "" {
		t.Fatalf("closed port answered %q", got)
	}
	waitUntil(t, "the refusal to be counted", 3*time.Second, func() bool { return u.member().Stats().Failures >= 1 })
	if st := u.member().Stats(); st.Errors < 1 || st.Availability != "offline" {
		t.Errorf("refusing member: errors %d, %s; want ≥ 1, offline", st.Errors, st.Availability)
	}
	u.checkReleased(t)
}

// Every way a flow ends gives its member slot back exactly once: idle
// expiry, an expiry racing with the listener's close, and the close itself.
func TestUDPMemberSlotsReleased(t *testing.T) {
	m1, m2 := udpEchoServer(t, "a"), udpEchoServer(t, "b")
	u := startUDP(t, []netip.AddrPort{m1, m2}, 100, time.Minute, false)
	open := func(n int) {
		for i := range n {
			if got := ask(t, u.client(t), "x", 2*time.Second); got == "" {
				t.Fatalf("flow %d not served", i)
			}
		}
	}
	open(6)
	if a := u.pool.Members()[0].Active() + u.pool.Members()[1].Active(); a != 6 {
		t.Fatalf("%d member slots for 6 flows", a)
	}
	// Idle expiry, twice over (a second reap finds nothing to do).
	u.conns.Reap(time.Now().Add(2 * time.Minute))
	u.conns.Reap(time.Now().Add(2 * time.Minute))
	u.checkReleased(t)

	// Reaping and closing at the same time.
	open(6)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); u.conns.CloseAll() }()
	go func() { defer wg.Done(); u.l.udp.closeAll() }()
	wg.Wait()
	u.checkReleased(t)
}

// Closing the listener ends its flows, releases their members and gives
// back every descriptor: the flow sockets, the epoll set and the listener's
// own (Close returning also means the reply goroutine has ended).
func TestUDPListenerCloseReleasesFlows(t *testing.T) {
	const flows = 5
	u := startUDP(t, []netip.AddrPort{udpEchoServer(t, "m")}, 100, time.Minute, false)
	clients := make([]*net.UDPConn, flows)
	for i := range clients {
		clients[i] = u.client(t)
	}
	before := openFDs(t)
	for _, c := range clients {
		if got := ask(t, c, "x", 2*time.Second); got != "m:x" {
			t.Fatalf("reply %q", got)
		}
	}
	if n := openFDs(t) - before; n != flows+1 {
		t.Errorf("%d flows opened %d descriptors, want %d (one socket each and the epoll set)", flows, n, flows+1)
	}
	u.l.Close()
	u.checkReleased(t)
	if n := openFDs(t) - before; n != -1 {
		t.Errorf("after Close: %+d descriptors against before the flows, want -1 (the listening socket)", n)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(es)
}
