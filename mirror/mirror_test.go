package mirror

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"github.com/fulcrum-adc/fulcrum/persist"
)

type staticConfig struct{ c *config.Config }

func (s staticConfig) Config() *config.Config { return s.c }

// trustDomain makes a trust domain with devices a and b (and c, issued by
// the same CA but not named in the group) under a temporary directory.
func trustDomain(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := trust.Init(filepath.Join(root, "a"), "a"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		if err := trust.Issue(filepath.Join(root, "a"), d, filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// cfgFor is device self's configuration; peerPrimary overrides the
// primary mirror address self sees for the other device.
func cfgFor(t *testing.T, root, self string, port int, peerPrimary string) *config.Config {
	t.Helper()
	mirrorA, mirrorB := "[127.0.2.1, 127.0.3.1]", "[127.0.2.2, 127.0.3.2]"
	if peerPrimary != "" {
		if self == "a" {
			mirrorB = "[" + peerPrimary + ", 127.0.3.2]"
		} else {
			mirrorA = "[" + peerPrimary + ", 127.0.3.1]"
		}
	}
	src := fmt.Sprintf(`
local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [127.0.2.1], mirror_addresses: %s}
  b: {ha_addresses: [127.0.2.2], mirror_addresses: %s}
failover: {mirror_port: %d}
traffic_groups:
  tg1: {addresses: [{address: 192.0.2.10/24, interface: eth0}]}
profiles:
  persistence:
    sticky: {type: source_addr, mirror: true}
    local: {type: source_addr}
pools:
  p: {members: [{address: 127.0.0.1:9}]}
virtuals:
  v: {destination: 192.0.2.10:80, type: tcp, pool: p, persistence: sticky}
  w: {destination: 192.0.2.10:81, type: tcp, pool: p, persistence: local}
  x: {destination: 127.0.0.1:82, type: tcp, pool: p, persistence: sticky}
`, self, filepath.Join(root, self), mirrorA, mirrorB, port)
	c, err := config.Parse([]byte(src), "mirror.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type node struct {
	m      *Mirror
	table  *persist.Table
	cancel context.CancelFunc
	done   chan struct{}
}

func startNode(t *testing.T, c *config.Config, table *persist.Table) *node {
	t.Helper()
	names := []string{"a", "b"}
	st, err := trust.Load(c.Local.TrustDir, c.Local.Device, names)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("device", c.Local.Device)
	}
	m, err := New(Options{Config: c, Configs: staticConfig{c}, Table: table, Trust: st, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{m: m, table: table, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); m.Run(ctx) }()
	t.Cleanup(n.stop)
	// Run must have taken its context before SetActive.
	deadline := time.Now().Add(time.Second)
	for {
		m.mu.Lock()
		ready := m.ctx != nil
		m.mu.Unlock()
		if ready || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func rec(virtual, profile string, i int, now time.Time) persist.Record {
	ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return persist.Record{
		Key: virtual + "|" + profile + "|" + ip.String(), Type: "source_addr", Value: ip.String(),
		Profile: profile, Virtual: virtual, Pool: "p",
		Member:  netip.AddrPortFrom(netip.MustParseAddr("10.9.0.1"), uint16(8000+i%3)),
		Created: now, Timeout: time.Hour,
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func port(t *testing.T) int {
	// Ports on 127.0.2.x/127.0.3.x: pick one from the ephemeral range that
	// is free on both.
	t.Helper()
	for p := 21000 + os.Getpid()%2000; p < 40000; p += 7 {
		ok := true
		for _, a := range []string{"127.0.2.1", "127.0.2.2", "127.0.3.1", "127.0.3.2"} {
			if !free(a, p) {
				ok = false
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func TestMirrorSnapshotEventsAndScope(t *testing.T) {
	root := trustDomain(t)
	p := port(t)
	ta, tb := persist.NewTable(), persist.NewTable()
	now := time.Now()
	for i := 0; i < 1000; i++ {
		ta.Store(rec("v", "sticky", i, now))
	}
	ta.Store(rec("w", "local", 1, now))  // profile without mirror
	ta.Store(rec("x", "sticky", 1, now)) // virtual in no traffic group
	a := startNode(t, cfgFor(t, root, "a", p, ""), ta)
	b := startNode(t, cfgFor(t, root, "b", p, ""), tb)
	a.m.SetActive("tg1", true)
	waitFor(t, 5*time.Second, "snapshot on b", func() bool { return tb.Len() == 1000 })
	// Changes after the snapshot: new, changed, deleted.
	for i := 1000; i < 1500; i++ {
		ta.Store(rec("v", "sticky", i, now))
	}
	moved := rec("v", "sticky", 7, now)
	moved.Member = netip.MustParseAddrPort("10.9.0.2:9000")
	ta.Store(moved)
	ta.Delete(rec("v", "sticky", 8, now).Key)
	waitFor(t, 5*time.Second, "events on b", func() bool {
		r, ok := tb.Get(moved.Key)
		_, gone := tb.Get(rec("v", "sticky", 8, now).Key)
		return tb.Len() == 1499 && ok && r.Member == moved.Member && !gone
	})
	for _, k := range []string{rec("w", "local", 1, now).Key, rec("x", "sticky", 1, now).Key} {
		if _, ok := tb.Get(k); ok {
			t.Errorf("%s was mirrored: its profile does not mirror or its virtual is in no traffic group", k)
		}
	}
	r, _ := tb.Get(rec("v", "sticky", 3, now).Key)
	if r.Origin != "a" || r.Expires.Sub(now) < 59*time.Minute || r.Expires.Sub(now) > 61*time.Minute {
		t.Errorf("mirrored record: origin %q, expires in %s", r.Origin, r.Expires.Sub(now))
	}
	waitFor(t, 2*time.Second, "lag 0", func() bool {
		s := a.m.Status().Groups[0]
		return s.Role == "sending" && s.Lag == 0 && s.Acked > 1500
	})
	if s := b.m.Status().Groups[0]; s.Role != "receiving" || s.Received < 1500 || s.From != "a" {
		t.Errorf("b's status: %+v", s)
	}
}

func TestMirrorResyncAfterPeerReturns(t *testing.T) {
	root := trustDomain(t)
	p := port(t)
	ta := persist.NewTable()
	now := time.Now()
	for i := 0; i < 300; i++ {
		ta.Store(rec("v", "sticky", i, now))
	}
	a := startNode(t, cfgFor(t, root, "a", p, ""), ta)
	a.m.SetActive("tg1", true)
	b := startNode(t, cfgFor(t, root, "b", p, ""), persist.NewTable())
	waitFor(t, 5*time.Second, "first sync", func() bool { return b.table.Len() == 300 })
	b.stop() // b goes down; a goes on changing its table
	for i := 300; i < 600; i++ {
		ta.Store(rec("v", "sticky", i, now))
	}
	ta.Delete(rec("v", "sticky", 0, now).Key)
	// b returns with a record a sent it once and no longer has (and one of
	// its own); the full resync removes the first and keeps the second.
	tb := persist.NewTable()
	stale := rec("v", "sticky", 99999, now)
	stale.Origin = "a"
	tb.Store(stale)
	own := rec("v", "sticky", 88888, now)
	tb.Store(own)
	b = startNode(t, cfgFor(t, root, "b", p, ""), tb)
	waitFor(t, 10*time.Second, "resync", func() bool {
		_, hasStale := tb.Get(stale.Key)
		_, hasDeleted := tb.Get(rec("v", "sticky", 0, now).Key)
		_, hasOwn := tb.Get(own.Key)
		return tb.Len() == 600 && !hasStale && !hasDeleted && hasOwn
	})
	if s := a.m.Status().Groups[0]; s.Resyncs < 2 {
		t.Errorf("a sent %d snapshots, want a second one for the returning peer", s.Resyncs)
	}
}

func TestMirrorSecondaryAddressAndEcho(t *testing.T) {
	root := trustDomain(t)
	p := port(t)
	// a believes b's primary mirror address is one where nothing listens.
	ta, tb := persist.NewTable(), persist.NewTable()
	a := startNode(t, cfgFor(t, root, "a", p, "127.0.4.2"), ta)
	b := startNode(t, cfgFor(t, root, "b", p, ""), tb)
	a.m.SetActive("tg1", true)
	b.m.SetActive("tg1", true) // both active (a split brain): no echo loop
	now := time.Now()
	ta.Store(rec("v", "sticky", 1, now))
	tb.Store(rec("v", "sticky", 2, now))
	waitFor(t, 5*time.Second, "both records on both", func() bool { return ta.Len() == 2 && tb.Len() == 2 })
	if s := a.m.Status().Groups[0]; !strings.HasPrefix(s.Connected, "127.0.3.2:") {
		t.Errorf("a connected to %q, want b's secondary 127.0.3.2", s.Connected)
	}
	time.Sleep(200 * time.Millisecond)
	sa, sb := a.m.Status().Groups[0], b.m.Status().Groups[0]
	if sa.Received > 2 || sb.Received > 2 {
		t.Errorf("records echo between the devices: a received %d, b received %d", sa.Received, sb.Received)
	}
}

func TestMirrorRefusesUnknownDevice(t *testing.T) {
	root := trustDomain(t)
	p := port(t)
	tb := persist.NewTable()
	b := startNode(t, cfgFor(t, root, "b", p, ""), tb)
	// c holds a certificate of the same CA but is not in b's group.
	cc := cfgFor(t, root, "a", p, "")
	cst, err := trust.Load(filepath.Join(root, "c"), "c", []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	cc.Local.Device = "c"
	m := &Mirror{self: "c", configs: staticConfig{cc}, table: persist.NewTable(), trust: cst,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), groups: map[string]*group{}}
	// From a's mirror address (the address filter passes), with c's
	// certificate: device trust must refuse it.
	l := &link{peer: "b", addrs: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("127.0.2.2:%d", p))}}
	g := &group{name: "tg1", port: p, links: []*link{l}, local: []netip.Addr{netip.MustParseAddr("127.0.2.1")}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, _, err := m.dial(ctx, g, l)
	if err == nil {
		// TLS 1.3: the client may finish before the server refuses; the
		// refusal shows on the first read.
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("b accepted a device that is not in its group")
	}
	waitFor(t, 2*time.Second, "refusal counted", func() bool { return b.m.Status().Groups[0].Refused >= 1 })
	if tb.Len() != 0 {
		t.Error("records arrived from an unknown device")
	}
	// A connection from an address that is no peer's mirror address is
	// closed before any TLS.
	before := b.m.Status().Groups[0].Refused
	raw, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.2.2:%d", p), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Error("a stranger's connection was kept open")
	}
	raw.Close()
	waitFor(t, 2*time.Second, "stranger refused", func() bool { return b.m.Status().Groups[0].Refused > before })
}

// TestMirrorThreeDevices: with three devices the device where the group is
// active mirrors to both others, so whichever the majority picks next has
// every record.
func TestMirrorThreeDevices(t *testing.T) {
	root := trustDomain(t)
	p := port(t)
	for _, a := range []string{"127.0.2.3", "127.0.3.3"} {
		if !free(a, p) {
			t.Skipf("port %d taken on %s", p, a)
		}
	}
	cfg := func(self string) *config.Config {
		src := fmt.Sprintf(`
local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [127.0.2.1], mirror_addresses: [127.0.2.1, 127.0.3.1]}
  b: {ha_addresses: [127.0.2.2], mirror_addresses: [127.0.2.2, 127.0.3.2]}
  c: {ha_addresses: [127.0.2.3], mirror_addresses: [127.0.2.3, 127.0.3.3]}
failover: {mirror_port: %d}
traffic_groups:
  tg1: {addresses: [{address: 192.0.2.10/24, interface: eth0}]}
profiles:
  persistence:
    sticky: {type: source_addr, mirror: true}
pools:
  p: {members: [{address: 127.0.0.1:9}]}
virtuals:
  v: {destination: 192.0.2.10:80, type: tcp, pool: p, persistence: sticky}
`, self, filepath.Join(root, self), p)
		c, err := config.Parse([]byte(src), "mirror.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tables := map[string]*persist.Table{}
	nodes := map[string]*node{}
	for _, d := range []string{"a", "b", "c"} {
		tables[d] = persist.NewTable()
		st, err := trust.Load(filepath.Join(root, d), d, []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		c := cfg(d)
		m, err := New(Options{Config: c, Configs: staticConfig{c}, Table: tables[d], Trust: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{m: m, table: tables[d], cancel: cancel, done: make(chan struct{})}
		go func() { defer close(n.done); m.Run(ctx) }()
		t.Cleanup(n.stop)
		nodes[d] = n
	}
	now := time.Now()
	for i := 0; i < 500; i++ {
		tables["a"].Store(rec("v", "sticky", i, now))
	}
	nodes["a"].m.SetActive("tg1", true)
	waitFor(t, 5*time.Second, "both others have every record", func() bool { return tables["b"].Len() == 500 && tables["c"].Len() == 500 })
	tables["a"].Delete(rec("v", "sticky", 1, now).Key)
	waitFor(t, 5*time.Second, "the deletion reaches both", func() bool { return tables["b"].Len() == 499 && tables["c"].Len() == 499 })
	waitFor(t, 2*time.Second, "a's status", func() bool {
		s := nodes["a"].m.Status().Groups[0]
		return len(s.Peers) == 2 && s.Peer == "b,c" && s.Lag == 0 && strings.Count(s.Connected, ",") == 1
	})
}
