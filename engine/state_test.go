package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
)

// syncBuffer is a log sink tests can read while the engine writes.
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

// runFromFile starts an engine the way `fulcrum run -c path` does and
// returns it with a function that stops it.
func runFromFile(t *testing.T, path string, log *slog.Logger) (*Engine, func()) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = testLogger(t)
	}
	e := New(Options{Log: log, ConfigPath: path})
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Close(ctx)
	}
	t.Cleanup(stop)
	return e, stop
}

func stateOf(t *testing.T, e *Engine, pool, member string) string {
	t.Helper()
	for _, p := range e.Pools() {
		if p.Name != pool {
			continue
		}
		for _, m := range p.Members {
			if m.Address == member {
				return m.State
			}
		}
	}
	t.Fatalf("member %s of pool %s not found", member, pool)
	return ""
}

// statesYAML is a configuration with one pool of three members and no
// listener (a pool alone is enough: states are a pool matter). extra is
// appended to the third member.
func statesYAML(third string) string {
	return "management:\n  address: \"off\"\npools:\n  web:\n    members:\n" +
		"      - address: 127.0.0.1:1\n      - address: 127.0.0.1:2\n      - address: 127.0.0.1:3\n" + third
}

func TestMemberStatesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fulcrum.yaml")
	if err := os.WriteFile(path, []byte(statesYAML("")), 0o600); err != nil {
		t.Fatal(err)
	}
	e, stop := runFromFile(t, path, nil)
	for m, st := range map[string]string{"127.0.0.1:1": "disabled", "127.0.0.1:2": "forced-offline", "127.0.0.1:3": "disabled"} {
		if err := e.SetMemberState("web", m, st); err != nil {
			t.Fatal(err)
		}
	}
	// Back to the configured state: nothing left to remember for :3.
	if err := e.SetMemberState("web", "127.0.0.1:3", "enabled"); err != nil {
		t.Fatal(err)
	}
	stop()
	data, err := os.ReadFile(path + ".state")
	if err != nil {
		t.Fatalf("no state file beside the configuration: %v", err)
	}
	if strings.Contains(string(data), "127.0.0.1:3") {
		t.Errorf("state file remembers a member back at its configured state:\n%s", data)
	}

	// A new engine on the same configuration: the states are back.
	e2, stop2 := runFromFile(t, path, nil)
	for m, want := range map[string]string{"127.0.0.1:1": "disabled", "127.0.0.1:2": "forced-offline", "127.0.0.1:3": "enabled"} {
		if got := stateOf(t, e2, "web", m); got != want {
			t.Errorf("after restart %s is %s, want %s", m, got, want)
		}
	}
	stop2()

	// The file is edited: :2 is removed, :1 gets a configured state. The
	// configuration wins for :1, :2's record is dropped, and the state file
	// is rewritten without them.
	edited := strings.Replace(statesYAML(""), "      - address: 127.0.0.1:2\n", "", 1)
	edited = strings.Replace(edited, "      - address: 127.0.0.1:1\n", "      - address: 127.0.0.1:1\n        state: forced-offline\n", 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	e3, _ := runFromFile(t, path, nil)
	if got := stateOf(t, e3, "web", "127.0.0.1:1"); got != "forced-offline" {
		t.Errorf("edited configuration did not win: %s", got)
	}
	data, _ = os.ReadFile(path + ".state")
	if strings.Contains(string(data), "127.0.0.1:") {
		t.Errorf("stale records kept:\n%s", data)
	}
}

// TestMemberStateSurvivesReloadThatKeepsIt: a reload that does not touch a
// member keeps its runtime state and its record.
func TestMemberStateSurvivesReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.yaml")
	os.WriteFile(path, []byte(statesYAML("")), 0o600)
	e, _ := runFromFile(t, path, nil)
	if err := e.SetMemberState("web", "127.0.0.1:2", "disabled"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(statesYAML("        ratio: 3\n")), 0o600)
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, e, "web", "127.0.0.1:2"); got != "disabled" {
		t.Errorf("after reload: %s", got)
	}
	if data, _ := os.ReadFile(path + ".state"); !strings.Contains(string(data), `"127.0.0.1:2"`) {
		t.Errorf("reload dropped the record:\n%s", data)
	}
}

