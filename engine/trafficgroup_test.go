package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
)

// haYAML is a device group whose traffic group floats 192.0.2.10 (TEST-NET:
// never configured here; its listener binds with IP_FREEBIND and no
// traffic is sent to it). Virtual "always" is not in any group.
func haYAML(t *testing.T, port int, deadTime string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "heartbeat.key", "a.pem", "a-key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fmtYAML(`
local: {device: a, trust_dir: %s}
devices:
  a: {ha_addresses: [10.255.0.1]}
  b: {ha_addresses: [10.255.0.2]}
failover: {dead_time: %s}
traffic_groups:
  tg1: {addresses: [{address: 192.0.2.10/24, interface: eth0}]}
pools:
  p: {members: [{address: 127.0.0.1:9}]}
virtuals:
  floating: {destination: 192.0.2.10:%d, type: tcp, pool: p}
  always: {destination: 127.0.0.1:%d, type: tcp, pool: p}
`, dir, deadTime, port, port)
}

func TestTrafficGroupLifecycle(t *testing.T) {
	port := freePort(t)
	src := haYAML(t, port, "3s")
	e := startEngine(t, src)
	if e.Listener("always") == nil {
		t.Fatal("a virtual outside any traffic group does not listen")
	}
	if e.Listener("floating") != nil {
		t.Fatal("a traffic group's virtual listens before its group is active here")
	}
	if err := e.SetTrafficGroupActive("tg1", true); err != nil {
		t.Fatal(err)
	}
	l := e.Listener("floating")
	if l == nil || l.Addr().String() != "192.0.2.10:"+strconv.Itoa(port) {
		t.Fatalf("listener after activation: %v", l)
	}
	// A reload that changes no HA setting keeps the listener open.
	cfg, err := config.Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if e.Listener("floating") != l {
		t.Fatal("reload replaced the active group's listener")
	}
	if err := e.SetTrafficGroupActive("tg1", false); err != nil {
		t.Fatal(err)
	}
	if e.Listener("floating") != nil {
		t.Fatal("the virtual still listens with its group standby")
	}
	if e.Listener("always") == nil {
		t.Fatal("standby stopped a virtual outside the group")
	}
	// Changed HA settings are refused on reload, and nothing is applied.
	cfg2, err := config.Parse([]byte(strings.Replace(src, "dead_time: 3s", "dead_time: 5s", 1)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(cfg2); err == nil || !errors.Is(err, api.ErrBadRequest) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload with changed HA settings: %v", err)
	}
	if e.Config().Failover.DeadTime != cfg.Failover.DeadTime {
		t.Fatal("refused reload was applied")
	}
	// Active again after a reload: the plan of the new configuration serves.
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if err := e.SetTrafficGroupActive("tg1", true); err != nil {
		t.Fatal(err)
	}
	if e.Listener("floating") == nil {
		t.Fatal("no listener after re-activation")
	}
}
