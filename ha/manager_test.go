package ha

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/netcfg"
)

// testAuth is an HMAC-SHA256 heartbeat MAC keyed per sender, like device
// trust's; refuse makes Open fail for every sender (every path cut).
type testAuth struct {
	self       string
	key        []byte
	refuse     atomic.Bool
	refuseFrom sync.Map // sender -> true: that sender's heartbeats are lost (a partition)
}

func (a *testAuth) mac(sender string, msg []byte) []byte {
	k := hmac.New(sha256.New, a.key)
	k.Write([]byte(sender))
	h := hmac.New(sha256.New, k.Sum(nil))
	h.Write(msg)
	return h.Sum(nil)[:16]
}

func (a *testAuth) Seal(msg []byte) []byte { return append(msg, a.mac(a.self, msg)...) }

func (a *testAuth) Open(sender string, msg []byte) ([]byte, bool) {
	if _, cut := a.refuseFrom.Load(sender); cut || a.refuse.Load() || len(msg) < 16 {
		return nil, false
	}
	body := msg[:len(msg)-16]
	return body, hmac.Equal(msg[len(msg)-16:], a.mac(sender, body))
}

// fakeEngine records which groups are active.
type fakeEngine struct {
	mu     sync.Mutex
	active map[string]bool
	fail   bool
}

func (e *fakeEngine) SetTrafficGroupActive(g string, on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if on && e.fail {
		return fmt.Errorf("address in use")
	}
	if e.active == nil {
		e.active = map[string]bool{}
	}
	e.active[g] = on
	return nil
}

func (e *fakeEngine) is(g string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active[g]
}

// fakeAddrs records floating addresses instead of touching the host.
type fakeAddrs struct {
	mu        sync.Mutex
	present   map[string]bool
	announced int
}

func (f *fakeAddrs) Add(a netcfg.Address, l time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.present == nil {
		f.present = map[string]bool{}
	}
	f.present[a.String()] = true
	return nil
}

func (f *fakeAddrs) Remove(a netcfg.Address) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.present, a.String())
	return nil
}

func (f *fakeAddrs) Announce(a netcfg.Address) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announced++
	return nil
}

func (f *fakeAddrs) announcements() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.announced
}

func (f *fakeAddrs) has(a string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.present[a]
}

