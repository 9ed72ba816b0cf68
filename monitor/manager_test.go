package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// patience bounds every wait for an asynchronous event; generous because
// the machine may be loaded. Tests never wait this long when they pass.
const patience = 15 * time.Second

type healthCall struct {
	up     bool
	reason string
	at     time.Time
}

// fakeTarget records SetHealth calls.
type fakeTarget struct {
	addr  netip.AddrPort
	mu    sync.Mutex
	calls []healthCall
}

func (f *fakeTarget) Addr() netip.AddrPort { return f.addr }

func (f *fakeTarget) SetHealth(up bool, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, healthCall{up, reason, time.Now()})
}

func (f *fakeTarget) Calls() []healthCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]healthCall(nil), f.calls...)
}

// waitCalls polls until at least n SetHealth calls were made.
func (f *fakeTarget) waitCalls(t *testing.T, n int) []healthCall {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		c := f.Calls()
		if len(c) >= n {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %v: %d SetHealth calls after %v, want %d: %+v", f.addr, len(c), patience, n, c)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantCall(t *testing.T, c healthCall, up bool, reason string) {
	t.Helper()
	if c.up != up || !strings.Contains(c.reason, reason) {
		t.Fatalf("SetHealth(%v, %q), want SetHealth(%v, containing %q)", c.up, c.reason, up, reason)
	}
}

// waitStatus polls Status(key) until cond holds.
func waitStatus(t *testing.T, m *Manager, key string, cond func([]ProbeStatus) bool) []ProbeStatus {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		st := m.Status(key)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s never reached the expected state: %+v", key, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// probeGoroutines counts running probe loops in the whole process.
// probesSettle polls probeGoroutines until it equals want or 2 s pass: a
// stopped probe goroutine has signalled its end but may not have returned.
func probesSettle(want int) int {
	n := probeGoroutines()
	for end := time.Now().Add(2 * time.Second); n != want && time.Now().Before(end); n = probeGoroutines() {
		time.Sleep(5 * time.Millisecond)
	}
	return n
}

func probeGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			// Counts started and not-yet-started probe goroutines alike.
			return strings.Count(string(buf[:n]), "created by github.com/fulcrum-adc/fulcrum/monitor.(*Manager).start ")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestManagerTCPUpThenDownAfterTimeout(t *testing.T) {
	t.Parallel()
	addr, stop := tcpServer(t, nil)
	var logs syncBuffer
	m := NewManager(slog.New(slog.NewJSONHandler(&logs, nil)))
	defer m.Close()
	member := &fakeTarget{addr: addr}
	spec := Spec{Name: "tcp_probe", Type: "tcp", Interval: 50 * time.Millisecond, Timeout: 2 * time.Second}
	m.Set([]Job{{Key: "web/" + addr.String(), Target: member, Specs: []Spec{spec}}})

	calls := member.waitCalls(t, 1)
	wantCall(t, calls[0], true, "monitor tcp_probe: up")
	upAt := time.Now()
	stop()

	// Failures within Timeout of the last success do not mark it down, but
	// Status shows the failure.
	st := waitStatus(t, m, "web/"+addr.String(), func(s []ProbeStatus) bool {
		return len(s) == 1 && strings.Contains(s[0].Reason, "refused")
	})
	if time.Since(upAt) < time.Second {
		if !st[0].Up || len(member.Calls()) != 1 {
			t.Fatalf("member marked down %v after the last success, before Timeout 2s: %+v, calls %+v", time.Since(upAt), st, member.Calls())
		}
	}

	calls = member.waitCalls(t, 2)
	wantCall(t, calls[1], false, "monitor tcp_probe: connect: connection refused")

	st = m.Status("web/" + addr.String())
	if len(st) != 1 || st[0].Up || !st[0].Checked || st[0].Monitor != "tcp_probe" || st[0].LastRun.IsZero() {
		t.Fatalf("Status = %+v", st)
	}
	// No more calls while the state does not change.
	time.Sleep(300 * time.Millisecond)
	if n := len(member.Calls()); n != 2 {
		t.Fatalf("%d SetHealth calls, want 2 (calls only on change): %+v", n, member.Calls())
	}

	// Every aggregate change is logged.
	var ups []bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Key    string `json:"key"`
			Up     bool   `json:"up"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "monitor status changed" && rec.Key == "web/"+addr.String() && rec.Reason != "" {
			ups = append(ups, rec.Up)
		}
	}
	if fmt.Sprint(ups) != "[true false]" {
		t.Fatalf("logged changes %v, want [true false]; log:\n%s", ups, logs.String())
	}
}

func TestManagerHTTPStatusFlip(t *testing.T) {
	t.Parallel()
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(srv.Close)
	addr := netip.MustParseAddrPort(srv.Listener.Addr().String())
	m := NewManager(nil)
	defer m.Close()
	member := &fakeTarget{addr: addr}
	spec := Spec{Name: "http_200", Type: "http", Status: []int{200}, Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}
	m.Set([]Job{{Key: "k", Target: member, Specs: []Spec{spec}}})

	wantCall(t, member.waitCalls(t, 1)[0], true, "monitor http_200: up")
	code.Store(500)
	wantCall(t, member.waitCalls(t, 2)[1], false, "monitor http_200: status 500 not in [200]")
	code.Store(200)
	wantCall(t, member.waitCalls(t, 3)[2], true, "monitor http_200: up")
}

func TestManagerUDP(t *testing.T) {
	t.Parallel()
	echo := udpEcho(t, func(b []byte) []byte { return b })
	closed := closedUDPPort(t)
	m := NewManager(nil)
	defer m.Close()
	up, down := &fakeTarget{addr: echo}, &fakeTarget{addr: closed}
	spec := Spec{Name: "dns", Type: "udp", Send: "hi", Receive: regexp.MustCompile("hi"), Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}
	m.Set([]Job{
		{Key: "up", Target: up, Specs: []Spec{spec}},
		{Key: "down", Target: down, Specs: []Spec{spec}},
	})
	wantCall(t, up.waitCalls(t, 1)[0], true, "monitor dns: up")
	wantCall(t, down.waitCalls(t, 1)[0], false, "monitor dns: read: port unreachable (ICMP)")
}

func TestManagerReverseAndAlias(t *testing.T) {
	t.Parallel()
	maint := tcpServer2(t, reply("MAINT"))
	live := tcpServer2(t, nil)
	closed := closedTCPPort(t)
	m := NewManager(nil)
	defer m.Close()
	rev, alias := &fakeTarget{addr: maint}, &fakeTarget{addr: closed}
	m.Set([]Job{
		{Key: "rev", Target: rev, Specs: []Spec{{Name: "maint", Type: "tcp", Receive: regexp.MustCompile("MAINT"), Reverse: true, Interval: 50 * time.Millisecond}}},
		// The member's own port is closed; the monitor probes the alias port.
		{Key: "alias", Target: alias, Specs: []Spec{{Name: "side", Type: "tcp", Destination: fmt.Sprintf("*:%d", live.Port()), Interval: 50 * time.Millisecond}}},
	})
	wantCall(t, rev.waitCalls(t, 1)[0], false, "monitor maint: receive /MAINT/ matched (reverse)")
	wantCall(t, alias.waitCalls(t, 1)[0], true, "monitor side: up")
}

func TestManagerMinUp(t *testing.T) {
	t.Parallel()
	a, stopA := tcpServer(t, nil)
	b := closedTCPPort(t)
	specs := []Spec{
		{Name: "mon_a", Type: "tcp", Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond},
		{Name: "mon_b", Type: "tcp", Destination: fmt.Sprintf("*:%d", b.Port()), Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond},
	}
	m := NewManager(nil)
	defer m.Close()
	minOne, all, two := &fakeTarget{addr: a}, &fakeTarget{addr: a}, &fakeTarget{addr: a}
	m.Set([]Job{
		{Key: "min1", Target: minOne, Specs: specs, MinUp: 1},
		{Key: "all", Target: all, Specs: specs},
		{Key: "min2", Target: two, Specs: specs, MinUp: 2},
	})
	wantCall(t, minOne.waitCalls(t, 1)[0], true, "1 of 2 monitors up (need 1): mon_a")
	wantCall(t, all.waitCalls(t, 1)[0], false, "monitor mon_b: connect: connection refused")
	wantCall(t, two.waitCalls(t, 1)[0], false, "monitor mon_b: connect: connection refused")

	st := waitStatus(t, m, "min1", func(s []ProbeStatus) bool { return len(s) == 2 && s[0].Checked && s[1].Checked })
	if !st[0].Up || st[1].Up || st[0].Monitor != "mon_a" || st[1].Monitor != "mon_b" {
		t.Fatalf("Status(min1) = %+v", st)
	}

	stopA()
	c := minOne.waitCalls(t, 2)[1]
	wantCall(t, c, false, "monitor mon_a: connect: connection refused; monitor mon_b: connect: connection refused (0 of 2 monitors up, need 1)")
	time.Sleep(300 * time.Millisecond)
	if n := len(all.Calls()); n != 1 {
		t.Fatalf("job already down got %d calls, want 1: %+v", n, all.Calls())
	}
}

// The first decision waits for monitors that could still change it, and
// is made as soon as they cannot.
func TestManagerFirstDecision(t *testing.T) {
	t.Parallel()
	live := tcpServer2(t, nil)
	closed := closedTCPPort(t)
	// Monitor "slow" gets no result during the test: its first probe (within
	// a second: spread-checks) waits for an answer a silent server never
	// sends, for ten minutes.
	silent := tcpServer2(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	slow := Spec{Name: "slow", Type: "tcp", Interval: 10 * time.Minute, Timeout: 10 * time.Minute,
		Receive: regexp.MustCompile(`x`), Destination: silent.String()}
	quickUp := Spec{Name: "quick", Type: "tcp", Interval: 50 * time.Millisecond}
	quickDown := Spec{Name: "quick", Type: "tcp", Interval: 50 * time.Millisecond, Destination: closed.String()}

	m := NewManager(nil)
	defer m.Close()
	needAllUp, needAllDown, needOne := &fakeTarget{addr: live}, &fakeTarget{addr: live}, &fakeTarget{addr: live}
	m.Set([]Job{
		{Key: "all-up", Target: needAllUp, Specs: []Spec{quickUp, slow}},
		{Key: "all-down", Target: needAllDown, Specs: []Spec{quickDown, slow}},
		{Key: "one", Target: needOne, Specs: []Spec{slow, quickUp}, MinUp: 1},
	})
	// One failure already decides "all": down. One success decides "min 1": up.
	wantCall(t, needAllDown.waitCalls(t, 1)[0], false, "monitor quick: connect: connection refused")
	wantCall(t, needOne.waitCalls(t, 1)[0], true, "1 of 2 monitors up (need 1): quick")
	// "all" with one success and one unchecked is undecided: no call.
	waitStatus(t, m, "all-up", func(s []ProbeStatus) bool { return len(s) == 2 && s[0].Checked })
	if c := needAllUp.Calls(); len(c) != 0 {
		t.Fatalf("undecided job reported %+v", c)
	}
	if st := m.Status("all-up"); st[1].Checked || st[1].Reason != "" {
		t.Fatalf("slow monitor status %+v, want unchecked", st[1])
	}
}

func TestManagerTimeUntilUp(t *testing.T) {
	t.Parallel()
	addr := tcpServer2(t, nil)
	m := NewManager(nil)
	defer m.Close()
	member := &fakeTarget{addr: addr}
	const tuu = 800 * time.Millisecond
	m.Set([]Job{{Key: "k", Target: member, Specs: []Spec{{Name: "tcp", Type: "tcp", Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, TimeUntilUp: tuu}}}})
	calls := member.waitCalls(t, 2)
	wantCall(t, calls[0], false, "monitor tcp: succeeding for")
	wantCall(t, calls[0], false, "time-until-up is 800ms")
	wantCall(t, calls[1], true, "monitor tcp: up")
	// The up call comes at least TimeUntilUp after the first success; the
	// first call was made right after that success, so half is a safe bound
	// even on a loaded machine.
	if gap := calls[1].at.Sub(calls[0].at); gap < tuu/2 {
		t.Fatalf("marked up %v after the first success, want about %v", gap, tuu)
	}
}

// Not parallel: it counts the process's probe goroutines.
func TestManagerSetReconcile(t *testing.T) {
	if n := probesSettle(0); n != 0 {
		t.Fatalf("%d probe goroutines before the test", n)
	}
	addr := tcpServer2(t, reply("OK"))
	spec := func() Spec {
		// A fresh regexp each time: equality is by pattern, not pointer.
		return Spec{Name: "m", Type: "tcp", Interval: 50 * time.Millisecond, Receive: regexp.MustCompile("^OK")}
	}
	a, b, c := &fakeTarget{addr: addr}, &fakeTarget{addr: addr}, &fakeTarget{addr: addr}
	m := NewManager(nil)
	defer m.Close() // on failure; Close twice is fine
	m.Set([]Job{{Key: "a", Target: a, Specs: []Spec{spec()}}, {Key: "b", Target: b, Specs: []Spec{spec()}}})
	a.waitCalls(t, 1)
	b.waitCalls(t, 1)
	if n := probesSettle(2); n != 2 {
		t.Fatalf("%d probe goroutines, want 2", n)
	}

	// Reload: a unchanged, b removed, c added.
	m.Set([]Job{{Key: "a", Target: a, Specs: []Spec{spec()}}, {Key: "c", Target: c, Specs: []Spec{spec()}}})
	if st := m.Status("a"); len(st) != 1 || !st[0].Checked || !st[0].Up {
		t.Fatalf("kept job lost its state: %+v", st)
	}
	if st := m.Status("b"); st != nil {
		t.Fatalf("Status of removed job = %+v, want nil", st)
	}
	if n := probesSettle(2); n != 2 {
		t.Fatalf("%d probe goroutines after reload, want 2 (a and c)", n)
	}
	c.waitCalls(t, 1)
	time.Sleep(200 * time.Millisecond)
	if n := len(a.Calls()); n != 1 {
		t.Fatalf("unchanged job re-reported on reload: %+v", a.Calls())
	}
	if n := len(b.Calls()); n != 1 {
		t.Fatalf("removed job still reporting: %+v", b.Calls())
	}

	// A changed spec, MinUp or target restarts the job (new first decision).
	changed := spec()
	changed.Interval = 60 * time.Millisecond
	a2 := &fakeTarget{addr: addr}
	m.Set([]Job{
		{Key: "a", Target: a, Specs: []Spec{changed}},
		{Key: "c", Target: a2, Specs: []Spec{spec()}},
	})
	wantCall(t, a.waitCalls(t, 2)[1], true, "monitor m: up")
	wantCall(t, a2.waitCalls(t, 1)[0], true, "monitor m: up")
	if n := probesSettle(2); n != 2 {
		t.Fatalf("%d probe goroutines, want 2", n)
	}

	m.Set(nil)
	if n := probesSettle(0); n != 0 {
		t.Fatalf("%d probe goroutines after Set(nil), want 0", n)
	}
	m.Close()
	m.Set([]Job{{Key: "a", Target: a, Specs: []Spec{spec()}}})
	if n := probesSettle(0); n != 0 || m.Status("a") != nil {
		t.Fatalf("Set after Close started %d probes", n)
	}
}

// Not parallel: goleak checks every goroutine of the process.
func TestManagerCloseLeaksNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()
	silent, stopServer := tcpServer(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 1)) })
	m := NewManager(nil)
	defer m.Close()
	var jobs []Job
	for i := range 20 {
		jobs = append(jobs, Job{
			Key:    fmt.Sprint("job", i),
			Target: &fakeTarget{addr: silent},
			// Probes block reading a reply that never comes: Close must
			// interrupt them rather than wait out the 10s deadline.
			Specs: []Spec{
				{Name: "rx", Type: "tcp", Receive: regexp.MustCompile("x"), Interval: 10 * time.Second, Timeout: 30 * time.Second},
				{Name: "udp", Type: "udp", Interval: 10 * time.Second, Timeout: 30 * time.Second, Destination: "127.0.0.1:9"},
			},
		})
	}
	m.Set(jobs)
	if n := probesSettle(40); n != 40 {
		t.Fatalf("%d probe goroutines, want 40", n)
	}
	time.Sleep(1100 * time.Millisecond) // past the first-probe jitter: probes are mid-attempt
	start := time.Now()
	m.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v: blocked probes were not interrupted", d)
	}
	stopServer()
	goleak.VerifyNone(t, before)
}

func TestSameTarget(t *testing.T) {
	t.Parallel()
	x, y := &fakeTarget{}, &fakeTarget{}
	if !sameTarget(x, x) || sameTarget(x, y) || sameTarget(x, nil) || !sameTarget(nil, nil) {
		t.Fatal("pointer targets compared wrongly")
	}
	// A non-comparable dynamic type must not panic.
	u1, u2 := uncomparable{f: []int{1}}, uncomparable{f: []int{1}}
	if sameTarget(u1, u2) {
		t.Fatal("non-comparable targets reported equal")
	}
}

type uncomparable struct{ f []int }

func (uncomparable) Addr() netip.AddrPort   { return netip.AddrPort{} }
func (uncomparable) SetHealth(bool, string) {}