func TestCorruptStateFileIsIgnored(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fulcrum.yaml")
	os.WriteFile(path, []byte(statesYAML("")), 0o600)
	os.WriteFile(path+".state", []byte("{not json"), 0o600)
	var logs syncBuffer
	e, _ := runFromFile(t, path, slog.New(slog.NewTextHandler(&logs, nil)))
	if got := stateOf(t, e, "web", "127.0.0.1:1"); got != "enabled" {
		t.Errorf("state %s", got)
	}
	if !strings.Contains(logs.String(), "member state file ignored") {
		t.Errorf("corrupt state file not logged:\n%s", logs.String())
	}
	if _, err := os.Stat(path + ".state.corrupt"); err != nil {
		t.Errorf("corrupt file not kept aside: %v", err)
	}
	// The next change writes a good file.
	if err := e.SetMemberState("web", "127.0.0.1:1", "disabled"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path + ".state"); !strings.Contains(string(data), `"disabled"`) {
		t.Errorf("state file after a change:\n%s", data)
	}

	// An unreadable state path (a directory) does not prevent a start either.
	path2 := filepath.Join(dir, "other.yaml")
	os.WriteFile(path2, []byte(statesYAML("")), 0o600)
	os.Mkdir(path2+".state", 0o700)
	runFromFile(t, path2, nil)
}

func TestStatePathChoice(t *testing.T) {
	for _, tc := range []struct{ explicit, configured, file, want string }{
		{"", "", "/etc/f.yaml", "/etc/f.yaml.state"},
		{"", "/var/lib/f.state", "/etc/f.yaml", "/var/lib/f.state"},
		{"/run/x", "/var/lib/f.state", "/etc/f.yaml", "/run/x"},
		{"", "off", "/etc/f.yaml", ""},
		{"off", "/var/lib/f.state", "/etc/f.yaml", ""},
		{"", "", "", ""},
	} {
		if got := statePath(tc.explicit, tc.configured, tc.file); got != tc.want {
			t.Errorf("statePath(%q, %q, %q) = %q, want %q", tc.explicit, tc.configured, tc.file, got, tc.want)
		}
	}
}

func TestLoadConfigPersists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fulcrum.yaml")
	old := statesYAML("")
	os.WriteFile(path, []byte(old), 0o640)
	e, _ := runFromFile(t, path, nil)

	next := "# posted\n" + statesYAML("        ratio: 2\n")
	res, err := e.LoadConfig([]byte(next))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Persisted || res.File != path || res.Backup != path+".bak" {
		t.Fatalf("result %+v", res)
	}
	if got, _ := os.ReadFile(path); string(got) != next {
		t.Errorf("file holds %q, want the posted configuration", got)
	}
	if got, _ := os.ReadFile(path + ".bak"); string(got) != old {
		t.Errorf("backup holds %q, want the old file", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v, want the old file's 0640", fi.Mode().Perm())
	}
	src, err := e.RunningConfig()
	if err != nil || string(src.YAML) != next || src.File != path {
		t.Errorf("RunningConfig = %q (%q), %v", src.YAML, src.File, err)
	}
	// A reload now reads what the API applied.
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if src, _ := e.RunningConfig(); string(src.YAML) != next {
		t.Errorf("after reload: %q", src.YAML)
	}

	// A rejected configuration changes neither the engine nor the file.
	if _, err := e.LoadConfig([]byte("pools: {web: {members: [{address: nope}]}}")); !errors.Is(err, api.ErrBadRequest) {
		t.Fatalf("bad configuration: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != next {
		t.Error("a rejected configuration touched the file")
	}
	// The placeholder GET /api/v1/config shows for a secret is refused.
	_, err = e.LoadConfig([]byte("management:\n  address: \"off\"\n  token: \"" + api.Redacted + "\"\n"))
	if !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "management.token") {
		t.Errorf("redacted token accepted: %v", err)
	}
}