// node is one device of an in-process device group on loopback.
type node struct {
	name   string
	m      *Manager
	eng    *fakeEngine
	addrs  *fakeAddrs
	auth   *testAuth
	cancel context.CancelFunc
	done   chan struct{}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// groupConfig is a two-device, two-path configuration for device self.
func groupConfig(t *testing.T, self string, port int, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "heartbeat.key", self + ".pem", self + "-key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := fmt.Sprintf(`
local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [127.0.0.11, 127.0.1.11]}
  b: {ha_addresses: [127.0.0.12, 127.0.1.12]}
failover: {port: %d, interval: 10ms, dead_time: 100ms, garp_count: 2, garp_interval: 10ms}
traffic_groups:
  tg1:
    addresses: [{address: 192.0.2.10/24, interface: eth0}]
%s
pools:
  p: {members: [{address: 127.0.0.1:9}]}
virtuals:
  v: {destination: 192.0.2.10:80, type: tcp, pool: p}
`, self, dir, port, extra)
	cfg, err := config.Parse([]byte(src), "ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func startNode(t *testing.T, name string, port int, extra string) *node {
	t.Helper()
	cfg := groupConfig(t, name, port, extra)
	n := &node{name: name, eng: &fakeEngine{}, addrs: &fakeAddrs{}, auth: &testAuth{self: name, key: []byte("group key")}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("device", name)
	}
	m, err := New(Options{Config: cfg, Engine: n.eng, Auth: n.auth, Log: log, Addresses: n.addrs})
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	n.start(t)
	return n
}

func (n *node) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan struct{})
	go func() { defer close(n.done); n.m.Run(ctx) }()
	t.Cleanup(n.stop)
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func (n *node) group(t *testing.T) GroupStatus {
	t.Helper()
	g := n.m.Status().group("tg1")
	if g == nil {
		t.Fatal("no tg1 in status")
	}
	return *g
}

// waitFor polls cond every millisecond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
	return 0
}

func activeOn(n *node) bool {
	return n.eng.is("tg1") && n.addrs.has("192.0.2.10/24 dev eth0") && n.m.Status().group("tg1").State == "active"
}

func TestTwoDevicesElectFirstInOrder(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	b := startNode(t, "b", port, "")
	waitFor(t, 2*time.Second, "a active", func() bool { return activeOn(a) })
	waitFor(t, 3*time.Second, "b sees a active", func() bool { return b.group(t).ActiveOn == "a" })
	if activeOn(b) || b.addrs.has("192.0.2.10/24 dev eth0") {
		t.Fatal("both devices active")
	}
	if g := a.group(t); g.NextActive != "b" || g.Generation != 1 {
		t.Errorf("a's view: %+v", g)
	}
	st := b.m.Status()
	for _, d := range st.Devices {
		if d.Name == "a" && (!d.Up || len(d.Paths) != 2 || d.Paths[0].LastHeard.IsZero() || d.Paths[1].LastHeard.IsZero()) {
			t.Errorf("b's view of a: %+v", d)
		}
	}
	if a.addrs.announcements() == 0 {
		t.Error("a never announced its floating address")
	}
}

func TestPeerSilentTakeoverThenHigherGenerationWins(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	b := startNode(t, "b", port, "")
	waitFor(t, 2*time.Second, "a active", func() bool { return activeOn(a) })
	// b must have heard a's claim (generation 1) before the cut, or its
	// takeover ties with a's generation and HA order gives a the group.
	waitFor(t, 3*time.Second, "b sees a active", func() bool { return b.group(t).ActiveOn == "a" })
	// Every path cut, both ways: b takes over after dead_time, a keeps it
	// (two devices, no majority: as F5 and VRRP).
	a.auth.refuse.Store(true)
	b.auth.refuse.Store(true)
	took := waitFor(t, 3*time.Second, "b active", func() bool { return activeOn(b) })
	if took < 90*time.Millisecond {
		t.Errorf("b took over after %s, before dead_time 100ms", took)
	}
	if !activeOn(a) {
		t.Error("a gave up the group although it heard nothing")
	}
	// Paths back: b's generation is higher, a steps down.
	a.auth.refuse.Store(false)
	b.auth.refuse.Store(false)
	waitFor(t, 3*time.Second, "a standby", func() bool { return !a.eng.is("tg1") && !a.addrs.has("192.0.2.10/24 dev eth0") })
	if !activeOn(b) || b.group(t).Generation != 2 {
		t.Errorf("b: %+v", b.group(t))
	}
}

func TestShutdownHandsOverAtOnce(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	b := startNode(t, "b", port, "")
	waitFor(t, 2*time.Second, "a active", func() bool { return activeOn(a) })
	waitFor(t, 3*time.Second, "b sees a active", func() bool { return b.group(t).ActiveOn == "a" })
	a.stop()
	if a.eng.is("tg1") || a.addrs.has("192.0.2.10/24 dev eth0") {
		t.Fatal("a still holds the group after shutting down")
	}
	took := waitFor(t, 3*time.Second, "b active", func() bool { return activeOn(b) })
	if took > 60*time.Millisecond {
		t.Errorf("b took %s after a's orderly shutdown: the hand-over should not wait for dead_time", took)
	}
}

func TestOperatorFailoverFromEitherDevice(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	b := startNode(t, "b", port, "")
	waitFor(t, 2*time.Second, "a active", func() bool { return activeOn(a) })
	waitFor(t, 3*time.Second, "b sees a active", func() bool { return b.group(t).ActiveOn == "a" })
	ctx := context.Background()
	// On the active device.
	if err := a.m.Failover(ctx, "tg1", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "b active", func() bool { return activeOn(b) })
	if a.eng.is("tg1") {
		t.Fatal("a kept serving")
	}
	// On the standby device (a), naming itself as target.
	if err := a.m.Failover(ctx, "tg1", "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "a active again", func() bool { return activeOn(a) })
	if b.eng.is("tg1") {
		t.Fatal("b kept serving")
	}
	if err := a.m.Failover(ctx, "tg1", "a"); err == nil {
		t.Error("failover to the device already holding the group was not refused")
	}
	if err := a.m.Failover(ctx, "nope", ""); err == nil {
		t.Error("failover of an unknown group was not refused")
	}
	if err := a.m.Failover(ctx, "tg1", "zz"); err == nil {
		t.Error("failover to an unknown device was not refused")
	}
}

func TestOperatorFailoverStaysWithoutAutoFailback(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	b := startNode(t, "b", port, "")
	waitFor(t, 2*time.Second, "a active", func() bool { return activeOn(a) })
	waitFor(t, 3*time.Second, "b sees a active", func() bool { return b.group(t).ActiveOn == "a" })
	if err := a.m.Failover(context.Background(), "tg1", "b"); err != nil {
		t.Fatal(err)
	}
	// Long past the hold: a must not take it back by itself.
	time.Sleep(3 * a.m.holdFor())
	if !activeOn(b) || a.eng.is("tg1") {
		t.Fatalf("the group moved back: a %+v b %+v", a.group(t), b.group(t))
	}
}

func TestAutoFailback(t *testing.T) {
	port := freeUDPPort(t)
	extra := "    auto_failback: true\n    failback_delay: 200ms"
	b := startNode(t, "b", port, extra)
	waitFor(t, 2*time.Second, "b active alone", func() bool { return activeOn(b) })
	a := startNode(t, "a", port, extra)
	start := time.Now()
	waitFor(t, 3*time.Second, "a active by failback", func() bool { return activeOn(a) })
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("failback after %s, before failback_delay", took)
	}
	if b.eng.is("tg1") {
		t.Error("b still active")
	}
	if g := a.group(t); g.Reason != "handed over by b" {
		t.Errorf("reason %q", g.Reason)
	}
}

func TestRefusedHeartbeatsAreCounted(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	waitFor(t, 2*time.Second, "a active alone", func() bool { return activeOn(a) })
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 12)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 11), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peerAuth := &testAuth{self: "b", key: []byte("group key")}
	hb := heartbeat{Sender: "b", Incarnation: 1, Seq: 1, Groups: []groupClaim{{Name: "tg1", Active: true, Generation: 99}}}
	good, _ := hb.marshal(nil)
	good = peerAuth.Seal(good)
	forged := (&testAuth{self: "b", key: []byte("other key")}).Seal(must(hb.marshal(nil)))
	unknown := (&testAuth{self: "zz", key: []byte("group key")}).Seal(must((&heartbeat{Sender: "zz", Incarnation: 1, Seq: 1}).marshal(nil)))
	hb.Path = 1 // claims path 1, arrives on path 0
	wrongPath := peerAuth.Seal(must(hb.marshal(nil)))
	for _, pkt := range [][]byte{[]byte("garbage"), forged, unknown, wrongPath, good, good} {
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 3*time.Second, "counters", func() bool {
		r := a.m.Status().Refused
		return r.Malformed == 1 && r.Unauthenticated == 1 && r.UnknownDevice == 1 && r.WrongSource == 1 && r.Replayed == 1
	})
	// The one authentic claim (generation 99) made a step down.
	waitFor(t, 3*time.Second, "a standby", func() bool { return !a.eng.is("tg1") })
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestStalledLoopReleasesGroups(t *testing.T) {
	port := freeUDPPort(t)
	cfg := groupConfig(t, "a", port, "")
	eng, addrs := &fakeEngine{}, &fakeAddrs{}
	m, err := New(Options{Config: cfg, Engine: eng, Auth: &testAuth{self: "a", key: []byte("k")}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Addresses: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range m.conns {
			c.Close()
		}
	}()
	now := time.Now()
	m.lastTick, m.startUntil = now, now
	m.tick(now.Add(10 * time.Millisecond))
	if !eng.is("tg1") {
		t.Fatal("a alone did not take the group")
	}
	// The loop resumes 500ms later (SIGSTOP, a hung host): release first.
	later := now.Add(510 * time.Millisecond)
	m.tick(later)
	if eng.is("tg1") || addrs.has("192.0.2.10/24 dev eth0") {
		t.Fatal("group kept after a stall longer than dead_time")
	}
	m.tick(later.Add(50 * time.Millisecond))
	if eng.is("tg1") {
		t.Fatal("group taken again before dead_time passed")
	}
	m.tick(later.Add(110 * time.Millisecond))
	if !eng.is("tg1") {
		t.Fatal("group not taken again after dead_time with no peer")
	}
}

func TestEngineFailureReleasesAndHolds(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	a.eng.mu.Lock()
	a.eng.fail = true
	a.eng.mu.Unlock()
	b := startNode(t, "b", port, "")
	waitFor(t, 3*time.Second, "b active", func() bool { return activeOn(b) })
	if a.addrs.has("192.0.2.10/24 dev eth0") {
		t.Error("a kept the address of a group it cannot serve")
	}
}

// TestLateHeartbeatIsIgnored: a path that comes back delivers what the
// kernel queued while it was down; that news is older than what the other
// path already brought and must not overwrite it.
func TestLateHeartbeatIsIgnored(t *testing.T) {
	port := freeUDPPort(t)
	a := startNode(t, "a", port, "")
	waitFor(t, 2*time.Second, "a active alone", func() bool { return activeOn(a) })
	dial := func(from, to net.IP) *net.UDPConn {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: from}, &net.UDPAddr{IP: to, Port: port})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	path0 := dial(net.IPv4(127, 0, 0, 12), net.IPv4(127, 0, 0, 11))
	path1 := dial(net.IPv4(127, 0, 1, 12), net.IPv4(127, 0, 1, 11))
	peerAuth := &testAuth{self: "b", key: []byte("group key")}
	send := func(c *net.UDPConn, path uint8, seq uint64, active bool, gen uint64) {
		hb := heartbeat{Sender: "b", Incarnation: 1, Seq: seq, Path: path, Groups: []groupClaim{{Name: "tg1", Active: active, Generation: gen}}}
		if _, err := c.Write(peerAuth.Seal(must(hb.marshal(nil)))); err != nil {
			t.Fatal(err)
		}
	}
	send(path0, 0, 10, false, 1) // now: b is standby
	waitFor(t, 3*time.Second, "b up", func() bool { return a.m.Status().Devices[1].Up })
	send(path1, 1, 5, true, 99) // queued long ago on path 1
	waitFor(t, 3*time.Second, "late counted", func() bool { return a.m.Status().Refused.Late == 1 })
	time.Sleep(50 * time.Millisecond)
	if !a.eng.is("tg1") {
		t.Fatal("a stepped down on a late heartbeat")
	}
	// The same claim as news (a newer round) does move it: the check above
	// could fail.
	send(path1, 1, 11, true, 99)
	waitFor(t, 3*time.Second, "a standby", func() bool { return !a.eng.is("tg1") })
}
