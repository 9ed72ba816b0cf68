package engine

import (
	"context"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// Networks are created, changed, refused and removed as the configuration
// says, inside a namespace of the test's own; what is not Fulcrum's is
// never touched.
func TestNetworkLifecycle(t *testing.T) {
	ns := testnet.TempNS(t, "engnet")
	ip := func(args ...string) string {
		t.Helper()
		out, err := ns.Run(context.Background(), "ip", args...)
		if err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
		return string(out)
	}
	peer := testnet.TempNS(t, "engnetp")
	if err := testnet.AddVeth(ns, "eth1", peer, "eth0", testnet.VethOptions{}); err != nil {
		t.Fatal(err)
	}
	ip("link", "set", "eth1", "up")
	ip("addr", "add", "10.99.0.1/24", "dev", "eth1")
	ip("link", "add", "taken", "type", "bridge") // someone else's
	ip("link", "add", "stale", "type", "bridge") // an earlier run's leftover
	ip("link", "set", "stale", "alias", "fulcrum:vlan_groups.old")
	parse := func(src string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(src), "net.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	full := `
vlans:
  servers: {interface: eth1}
tunnels:
  t1: {type: etherip, local_address: 10.99.0.1, remote_address: 10.99.0.2}
vlan_groups:
  vms: {members: [servers, t1]}
self_ips:
  s: {address: 10.10.0.5/24, vlan: vms}
`
	e := New(Options{Log: testLogger(t)})
	apply := func(cfg *config.Config) (err error) {
		ns.Do(func() error {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v\n%s", r, debug.Stack())
				}
			}()
			err = e.Apply(cfg)
			return nil
		})
		return err
	}
	if err := apply(parse(full)); err != nil {
		t.Fatal(err)
	}
	links := ip("-d", "link", "show")
	for _, want := range []string{"vms: ", "alias fulcrum:vlan_groups.vms", "t1: ", "taken: "} {
		if !strings.Contains(links, want) {
			t.Errorf("after the first apply, links lack %q:\n%s", want, links)
		}
	}
	if strings.Contains(links, "stale") {
		t.Errorf("the earlier run's bridge was not removed:\n%s", links)
	}
	for _, port := range []string{"eth1", "t1"} {
		if out := ip("link", "show", port); !strings.Contains(out, "master vms") {
			t.Errorf("%s is not in the bridge: %s", port, out)
		}
	}
	if out := ip("addr", "show", "vms"); !strings.Contains(out, "10.10.0.5/24") {
		t.Errorf("self IP: %s", out)
	}
	if ts := e.Tunnels(); len(ts) != 1 || ts[0].Name != "t1" || ts[0].Group != "vms" || ts[0].MTU != 1464 || ts[0].Local != "10.99.0.1" {
		t.Errorf("Tunnels() = %+v", ts)
	}

	// A bridge name that is someone else's: refused with where, and the
	// running networks stay.
	bad := strings.Replace(full, "vms: {members: [servers, t1]}", "vms: {members: [servers, t1], bridge: taken}", 1)
	err := apply(parse(bad))
	if err == nil || !strings.Contains(err.Error(), "net.yaml:") || !strings.Contains(err.Error(), "vlan_groups.vms") ||
		!strings.Contains(err.Error(), "exists and is not Fulcrum's") || !strings.Contains(err.Error(), "running configuration is unchanged") {
		t.Fatalf("foreign bridge: %v", err)
	}
	if out := ip("link", "show", "t1"); !strings.Contains(out, "master vms") {
		t.Errorf("after the refused apply the tunnel is not in its bridge: %s", out)
	}

	// The tunnel leaves the configuration: its interface goes, the rest stays.
	noTunnel := strings.Replace(strings.Replace(full, "  t1: {type: etherip, local_address: 10.99.0.1, remote_address: 10.99.0.2}\n", "", 1),
		"members: [servers, t1]", "members: [servers]", 1)
	noTunnel = strings.Replace(noTunnel, "tunnels:\n", "", 1)
	if err := apply(parse(noTunnel)); err != nil {
		t.Fatal(err)
	}
	if out := ip("link", "show"); strings.Contains(out, "t1: ") || !strings.Contains(out, "vms: ") {
		t.Errorf("after removing the tunnel:\n%s", out)
	}
	if len(e.Tunnels()) != 0 {
		t.Errorf("Tunnels() = %+v", e.Tunnels())
	}

	// No networks: the bridge goes, eth1 (adopted, not created) stays,
	// released from it.
	if err := apply(parse("pools:\n  p:\n    members: [{address: 127.0.0.1:1}]\n")); err != nil {
		t.Fatal(err)
	}
	out := ip("link", "show")
	if strings.Contains(out, "vms: ") || !strings.Contains(out, " eth1@") || strings.Contains(ip("link", "show", "eth1"), "master") || !strings.Contains(out, "taken: ") {
		t.Errorf("after removing every network:\n%s", out)
	}

	// Close removes what is Fulcrum's.
	if err := apply(parse(full)); err != nil {
		t.Fatal(err)
	}
	ns.Do(func() error { e.Close(context.Background()); return nil })
	out = ip("link", "show")
	if strings.Contains(out, "vms: ") || strings.Contains(out, "t1: ") || !strings.Contains(out, " eth1@") || !strings.Contains(out, "taken: ") {
		t.Errorf("after Close:\n%s", out)
	}
	if strings.Contains(ip("addr", "show", "eth1"), "10.10.0.5") {
		t.Error("self IP left behind")
	}
}
