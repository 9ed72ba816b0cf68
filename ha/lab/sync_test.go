package lab

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/configsync"
)

// syncStatus is device n's GET /api/v1/sync.
func (l *lab) syncStatus(n string) (*configsync.Status, error) {
	resp, err := l.devs[n].api.Get("http://127.0.0.1:9090/api/v1/sync")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st configsync.Status
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// runningConfig is device n's GET /api/v1/config.
func (l *lab) runningConfig(n string) string {
	resp, err := l.devs[n].api.Get("http://127.0.0.1:9090/api/v1/config")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			return b.String()
		}
	}
}

// addVirtual appends a virtual server to device n's file and reloads it.
func (l *lab) addVirtual(t *testing.T, n, name, port string) {
	t.Helper()
	d := l.devs[n]
	b, err := os.ReadFile(d.config)
	must(t, err)
	src := string(b) + "  " + name + `: {destination: "` + vip.String() + ":" + port + `", type: tcp, pool: p}` + "\n"
	must(t, os.WriteFile(d.config, []byte(src), 0o600))
	l.signal(n, syscall.SIGHUP)
}

// TestConfigSync: with automatic sync, a change reloaded on one device
// appears on the other with a higher generation, saved to its file with
// its own local section kept; a device that was down during a change
// catches up when it returns.
func TestConfigSync(t *testing.T) {
	t.Parallel()
	l := newLab(t, "hc", ciSettings, "config_sync: {mode: automatic, interval: 200ms}\n")
	l.start("a")
	l.start("b")
	var st *configsync.Status
	if !eventually(5*time.Second, func() bool {
		var err error
		st, err = l.syncStatus("b")
		return err == nil && st.Sync == "in-sync"
	}) {
		t.Fatalf("identical files not in sync: %+v", st)
	}
	gen0 := st.Local.Generation
	l.addVirtual(t, "a", "w", "81")
	if !eventually(5*time.Second, func() bool { return strings.Contains(l.runningConfig("b"), "w: {destination") }) {
		t.Fatalf("b did not get a's change:\n%s", l.runningConfig("b"))
	}
	running := l.runningConfig("b")
	if !strings.Contains(running, "device: b") || strings.Contains(running, "device: a,") {
		t.Errorf("b's own local section was not kept:\n%s", running)
	}
	if !eventually(2*time.Second, func() bool {
		saved, _ := os.ReadFile(l.devs["b"].config)
		return strings.Contains(string(saved), "w: {destination")
	}) {
		t.Error("the synchronised configuration was not saved to b's file")
	}
	if !eventually(3*time.Second, func() bool {
		st, _ = l.syncStatus("b")
		return st != nil && st.Sync == "in-sync" && st.Local.Generation > gen0 && st.Local.Origin == "a"
	}) {
		t.Errorf("b after the sync: %+v", st)
	}
	// b is down while a changes; it catches up on return.
	l.signal("b", syscall.SIGTERM)
	if !l.exited("b", 15*time.Second) {
		t.Fatal("b did not stop")
	}
	l.addVirtual(t, "a", "x", "82")
	time.Sleep(500 * time.Millisecond)
	if sa, err := l.syncStatus("a"); err != nil || sa.Sync != "unknown" {
		t.Errorf("a with b down: %+v %v", sa, err)
	}
	l.start("b")
	if !eventually(5*time.Second, func() bool { return strings.Contains(l.runningConfig("b"), "x: {destination") }) {
		t.Fatalf("b did not catch up after its downtime:\n%s", l.runningConfig("b"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.devs["b"].ns.Command(ctx, binary, "show", "sync", "-api", "127.0.0.1:9090").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "in sync") {
		t.Errorf("fulcrum show sync on b: %v\n%s", err, out)
	}
}