func TestLoadConfigRuntimeOnly(t *testing.T) {
	e := startEngine(t, statesYAML(""))
	res, err := e.LoadConfig([]byte(statesYAML("        ratio: 2\n")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Persisted || !strings.Contains(res.Reason, "not started from a configuration file") {
		t.Errorf("result %+v", res)
	}
	if src, err := e.RunningConfig(); err != nil || src.File != "" || !strings.Contains(string(src.YAML), "ratio: 2") {
		t.Errorf("RunningConfig = %+v, %v", src, err)
	}
}

func TestLoadConfigSaveFailureIsReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fulcrum.yaml")
	os.WriteFile(path, []byte(statesYAML("")), 0o600)
	e, _ := runFromFile(t, path, nil)
	// A directory where the backup must go makes the save fail.
	if err := os.Mkdir(path+".bak", 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(path+".bak", "x"), nil, 0o600)
	res, err := e.LoadConfig([]byte(statesYAML("        ratio: 2\n")))
	if err != nil {
		t.Fatal(err)
	}
	if res.Persisted || res.Reason == "" {
		t.Errorf("result %+v, want not persisted with a reason", res)
	}
	if got, _ := os.ReadFile(path); string(got) != statesYAML("") {
		t.Error("the file changed although the backup could not be kept")
	}
}

func TestKillConnectionAndDeletePersistence(t *testing.T) {
	m1, _ := echoServer(t, "one")
	port := freePort(t)
	e := startEngine(t, tcpVirtualYAML(port, "    persistence: source_addr\n", m1))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, br := dialLine(t, addr)
	if got := roundTrip(t, c, br, "hi"); got != "one:hi" {
		t.Fatalf("echo %q", got)
	}
	conns := e.Connections(api.ConnQuery{Virtual: "vs_tcp"})
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	if err := e.KillConnection(conns[0].ID); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client connection still open after the reset: %v", err)
	}
	waitFor(t, "connection table empty", 3*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
	if err := e.KillConnection(conns[0].ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second reset: %v", err)
	}

	recs := e.Persistence(api.PersistQuery{})
	if len(recs) != 1 {
		t.Fatalf("%d persistence records", len(recs))
	}
	if got := e.Persistence(api.PersistQuery{Member: m1}); len(got) != 1 {
		t.Errorf("member filter found %d", len(got))
	}
	if n, err := e.DeletePersistence(api.PersistDelete{Key: recs[0].Key}); err != nil || n != 1 {
		t.Fatalf("delete by key: %d, %v", n, err)
	}
	if _, err := e.DeletePersistence(api.PersistDelete{Key: recs[0].Key}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	// A new connection persists again; delete it by filter.
	c2, br2 := dialLine(t, addr)
	roundTrip(t, c2, br2, "again")
	if n, err := e.DeletePersistence(api.PersistDelete{Pool: "echo", Member: m1}); err != nil || n != 1 {
		t.Fatalf("delete by filter: %d, %v", n, err)
	}
	if _, err := e.DeletePersistence(api.PersistDelete{}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("unfiltered delete without all: %v", err)
	}
}

// TestAPIWritesEndToEnd drives the engine through the real API handler and
// client: a connection reset over HTTP reaches the client's socket, a
// member state set over HTTP is in the state file, and GET /api/v1/config
// hides the token.
func TestAPIWritesEndToEnd(t *testing.T) {
	m1, _ := echoServer(t, "one")
	port := freePort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "f.yaml")
	yml := strings.Replace(tcpVirtualYAML(port, "", m1), "management:\n  address: \"off\"\n",
		"management:\n  address: \"off\"\n  token: tok-123\n", 1)
	os.WriteFile(path, []byte(yml), 0o600)
	e, _ := runFromFile(t, path, nil)
	srv := httptest.NewServer(api.NewHandler(e, e.Metrics(), api.Options{Token: "tok-123"}))
	defer srv.Close()
	cl := &api.Client{Base: srv.URL, Token: "tok-123"}
	ctx := context.Background()

	c, br := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port))
	roundTrip(t, c, br, "hi")
	conns, err := cl.Connections(ctx, api.ConnQuery{})
	if err != nil || len(conns) != 1 {
		t.Fatalf("connections: %v, %v", conns, err)
	}
	if err := cl.KillConnection(ctx, conns[0].ID); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client still connected after DELETE: %v", err)
	}

	if err := cl.SetMemberState(ctx, "echo", m1, "force-offline"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path + ".state"); !strings.Contains(string(data), `"forced-offline"`) {
		t.Errorf("state file:\n%s", data)
	}
	y, err := cl.RunningConfig(ctx)
	if err != nil || strings.Contains(string(y), "tok-123") || !strings.Contains(string(y), api.Redacted) {
		t.Errorf("GET config: %v\n%s", err, y)
	}
	// Posting the redacted configuration back is refused, the file untouched.
	if _, err := cl.LoadConfig(ctx, y); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("redacted configuration accepted: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != yml {
		t.Error("file changed")
	}
}
