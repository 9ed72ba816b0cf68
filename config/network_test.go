package config

import (
	"strings"
	"testing"
)

const networkSrc = `
vlans:
  servers: {interface: eth1}
  tagged: {interface: eth2, tag: 100, mtu: 1400}
tunnels:
  dc2: {type: etherip, local_address: 198.51.100.1, remote_address: 203.0.113.1}
  dc3v6: {type: etherip, local_address: "2001:db8::1", remote_address: "2001:db8::3", interface: eip3}
vlan_groups:
  vm: {members: [servers, dc2]}
self_ips:
  vm-self: {address: 10.10.0.5/24, vlan: vm}
  tag-self: {address: 10.20.0.5/24, vlan: tagged}
monitors:
  vloc: {type: virtual_location, interval: 2s}
pools:
  app:
    monitors: [vloc, tcp]
    min_active_members: 1
    members: [{address: 10.10.0.10:80}, {address: 10.10.0.11:80}]
`

func TestNetworkDefaults(t *testing.T) {
	c := mustParse(t, networkSrc)
	dc2 := c.Tunnels["dc2"]
	if dc2.Interface != "dc2" || dc2.OuterMTU != 1500 || dc2.MTU != 1464 || !*dc2.MSSClamp || dc2.Fragment || !dc2.Local.Is4() {
		t.Errorf("dc2 defaults %+v", dc2)
	}
	if v6 := c.Tunnels["dc3v6"]; v6.MTU != 1444 || v6.Interface != "eip3" {
		t.Errorf("IPv6 tunnel MTU %d, interface %s", v6.MTU, v6.Interface)
	}
	if g := c.VLANGroups["vm"]; g.Bridge != "vm" || g.Mode != "transparent" {
		t.Errorf("group defaults %+v", g)
	}
	for name, want := range map[string]string{"servers": "eth1", "tagged": "tagged", "vm": "vm", "nope": ""} {
		if got := c.IfName(name); got != want {
			t.Errorf("IfName(%s) = %q, want %q", name, got, want)
		}
	}
	if c.SelfIPs["vm-self"].Prefix.String() != "10.10.0.5/24" {
		t.Errorf("self IP prefix %v", c.SelfIPs["vm-self"].Prefix)
	}
	if c.Monitors[BuiltinVirtualLocation] == nil {
		t.Error("no built-in virtual_location monitor")
	}
	for _, n := range c.Notices {
		if strings.Contains(n, "min_active_members") {
			t.Errorf("unexpected notice %s", n)
		}
	}
}

func TestNetworkErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"vlan without interface", "vlans:\n  v: {tag: 5}\n", "vlans.v.interface: a VLAN needs interface"},
		{"bad tag", "vlans:\n  v: {interface: eth1, tag: 4095}\n", "tag must be 1 to 4094"},
		{"long tagged name", "vlans:\n  averyveryverylongname: {interface: eth1, tag: 5}\n", "sub-interface is named after it"},
		{"mtu on adopted", "vlans:\n  v: {interface: eth1, mtu: 1400}\n", "mtu is set only on a tagged sub-interface"},
		{"tunnel type", "tunnels:\n  t: {type: gre, local_address: 10.0.0.1, remote_address: 10.0.0.2}\n", "tunnel type gre is not built"},
		{"tunnel families", "tunnels:\n  t: {type: etherip, local_address: 10.0.0.1, remote_address: \"2001:db8::2\"}\n", "must be of one family"},
		{"tunnel to itself", "tunnels:\n  t: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.1}\n", "loop to itself"},
		{"tunnel bad address", "tunnels:\n  t: {type: etherip, local_address: nowhere, remote_address: 10.0.0.1}\n", "local_address \"nowhere\" is not an IP address"},
		{"mtu too big", "tunnels:\n  t: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.2, mtu: 1500}\n", "mtu 1500 does not fit in one outer packet of 1500 (at most 1464)"},
		{"parallel tunnels", "tunnels:\n  a: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.2}\n  b: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.2}\n", "have the same local and remote addresses"},
		{"two tunnels no stp", "vlans:\n  v: {interface: eth1}\ntunnels:\n  a: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.2}\n  b: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.3}\nvlan_groups:\n  g: {members: [v, a, b]}\n", "set stp: true"},
		{"member twice", "vlans:\n  v: {interface: eth1}\nvlan_groups:\n  g: {members: [v]}\n  h: {members: [v]}\n", "already a member of VLAN group g"},
		{"unknown member", "vlan_groups:\n  g: {members: [nope]}\n", "\"nope\" is neither a VLAN nor a tunnel"},
		{"group mode", "vlans:\n  v: {interface: eth1}\nvlan_groups:\n  g: {members: [v], mode: opaque}\n", "mode opaque is not built"},
		{"shared namespace", "vlans:\n  x: {interface: eth1}\ntunnels:\n  x: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.2}\n", "share one namespace"},
		{"interface clash", "vlans:\n  v: {interface: eth1}\ntunnels:\n  t: {type: etherip, local_address: 10.0.0.1, remote_address: 10.0.0.2, interface: g}\nvlan_groups:\n  g: {members: [v]}\n", "interface name \"g\" is also"},
		{"self ip bad vlan", "self_ips:\n  s: {address: 10.0.0.5/24, vlan: nope}\n", "\"nope\" is neither a VLAN nor a VLAN group"},
		{"self ip on grouped vlan", "vlans:\n  v: {interface: eth1}\nvlan_groups:\n  g: {members: [v]}\nself_ips:\n  s: {address: 10.0.0.5/24, vlan: v}\n", "put the self IP on the group"},
		{"self ip address", "vlans:\n  v: {interface: eth1}\nself_ips:\n  s: {address: 10.0.0.5, vlan: v}\n", "is not IP/PREFIXLEN"},
		{"self ip traffic group", "vlans:\n  v: {interface: eth1}\nself_ips:\n  s: {address: 10.0.0.5/24, vlan: v, traffic_group: tg9}\n", "traffic group \"tg9\" does not exist"},
		{"vloc with send", "monitors:\n  m: {type: virtual_location, send: x}\n", "send does not apply to a virtual_location monitor"},
		{"two vloc", "monitors:\n  m: {type: virtual_location}\npools:\n  p:\n    monitors: [m, virtual_location]\n    min_active_members: 1\n    members: [{address: 10.0.0.1:80}]\n", "at most one virtual_location monitor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := parseErrors(t, tc.src)
			if !strings.Contains(errs.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", errs, tc.want)
			}
		})
	}
}

func TestVirtualLocationNotice(t *testing.T) {
	c := mustParse(t, "pools:\n  p:\n    monitors: [virtual_location]\n    members: [{address: 10.0.0.1:80}]\n")
	if !strings.Contains(strings.Join(c.Notices, "\n"), "set min_active_members") {
		t.Fatalf("no notice about priority group activation: %v", c.Notices)
	}
}
