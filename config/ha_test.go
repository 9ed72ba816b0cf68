package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trustFiles makes a directory holding the device-trust files check looks for.
func trustFiles(t *testing.T, devices ...string) string {
	t.Helper()
	dir := t.TempDir()
	files := []string{"ca.pem", "heartbeat.key"}
	for _, d := range devices {
		files = append(files, d+".pem", d+"-key.pem")
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const haBase = `
devices:
  a: {ha_addresses: [10.0.0.1, 192.168.0.1]}
  b: {ha_addresses: [10.0.0.2, 192.168.0.2]}
traffic_groups:
  tg1:
    addresses: [{address: 10.0.0.100/24, interface: eth0}, {address: "2001:db8::100/64", interface: eth0}]
pools:
  p: {members: [{address: 10.0.1.1:80}]}
virtuals:
  v: {destination: 10.0.0.100:80, type: tcp, pool: p}
  w: {destination: 10.0.0.1:81, type: tcp, pool: p}
`

func TestHAConfigDefaultsAndMembership(t *testing.T) {
	t.Parallel()
	dir := trustFiles(t, "a")
	c, err := Parse([]byte("local: {device: a, trust_dir: "+dir+"}\n"+haBase), "ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.HAEnabled() || c.Failover.Port != 1026 || c.Failover.DeadTime != DefaultDeadTime || c.Failover.Interval != DefaultHeartbeatInterval ||
		c.Failover.GARPCount != 5 || c.Failover.MirrorPort != 1029 {
		t.Errorf("failover defaults: %+v", c.Failover)
	}
	tg := c.TrafficGroups["tg1"]
	if strings.Join(tg.HAOrder, ",") != "a,b" || tg.AutoFailback || tg.FailbackDelay != DefaultFailbackDelay || len(tg.Prefixes) != 2 {
		t.Errorf("traffic group: %+v", tg)
	}
	if c.Virtuals["v"].TrafficGroup != "tg1" || c.Virtuals["w"].TrafficGroup != "" {
		t.Errorf("virtual membership: v %q w %q", c.Virtuals["v"].TrafficGroup, c.Virtuals["w"].TrafficGroup)
	}
}

func TestHAConfigErrors(t *testing.T) {
	t.Parallel()
	dir := trustFiles(t, "a")
	local := "local: {device: a, trust_dir: " + dir + "}\n"
	cases := []struct{ name, src, want string }{
		{"nine devices", local + strings.Replace(haBase, "devices:\n", "devices:\n  c: {ha_addresses: [10.0.0.3, 192.168.0.3]}\n  d: {ha_addresses: [10.0.0.4, 192.168.0.4]}\n  e: {ha_addresses: [10.0.0.5, 192.168.0.5]}\n  f: {ha_addresses: [10.0.0.6, 192.168.0.6]}\n  g: {ha_addresses: [10.0.0.7, 192.168.0.7]}\n  h: {ha_addresses: [10.0.0.8, 192.168.0.8]}\n  i: {ha_addresses: [10.0.0.9, 192.168.0.9]}\n", 1),
			"devices: a device group has at most 8 devices (has 9)"},
		{"three devices, mirroring without addresses", local + "profiles: {persistence: {s: {type: source_addr, mirror: true}}}\n" + strings.Replace(haBase, "devices:\n", "devices:\n  c: {ha_addresses: [10.0.0.3, 192.168.0.3]}\n", 1),
			"mirror: true needs mirror_addresses on every device"},
		{"three devices, dead time too short", local + "failover: {interval: 1ms, dead_time: 10ms}\n" + strings.Replace(haBase, "devices:\n", "devices:\n  c: {ha_addresses: [10.0.0.3, 192.168.0.3]}\n", 1),
			"with 3 devices dead_time must be at least 20ms"},
		{"no local", haBase, "local.device: local.device is required"},
		{"unknown local", "local: {device: zz, trust_dir: " + dir + "}\n" + haBase, `local.device: device "zz" does not exist`},
		{"trust files missing", "local: {device: b, trust_dir: " + dir + "}\n" + haBase, "b.pem"},
		{"no trust dir", "local: {device: a}\n" + haBase, "local.trust_dir is required"},
		{"path count", local + strings.Replace(haBase, "[10.0.0.2, 192.168.0.2]", "[10.0.0.2]", 1), "same number of ha_addresses"},
		{"family", local + strings.Replace(haBase, "[10.0.0.2, 192.168.0.2]", "[10.0.0.2, \"fd00::2\"]", 1), "mixes IPv4 and IPv6"},
		{"dup HA address", local + strings.Replace(haBase, "[10.0.0.2, 192.168.0.2]", "[10.0.0.1, 192.168.0.2]", 1), "also an HA address of a"},
		{"dead time", local + "failover: {interval: 1s, dead_time: 1500ms}\n" + haBase, "at least twice the heartbeat interval"},
		{"tiny interval", local + "failover: {interval: 100us, dead_time: 1s}\n" + haBase, "at least 1ms"},
		{"garp", local + "failover: {garp_count: 0}\n" + haBase, "garp_count must be 1 to 100"},
		{"bad prefix", local + strings.Replace(haBase, "10.0.0.100/24", "10.0.0.100", 1), "is not IP/PREFIXLEN"},
		{"loopback", local + strings.Replace(haBase, "10.0.0.100/24", "127.0.0.5/8", 1), "cannot float"},
		{"HA address floats", local + strings.Replace(haBase, "10.0.0.100/24", "10.0.0.2/24", 1), "HA address of device b"},
		{"no interface", local + strings.Replace(haBase, "interface: eth0}, {", "interface: \"\"}, {", 1), "interface is required"},
		{"order", local + strings.Replace(haBase, "interface: eth0}]\n", "interface: eth0}]\n    ha_order: [a, zz, a]\n", 1), `device "zz" does not exist`},
		{"order dup", local + strings.Replace(haBase, "interface: eth0}]\n", "interface: eth0}]\n    ha_order: [a, a]\n", 1), "listed twice"},
		{"groups without devices", "traffic_groups:\n  t: {addresses: [{address: 10.0.0.9/24, interface: eth0}]}\n", "traffic groups need a device group"},
		{"local without devices", "local: {device: a}\n", "no devices are defined"},
		{"virtual key", local + strings.Replace(haBase, "type: tcp, pool: p}\n  w", "type: tcp, pool: p, traffic_group: tg1}\n  w", 1), "not set by a key"},
		{"mirror without mirror addresses", local + "profiles: {persistence: {s: {type: source_addr, mirror: true}}}\n" + haBase,
			"profiles.persistence.s.mirror: mirror: true needs mirror_addresses on every device; devices.a has none"},
		{"mirror a cookie", local + "profiles: {persistence: {s: {type: cookie_insert, mirror: true}}}\n" + haBase, "cookie_insert keeps no records"},
		{"mirror without a device group", "profiles: {persistence: {s: {type: universal, key: uri, mirror: true}}}\n", "needs a device group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "ha.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestHAMirrorAddressesAccepted(t *testing.T) {
	t.Parallel()
	dir := trustFiles(t, "a")
	src := "local: {device: a, trust_dir: " + dir + "}\nprofiles: {persistence: {s: {type: source_addr, mirror: true}}}\n" +
		strings.NewReplacer("[10.0.0.1, 192.168.0.1]}", "[10.0.0.1, 192.168.0.1], mirror_addresses: [10.0.0.1]}",
			"[10.0.0.2, 192.168.0.2]}", "[10.0.0.2, 192.168.0.2], mirror_addresses: [10.0.0.2, 192.168.0.2]}").Replace(haBase)
	c, err := Parse([]byte(src), "ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Profiles.Persistence["s"].Mirror || len(c.Devices["b"].MirrorAddresses) != 2 {
		t.Errorf("mirror settings not kept: %+v %+v", c.Profiles.Persistence["s"], c.Devices["b"])
	}
}

func TestHAThreeDevicesAccepted(t *testing.T) {
	t.Parallel()
	dir := trustFiles(t, "a")
	src := "local: {device: a, trust_dir: " + dir + "}\n" + strings.Replace(haBase, "devices:\n", "devices:\n  c: {ha_addresses: [10.0.0.3, 192.168.0.3]}\n", 1)
	c, err := Parse([]byte(src), "ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Devices) != 3 || strings.Join(c.TrafficGroups["tg1"].HAOrder, ",") != "a,b,c" {
		t.Errorf("three devices: %d devices, ha_order %v", len(c.Devices), c.TrafficGroups["tg1"].HAOrder)
	}
}

// TestConnectionMirrorChecks: mirror: true on a virtual is accepted only
// where the connection can really go on after failover, and each refusal
// says why.
func TestConnectionMirrorChecks(t *testing.T) {
	t.Parallel()
	dir := trustFiles(t, "a")
	base := "local: {device: a, trust_dir: " + dir + "}\n" +
		"snat_pools:\n  fl: {addresses: [10.0.0.101]}\n  own: {addresses: [10.0.0.1]}\n" +
		strings.NewReplacer("[10.0.0.1, 192.168.0.1]}", "[10.0.0.1, 192.168.0.1], mirror_addresses: [10.0.0.1]}",
			"[10.0.0.2, 192.168.0.2]}", "[10.0.0.2, 192.168.0.2], mirror_addresses: [10.0.0.2]}",
			"{address: 10.0.0.100/24, interface: eth0}", "{address: 10.0.0.100/24, interface: eth0}, {address: 10.0.0.101/24, interface: eth0}").Replace(haBase)
	good := base + "  m: {destination: 10.0.0.100:90, type: tcp, pool: p, snat: fl, mirror: true}\n  mu: {destination: 10.0.0.100:91, type: udp, pool: p, snat: fl, mirror: true}\n" +
		"  mh: {destination: 10.0.0.100:92, type: http, pool: p, snat: fl, mirror: true}\n"
	c, err := Parse([]byte(good), "ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Virtuals["m"].Mirror || !c.Virtuals["mu"].Mirror || !c.Virtuals["mh"].Mirror {
		t.Error("mirror not kept")
	}
	cases := []struct{ name, vs, want string }{
		{"automap", "{destination: 10.0.0.100:90, type: tcp, pool: p, mirror: true}", "with automap the server-side connection comes from this device's own address"},
		{"snat none", "{destination: 10.0.0.100:90, type: tcp, pool: p, snat: none, mirror: true}", "with snat none"},
		{"snat not floating", "{destination: 10.0.0.100:90, type: tcp, pool: p, snat: own, mirror: true}", "SNAT pool own's address 10.0.0.1 is not a floating address"},
		{"not floating", "{destination: 10.0.0.1:90, type: tcp, pool: p, snat: fl, mirror: true}", "needs a destination that is a floating address"},
		{"tls", "{destination: 10.0.0.100:90, type: tcp, pool: p, snat: fl, client_ssl: x, mirror: true}", "TLS-terminated connections cannot be mirrored"},
		{"udp automap", "{destination: 10.0.0.100:90, type: udp, pool: p, mirror: true}", "with automap the server-side connection"},
		{"https", "{destination: 10.0.0.100:90, type: http, pool: p, snat: fl, client_ssl: x, mirror: true}", "TLS-terminated connections cannot be mirrored"},
		{"http automap", "{destination: 10.0.0.100:90, type: http, pool: p, mirror: true}", "with automap the server-side connection"},
		{"fastl4", "{destination: 10.0.0.100:90, type: fastl4, pool: p, snat: fl, mirror: true}", "mirroring fastl4 virtuals is not built yet"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(base+"  m: "+tc.vs+"\n"), "ha.yaml")
		if err == nil || !strings.Contains(err.Error(), "virtuals.m.mirror: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want error containing %q, got %v", tc.name, tc.want, err)
		}
	}
	if _, err := Parse([]byte("pools:\n  p: {members: [{address: 10.0.1.1:80}]}\nvirtuals:\n  m: {destination: 127.0.0.1:90, type: tcp, pool: p, mirror: true}\n"), "f.yaml"); err == nil ||
		!strings.Contains(err.Error(), "virtuals.m.mirror: mirror: true needs a device group") {
		t.Errorf("mirror without a device group: %v", err)
	}
}
