package configsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/quorum"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

// src3 is device self's file in a three-device group.
func (e *env) src3(self, mode, members string) string {
	mgmt := map[string]string{"a": "127.0.0.1:19090", "b": "127.0.0.1:19091", "c": "127.0.0.1:19092"}[self]
	return fmt.Sprintf(`# %s's own file
local: {device: %s, trust_dir: %s}
management: {address: "%s"}
devices:
  a: {ha_addresses: [127.0.5.1]}
  b: {ha_addresses: [127.0.5.2]}
  c: {ha_addresses: [127.0.5.3]}
failover: {port: %d, dead_time: 200ms, interval: 20ms}
config_sync: {mode: %s, port: %d, interval: 100ms}
pools:
  web:   # the pool
    members: [%s]
virtuals:
  v: {destination: "127.0.0.1:18080", type: tcp, pool: web}
`, self, self, filepath.Join(e.root, "trust-"+self), mgmt, e.port+1, mode, e.port, members)
}

type gnode struct {
	*node
	q *quorum.Node
}

func (e *env) startGroup(t *testing.T, mode string, members map[string]string) map[string]*gnode {
	t.Helper()
	peers := map[string]string{}
	for i, d := range []string{"a", "b", "c"} {
		peers[d] = fmt.Sprintf("127.0.5.%d:%d", i+1, e.port+1)
	}
	out := map[string]*gnode{}
	for _, self := range []string{"a", "b", "c"} {
		file := filepath.Join(e.root, self+".yaml")
		eng := &fakeEngine{file: file}
		eng.edit(t, e.src3(self, mode, members[self]))
		st, err := trust.Load(filepath.Join(e.root, "trust-"+self), self, []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("device", self)
		}
		q, err := quorum.New(quorum.Options{Self: self, Peers: peers, StateDir: filepath.Join(e.root, "raft-"+self), Trust: st,
			DeadTime: 200 * time.Millisecond, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{Config: eng.Config(), Engine: eng, Trust: st, StatePath: file + ".sync", Log: log, Quorum: q})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := &node{s: s, eng: eng, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(n.done); s.Run(ctx) }()
		t.Cleanup(func() { n.stop(); q.Close() })
		out[self] = &gnode{node: n, q: q}
	}
	return out
}

func freePort3(t *testing.T) int {
	for p := 31000 + os.Getpid()%3000; p < 60000; p += 17 {
		ok := true
		for _, a := range []string{"127.0.5.1", "127.0.5.2", "127.0.5.3"} {
			for _, port := range []int{p, p + 1} {
				if !free(a, port) {
					ok = false
				}
			}
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func TestGroupSyncAutomaticAndConflict(t *testing.T) {
	root := t.TempDir()
	if err := trust.Init(filepath.Join(root, "trust-a"), "a"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		if err := trust.Issue(filepath.Join(root, "trust-a"), d, filepath.Join(root, "trust-"+d)); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{root: root, port: freePort3(t)}
	one := `{address: "127.0.0.1:9001"}`
	g := e.startGroup(t, "automatic", map[string]string{"a": one, "b": one, "c": one})
	waitSync(t, "all in sync at generation 1", func() bool {
		for _, n := range g {
			if st := n.s.Status(); st.Sync != "in-sync" || st.Local.Base != 1 {
				return false
			}
		}
		return true
	})
	// A change on b reaches a and c, with b's local sections kept apart.
	g["b"].eng.edit(t, e.src3("b", "automatic", one+`, {address: "127.0.0.1:9002"}`))
	for _, d := range []string{"a", "c"} {
		n := g[d]
		waitSync(t, d+" gets b's change", func() bool { return members(n.node) == "127.0.0.1:9001,127.0.0.1:9002" })
		if c := n.eng.Config(); c.Local.Device != d || !strings.Contains(string(c.Source), "# the pool") {
			t.Errorf("%s after the sync: local %+v", d, c.Local)
		}
	}
	waitSync(t, "generation 2 everywhere", func() bool {
		for _, n := range g {
			if st := n.s.Status(); st.Sync != "in-sync" || st.Local.Base != 2 {
				return false
			}
		}
		return true
	})
	// Two proposals from the same generation: the log takes the first,
	// refuses the second as a conflict.
	ctx := context.Background()
	a3 := e.src3("a", "automatic", one+`, {address: "127.0.0.1:9003"}`)
	c4 := e.src3("c", "automatic", one+`, {address: "127.0.0.1:9004"}`)
	pa, da, _ := syncedPart([]byte(a3))
	pc, dc, _ := syncedPart([]byte(c4))
	if _, err := g["a"].s.propose(ctx, proposal{Base: 2, Origin: "a", Digest: da, YAML: pa}); err != nil {
		t.Fatal(err)
	}
	if _, err := g["c"].s.propose(ctx, proposal{Base: 2, Origin: "c", Digest: dc, YAML: pc}); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second proposal from the same generation: %v, want a conflict", err)
	}
	// And through the devices: c changes its file while behind a change
	// of a's: c is in conflict and keeps its file until the operator acts.
	g["c"].stop() // c's loop frozen at generation 2; the group is at 3 (a's 9003)
	waitSync(t, "a applies the group's generation 3", func() bool { return members(g["a"].node) == "127.0.0.1:9001,127.0.0.1:9003" })
	g["c"].eng.edit(t, c4)
	if err := g["c"].s.pushGroup(ctx, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("c's change over a's: %v, want a conflict", err)
	}
	g["c"].s.checkGroup(ctx)
	if st := g["c"].s.Status(); st.Sync != "conflict" {
		t.Errorf("c: %+v", st)
	}
	if members(g["c"].node) != "127.0.0.1:9001,127.0.0.1:9004" {
		t.Fatalf("c's change was overwritten: %s", members(g["c"].node))
	}
	// from-device on c takes the group's version.
	if err := g["c"].s.Pull(ctx); err != nil {
		t.Fatal(err)
	}
	if members(g["c"].node) != "127.0.0.1:9001,127.0.0.1:9003" {
		t.Errorf("after from-device: c %s", members(g["c"].node))
	}
}

func free(addr string, port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", addr, port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
