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
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

// fakeEngine holds a configuration; LoadConfig parses and applies it as
// the engine would (validation included).
type fakeEngine struct {
	mu    sync.Mutex
	cfg   *config.Config
	file  string
	loads int
}

func (f *fakeEngine) Config() *config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

func (f *fakeEngine) LoadConfig(data []byte) (api.ConfigApplied, error) {
	c, err := config.Parse(data, f.file)
	if err != nil {
		return api.ConfigApplied{}, err
	}
	f.mu.Lock()
	f.cfg = c
	f.loads++
	f.mu.Unlock()
	return api.ConfigApplied{Persisted: true, File: f.file}, nil
}

// edit replaces the running configuration's source as an operator's
// reload would.
func (f *fakeEngine) edit(t *testing.T, src string) {
	t.Helper()
	c, err := config.Parse([]byte(src), f.file)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.cfg = c
	f.mu.Unlock()
}

type env struct {
	root string
	port int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	if err := trust.Init(filepath.Join(root, "trust-a"), "a"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		if err := trust.Issue(filepath.Join(root, "trust-a"), d, filepath.Join(root, "trust-"+d)); err != nil {
			t.Fatal(err)
		}
	}
	return &env{root: root, port: freePort(t)}
}

func freePort(t *testing.T) int {
	for p := 30000 + os.Getpid()%3000; p < 60000; p += 11 {
		ok := true
		for _, a := range []string{"127.0.5.1", "127.0.5.2"} {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// src is device self's file: its own local and management sections, and
// the shared rest with pool members members.
func (e *env) src(self, mode, members string) string {
	mgmt := map[string]string{"a": "127.0.0.1:19090", "b": "127.0.0.1:19091", "c": "127.0.0.1:19092"}[self]
	return fmt.Sprintf(`# %s's own file
local: {device: %s, trust_dir: %s}
management: {address: "%s"}
devices:
  a: {ha_addresses: [127.0.5.1]}
  b: {ha_addresses: [127.0.5.2]}
config_sync: {mode: %s, port: %d, interval: 100ms}
pools:
  web:   # the pool
    members: [%s]
virtuals:
  v: {destination: "127.0.0.1:18080", type: tcp, pool: web}
`, self, self, filepath.Join(e.root, "trust-"+self), mgmt, mode, e.port, members)
}

type node struct {
	s      *Syncer
	eng    *fakeEngine
	cancel context.CancelFunc
	done   chan struct{}
}

func (e *env) start(t *testing.T, self, mode, members string) *node {
	t.Helper()
	return e.startSrc(t, self, e.src(self, mode, members))
}

// startSrc starts device self running src (as its file holds it).
func (e *env) startSrc(t *testing.T, self, src string) *node {
	t.Helper()
	file := filepath.Join(e.root, self+".yaml")
	eng := &fakeEngine{file: file}
	eng.edit(t, src)
	st, err := trust.Load(filepath.Join(e.root, "trust-"+self), self, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("device", self)
	}
	s, err := New(Options{Config: eng.Config(), Engine: eng, Trust: st, StatePath: file + ".sync", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{s: s, eng: eng, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(n.done); s.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func waitSync(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func members(n *node) string {
	var out []string
	for _, m := range n.eng.Config().Pools["web"].Members {
		out = append(out, m.Address)
	}
	return strings.Join(out, ",")
}

func TestManualSyncAheadBehindAndLocalSections(t *testing.T) {
	e := newEnv(t)
	one := `{address: "127.0.0.1:9001"}`
	a := e.start(t, "a", "manual", one)
	b := e.start(t, "b", "manual", one)
	waitSync(t, "equal files agree", func() bool {
		sa, sb := a.s.Status(), b.s.Status()
		return sa.Sync == "in-sync" && sb.Sync == "in-sync" && sa.Local.Base == sa.Local.Generation
	})
	gen0 := a.s.Status().Local.Generation
	// An operator adds a member on a.
	two := one + `, {address: "127.0.0.1:9002"}`
	a.eng.edit(t, e.src("a", "manual", two))
	waitSync(t, "a ahead, b behind", func() bool { return a.s.Status().Sync == "ahead" && b.s.Status().Sync == "behind" })
	time.Sleep(300 * time.Millisecond)
	if members(b) != "127.0.0.1:9001" {
		t.Fatal("manual mode synchronised on its own")
	}
	if err := a.s.Push(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if members(b) != "127.0.0.1:9001,127.0.0.1:9002" {
		t.Fatalf("b's pool after the push: %s", members(b))
	}
	// b kept its own sections.
	bc := b.eng.Config()
	if bc.Local.Device != "b" || bc.Management.Address != "127.0.0.1:19091" {
		t.Errorf("b's local sections after the sync: local %+v management %q", bc.Local, bc.Management.Address)
	}
	if !strings.Contains(string(bc.Source), "# the pool") {
		t.Errorf("comments lost in the synchronised file:\n%s", bc.Source)
	}
	waitSync(t, "in sync at a higher generation", func() bool {
		sa, sb := a.s.Status(), b.s.Status()
		return sa.Sync == "in-sync" && sb.Sync == "in-sync" && sb.Local.Generation > gen0 && sb.Local.Generation == sa.Local.Generation && sb.Local.Origin == "a"
	})
}

func TestAutomaticSyncAndCatchUpAfterDowntime(t *testing.T) {
	e := newEnv(t)
	one := `{address: "127.0.0.1:9001"}`
	a := e.start(t, "a", "automatic", one)
	b := e.start(t, "b", "automatic", one)
	waitSync(t, "agree", func() bool { return a.s.Status().Sync == "in-sync" && b.s.Status().Sync == "in-sync" })
	a.eng.edit(t, e.src("a", "automatic", one+`, {address: "127.0.0.1:9002"}`))
	waitSync(t, "automatic push", func() bool { return members(b) == "127.0.0.1:9001,127.0.0.1:9002" })
	// b is down while a changes again; b comes back (its state kept in
	// its .sync file) and catches up.
	b.stop()
	a.eng.edit(t, e.src("a", "automatic", one+`, {address: "127.0.0.1:9003"}`))
	time.Sleep(300 * time.Millisecond)
	if st := a.s.Status(); st.Peer != nil || st.Sync != "unknown" {
		t.Errorf("a with b down: %+v", st)
	}
	// b restarts from the file it had (as its engine saved it).
	b2 := e.startSrc(t, "b", string(b.eng.Config().Source))
	waitSync(t, "catch up after downtime", func() bool { return members(b2) == "127.0.0.1:9001,127.0.0.1:9003" })
	waitSync(t, "in sync", func() bool { return b2.s.Status().Sync == "in-sync" })
}

func TestConflictIsReportedNotOverwritten(t *testing.T) {
	e := newEnv(t)
	one := `{address: "127.0.0.1:9001"}`
	a := e.start(t, "a", "automatic", one)
	b := e.start(t, "b", "automatic", one)
	waitSync(t, "agree", func() bool { return a.s.Status().Sync == "in-sync" && b.s.Status().Sync == "in-sync" })
	// Stop b's loop so the two edits are concurrent, then edit both.
	b.stop()
	a.eng.edit(t, e.src("a", "automatic", one+`, {address: "127.0.0.1:9002"}`))
	time.Sleep(200 * time.Millisecond)
	b2 := e.start(t, "b", "automatic", one+`, {address: "127.0.0.1:9005"}`)
	waitSync(t, "conflict on both", func() bool { return a.s.Status().Sync == "conflict" && b2.s.Status().Sync == "conflict" })
	time.Sleep(300 * time.Millisecond)
	if members(b2) != "127.0.0.1:9001,127.0.0.1:9005" || members(a) != "127.0.0.1:9001,127.0.0.1:9002" {
		t.Fatalf("a conflict was resolved silently: a %s, b %s", members(a), members(b2))
	}
	if err := a.s.Push(context.Background(), false); !errors.Is(err, ErrConflict) {
		t.Fatalf("push into a conflict without force: %v", err)
	}
	// The operator decides: b takes a's configuration.
	if err := b2.s.Pull(context.Background()); err != nil {
		t.Fatal(err)
	}
	if members(b2) != "127.0.0.1:9001,127.0.0.1:9002" {
		t.Fatalf("after from-device: b %s", members(b2))
	}
	waitSync(t, "in sync", func() bool { return a.s.Status().Sync == "in-sync" && b2.s.Status().Sync == "in-sync" })
	// And a forced push resolves the other way.
	b2.stop()
	a.eng.edit(t, e.src("a", "automatic", one))
	b3 := e.start(t, "b", "manual", one+`, {address: "127.0.0.1:9007"}`)
	_ = b3
	waitSync(t, "conflict", func() bool { return a.s.Status().Sync == "conflict" })
	if err := a.s.Push(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if members(b3) != "127.0.0.1:9001" {
		t.Errorf("after a forced push: b %s", members(b3))
	}
}

func TestRefusesUnknownDeviceAndInvalidConfig(t *testing.T) {
	e := newEnv(t)
	one := `{address: "127.0.0.1:9001"}`
	b := e.start(t, "b", "manual", one)
	// c: a certificate of the same CA, not b's peer.
	cst, err := trust.Load(filepath.Join(e.root, "trust-c"), "c", []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	c := &Syncer{peer: "b", peerURL: fmt.Sprintf("https://127.0.5.2:%d", e.port)}
	c.client = newClientFor(cst, "b")
	if _, err := c.fetchStatus(context.Background()); err == nil {
		t.Error("b answered a device that is not its peer")
	}
	// a pushes a configuration b's validator refuses: b keeps its own.
	a := e.start(t, "a", "manual", one)
	waitSync(t, "agree", func() bool { return a.s.Status().Sync == "in-sync" && b.s.Status().Sync == "in-sync" })
	a.eng.edit(t, e.src("a", "manual", one+`, {address: "127.0.0.1:9002"}`))
	bad, _, _ := syncedPart([]byte(strings.Replace(e.src("a", "manual", one), "type: tcp", "type: nosuch", 1)))
	err = a.s.call(context.Background(), "POST", "/sync/v1/push", pushBody{State: State{Device: "a", Generation: 99, Origin: "a"}, YAML: bad, Force: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("an invalid configuration pushed to b: %v", err)
	}
	if members(b) != "127.0.0.1:9001" || b.s.Status().LastError == "" {
		t.Errorf("b after an invalid push: %s, last error %q", members(b), b.s.Status().LastError)
	}
}
