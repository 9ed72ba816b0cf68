package ha

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/quorum"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

// qnode is one device of an in-process three-device group: heartbeats on
// loopback UDP, raft on loopback TCP with mutual TLS.
type qnode struct {
	*node
	q *quorum.Node
}

const qDeadTime = 200 * time.Millisecond

func startQuorumGroup(t *testing.T) map[string]*qnode {
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
	port := freeUDPPort(t)
	nodes := map[string]*qnode{}
	for _, self := range []string{"a", "b", "c"} {
		src := fmt.Sprintf(`
local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [127.0.0.11, 127.0.1.11]}
  b: {ha_addresses: [127.0.0.12, 127.0.1.12]}
  c: {ha_addresses: [127.0.0.13, 127.0.1.13]}
failover: {port: %d, interval: 20ms, dead_time: %s, garp_count: 1}
traffic_groups:
  tg1:
    addresses: [{address: 192.0.2.10/24, interface: eth0}]
pools:
  p: {members: [{address: 127.0.0.1:9}]}
virtuals:
  v: {destination: 192.0.2.10:80, type: tcp, pool: p}
`, self, filepath.Join(root, self), port, qDeadTime)
		cfg, err := config.Parse([]byte(src), "ha.yaml")
		if err != nil {
			t.Fatal(err)
		}
		st, err := trust.Load(cfg.Local.TrustDir, self, []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("device", self)
		}
		peers := map[string]string{}
		for d, dev := range cfg.Devices {
			peers[d] = fmt.Sprintf("%s:%d", dev.HAAddresses[0], port)
		}
		q, err := quorum.New(quorum.Options{Self: self, Peers: peers, StateDir: filepath.Join(root, "raft-"+self),
			Trust: st, DeadTime: qDeadTime, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		n := &node{name: self, eng: &fakeEngine{}, addrs: &fakeAddrs{}, auth: &testAuth{self: self, key: []byte("group key")}}
		m, err := New(Options{Config: cfg, Engine: n.eng, Auth: n.auth, Log: log, Addresses: n.addrs, Quorum: q})
		if err != nil {
			t.Fatal(err)
		}
		n.m = m
		n.start(t)
		t.Cleanup(func() { n.stop(); q.Close() })
		nodes[self] = &qnode{node: n, q: q}
	}
	return nodes
}

// holders lists the devices serving tg1.
func holders(nodes map[string]*qnode) []string {
	var out []string
	for _, d := range []string{"a", "b", "c"} {
		if n := nodes[d]; n != nil && n.eng.is("tg1") {
			out = append(out, d)
		}
	}
	return out
}

// neverTwo checks for d that tg1 is never active on two devices at once.
func neverTwo(t *testing.T, nodes map[string]*qnode, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if h := holders(nodes); len(h) > 1 {
			t.Fatalf("tg1 active on %v at once", h)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// partition cuts device d off from the others: heartbeats both ways and
// its raft connections.
func partition(nodes map[string]*qnode, d string, on bool) {
	for name, n := range nodes {
		if name == d {
			n.auth.refuse.Store(on)
			n.q.Isolate(on)
			continue
		}
		if on {
			n.auth.refuseFrom.Store(d, true)
		} else {
			n.auth.refuseFrom.Delete(d)
		}
	}
}

func TestQuorumOneHolderAndTakeover(t *testing.T) {
	nodes := startQuorumGroup(t)
	waitFor(t, 5*time.Second, "tg1 active on a", func() bool { h := holders(nodes); return len(h) == 1 && h[0] == "a" })
	neverTwo(t, nodes, 300*time.Millisecond)
	// a crashes (its process and its raft member stop).
	nodes["a"].stop()
	nodes["a"].q.Close()
	delete(nodes, "a")
	took := waitFor(t, 5*time.Second, "b takes over", func() bool { h := holders(nodes); return len(h) == 1 && h[0] == "b" })
	t.Logf("three devices, holder a stopped: b active after %s (dead_time %s)", took.Round(time.Millisecond), qDeadTime)
	neverTwo(t, nodes, 300*time.Millisecond)
	if st := nodes["b"].m.Status(); st.Quorum == nil || !st.Quorum.InMajority {
		t.Errorf("b's quorum status: %+v", st.Quorum)
	}
}

func TestQuorumMinorityNeverActive(t *testing.T) {
	nodes := startQuorumGroup(t)
	waitFor(t, 5*time.Second, "tg1 active on a", func() bool { h := holders(nodes); return len(h) == 1 && h[0] == "a" })
	// c, a standby, cut off alone: nothing moves, c never goes active.
	partition(nodes, "c", true)
	for end := time.Now().Add(5 * qDeadTime); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if nodes["c"].eng.is("tg1") {
			t.Fatal("the partitioned minority device c went active")
		}
		if h := holders(nodes); len(h) != 1 || h[0] != "a" {
			t.Fatalf("with c cut off, tg1 is on %v", h)
		}
	}
	partition(nodes, "c", false)
	// a, the holder, cut off: it lets go within the lease, the majority
	// gives the group to b; a never takes it while cut off.
	cut := time.Now()
	partition(nodes, "a", true)
	released := waitFor(t, 5*time.Second, "a releases", func() bool { return !nodes["a"].eng.is("tg1") })
	taken := waitFor(t, 5*time.Second, "b takes over", func() bool { return nodes["b"].eng.is("tg1") })
	t.Logf("holder cut off: it released after %s, b active %s after the cut", released.Round(time.Millisecond), time.Since(cut).Round(time.Millisecond))
	_ = taken
	for end := time.Now().Add(5 * qDeadTime); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if nodes["a"].eng.is("tg1") {
			t.Fatal("the partitioned former holder a went active again")
		}
		if h := holders(nodes); len(h) != 1 {
			t.Fatalf("tg1 on %v", h)
		}
	}
	// Healed: the group stays on b (no auto failback), a stays standby.
	partition(nodes, "a", false)
	neverTwo(t, nodes, 5*qDeadTime)
	if h := holders(nodes); len(h) != 1 || h[0] != "b" {
		t.Errorf("after the heal tg1 is on %v, want b", h)
	}
}

func TestQuorumOperatorFailover(t *testing.T) {
	nodes := startQuorumGroup(t)
	waitFor(t, 5*time.Second, "tg1 active on a", func() bool { h := holders(nodes); return len(h) == 1 && h[0] == "a" })
	waitFor(t, 5*time.Second, "every device sees a", func() bool {
		return nodes["b"].group(t).ActiveOn == "a" && nodes["c"].group(t).ActiveOn == "a"
	})
	// Asked on c (not necessarily the leader), to c.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes["c"].m.Failover(ctx, "tg1", "c"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "tg1 on c", func() bool { h := holders(nodes); return len(h) == 1 && h[0] == "c" })
	neverTwo(t, nodes, 300*time.Millisecond)
}
