package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// High availability: the schema of devices, failover and traffic groups
// (F5: device trust, a Sync-Failover device group, traffic groups), their
// defaults and their checks. The ha package runs them; docs/ha.md explains
// them.

// Local is what belongs to this one device and is never synchronised to
// the others (F5 keeps self IPs, HA addresses and the device certificate
// out of ConfigSync the same way).
type Local struct {
	Device   string `yaml:"device"`    // this device's name among devices (required with devices)
	TrustDir string `yaml:"trust_dir"` // device trust directory made by `fulcrum device-trust init`
}

// Device is one member of the device group (F5: cm device).
type Device struct {
	// HAAddresses are the device's unicast failover addresses, one per HA
	// path: heartbeats go from a device's i-th address to every peer's i-th
	// address (F5: failover unicast addresses; UDP port failover.port).
	HAAddresses []string `yaml:"ha_addresses"`
	// MirrorAddresses are the primary and (optional) secondary addresses
	// peers use to mirror to this device (F5: primary/secondary local
	// mirror address).
	MirrorAddresses []string `yaml:"mirror_addresses"`
}

// Failover holds the device group's failure-detection settings (F5:
// sys db failover.*).
type Failover struct {
	Port     int      `yaml:"port"`      // heartbeat UDP port (default 1026, F5's)
	Interval Duration `yaml:"interval"`  // time between heartbeats on each path (default 100ms)
	DeadTime Duration `yaml:"dead_time"` // a peer silent this long on every path is down (default 3s: F5 Failover.NetTimeoutSec)
	// MirrorPort is the first mirroring TCP port; traffic group i (in
	// name order) uses MirrorPort+i (F5: 1029 upwards).
	MirrorPort   int      `yaml:"mirror_port"`
	GARPCount    int      `yaml:"garp_count"`    // gratuitous ARPs / unsolicited NAs per address on takeover (default 5)
	GARPInterval Duration `yaml:"garp_interval"` // spacing between them (default 100ms)
}

// ConfigSync is how the devices of the group keep their configurations
// equal (F5: ConfigSync, automatic or manual sync of a Sync-Failover device
// group). The sections `local`, `management` and `log` belong to each
// device and are never synchronised.
type ConfigSync struct {
	Mode     string   `yaml:"mode"`     // manual (default, F5's) | automatic
	Port     int      `yaml:"port"`     // TCP port on the first HA address (default 4353, F5's config sync port)
	Interval Duration `yaml:"interval"` // how often each device compares its configuration with its peer's (default 2s)
}

// SyncLocalKeys are the top-level sections config sync never copies.
var SyncLocalKeys = []string{"local", "management", "log"}

// TrafficGroup is a set of floating addresses active on exactly one device
// at a time (F5: cm traffic-group).
type TrafficGroup struct {
	Addresses []FloatingAddress `yaml:"addresses"`
	// HAOrder lists the devices that may hold the group, most preferred
	// first (F5: HA order). Default: every device, in name order.
	HAOrder []string `yaml:"ha_order"`
	// AutoFailback moves the group back to the first available device of
	// HAOrder once it has been up for FailbackDelay (F5: auto failback).
	AutoFailback  bool     `yaml:"auto_failback"`
	FailbackDelay Duration `yaml:"failback_delay"` // default 60s (F5: auto failback time)

	// Index is the group's position in name order (mirroring port offset).
	Index int `yaml:"-"`
	// Prefixes are Addresses parsed.
	Prefixes []netip.Prefix `yaml:"-"`
}

// FloatingAddress is one address of a traffic group: a virtual address, a
// floating self IP or a SNAT address.
type FloatingAddress struct {
	Address   string `yaml:"address"`   // IP/PREFIXLEN as it is added to the interface, e.g. 10.1.0.100/24
	Interface string `yaml:"interface"` // interface it is added to; the same name on every device (F5: VLAN)
}

// HA defaults.
const (
	DefaultHeartbeatPort     = 1026
	DefaultHeartbeatInterval = Duration(100 * time.Millisecond)
	DefaultDeadTime          = Duration(3 * time.Second)
	DefaultMirrorPort        = 1029
	DefaultGARPCount         = 5
	DefaultGARPInterval      = Duration(100 * time.Millisecond)
	DefaultFailbackDelay     = Duration(60 * time.Second)
	DefaultSyncPort          = 4353
	DefaultSyncInterval      = Duration(2 * time.Second)
)

// MaxDevices is the largest device group: with three or more devices
// failover is decided by a majority on the raft group (ha/quorum), whose
// every decision waits for a majority of them.
const MaxDevices = 8

// QuorumDevices is the size from which a device group decides on raft.
const QuorumDevices = 3

// maxHAPaths bounds ha_addresses per device.
const maxHAPaths = 4

// HAEnabled reports whether the configuration defines a device group.
func (c *Config) HAEnabled() bool { return len(c.Devices) > 0 }

// TrafficGroupOf returns the traffic group holding addr ("" when none).
func (c *Config) TrafficGroupOf(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, name := range sortedKeys(c.TrafficGroups) {
		for _, p := range c.TrafficGroups[name].Prefixes {
			if p.Addr() == addr {
				return name
			}
		}
	}
	return ""
}

// completeHA fills in HA defaults.
func (v *validator) completeHA() {
	c, p := v.cfg, v.p
	if c.Failover.Port == 0 && !p.has("failover.port") {
		c.Failover.Port = DefaultHeartbeatPort
	}
	if !p.has("failover.interval") {
		c.Failover.Interval = DefaultHeartbeatInterval
	}
	if !p.has("failover.dead_time") {
		c.Failover.DeadTime = DefaultDeadTime
	}
	if !p.has("failover.mirror_port") {
		c.Failover.MirrorPort = DefaultMirrorPort
	}
	if !p.has("failover.garp_count") {
		c.Failover.GARPCount = DefaultGARPCount
	}
	if !p.has("failover.garp_interval") {
		c.Failover.GARPInterval = DefaultGARPInterval
	}
	if c.ConfigSync.Mode == "" {
		c.ConfigSync.Mode = "manual"
	}
	if c.ConfigSync.Port == 0 && !p.has("config_sync.port") {
		c.ConfigSync.Port = DefaultSyncPort
	}
	if !p.has("config_sync.interval") {
		c.ConfigSync.Interval = DefaultSyncInterval
	}
	for i, name := range sortedKeys(c.TrafficGroups) {
		tg := c.TrafficGroups[name]
		if tg == nil {
			tg = &TrafficGroup{}
			c.TrafficGroups[name] = tg
		}
		tg.Index = i
		if len(tg.HAOrder) == 0 && !p.has("traffic_groups."+name+".ha_order") {
			tg.HAOrder = sortedKeys(c.Devices)
		}
		if !p.has("traffic_groups." + name + ".failback_delay") {
			tg.FailbackDelay = DefaultFailbackDelay
		}
		for _, a := range tg.Addresses {
			if pf, err := netip.ParsePrefix(a.Address); err == nil {
				tg.Prefixes = append(tg.Prefixes, pf)
			}
		}
	}
	if c.Local.TrustDir != "" && !filepath.IsAbs(c.Local.TrustDir) {
		base := "."
		if c.File != "" {
			base = filepath.Dir(c.File)
		}
		if abs, err := filepath.Abs(filepath.Join(base, c.Local.TrustDir)); err == nil {
			c.Local.TrustDir = abs
		}
	}
}

// ha checks the device group, failover settings and traffic groups.
func (v *validator) ha() {
	c := v.cfg
	for _, n := range sortedKeys(c.Devices) {
		if !validName(n) {
			v.errorf("devices."+n, "name %q is not valid: names are made of letters, digits, '_', '.' and '-'", n)
		}
	}
	for _, n := range sortedKeys(c.TrafficGroups) {
		if !validName(n) {
			v.errorf("traffic_groups."+n, "name %q is not valid: names are made of letters, digits, '_', '.' and '-'", n)
		}
	}
	v.persistenceMirror()
	if !c.HAEnabled() {
		for _, name := range sortedKeys(c.Virtuals) {
			if vs := c.Virtuals[name]; vs != nil && vs.Mirror {
				v.errorf("virtuals."+name+".mirror", "mirror: true needs a device group (devices, local, traffic_groups): connections are mirrored to the traffic group's next-active device")
			}
		}
		if len(c.TrafficGroups) > 0 {
			v.errorf("traffic_groups", "traffic groups need a device group: define devices (and local.device)")
		}
		if c.Local.Device != "" || c.Local.TrustDir != "" {
			v.errorf("local", "local names this device in a device group, but no devices are defined")
		}
		if v.p.has("config_sync") {
			v.errorf("config_sync", "config_sync needs a device group: define devices (and local)")
		}
		return
	}
	switch {
	case len(c.Devices) < 2:
		v.errorf("devices", "a device group needs at least two devices (has %d)", len(c.Devices))
	case len(c.Devices) > MaxDevices:
		v.errorf("devices", "a device group has at most %d devices (has %d)", MaxDevices, len(c.Devices))
	case len(c.Devices) >= QuorumDevices && c.Failover.DeadTime < Duration(20*time.Millisecond):
		v.errorf("failover.dead_time", "with %d devices dead_time must be at least 20ms: the raft timeouts are derived from it (election after half, leader lease a quarter)", len(c.Devices))
	}
	if c.Local.Device == "" {
		v.errorAt("devices", "local.device", "local.device is required with devices: the name of this device (defined: %s)", strings.Join(sortedKeys(c.Devices), ", "))
	} else {
		refCheck(v, "local.device", "device", c.Local.Device, c.Devices)
	}
	v.trustDir()
	v.devices()
	v.failover()
	v.configSync()
	v.trafficGroups()
	v.connectionMirror()
}

// errorAt reports a problem about path (a key that is missing) on the line
// of lineOf when path itself has no line.
func (v *validator) errorAt(lineOf, path, format string, args ...any) {
	if v.p.has(path) {
		v.errorf(path, format, args...)
		return
	}
	v.p.add(v.p.lineFor(lineOf), path, format, args...)
}

// persistenceMirror checks `mirror: true` on persistence profiles: it needs
// a device group whose devices all have mirror addresses, and a profile
// that keeps records (the stateless ones have nothing to mirror).
func (v *validator) persistenceMirror() {
	c := v.cfg
	for _, name := range sortedKeys(c.Profiles.Persistence) {
		pp := c.Profiles.Persistence[name]
		if pp == nil || !pp.Mirror {
			continue
		}
		path := "profiles.persistence." + name + ".mirror"
		switch {
		case pp.Type == "cookie_insert":
			v.errorf(path, "cookie_insert keeps no records, so there is nothing to mirror: its cookies work on every device of the group as they are (the secret is derived from device trust when none is set)")
		case pp.Type == "hash":
			v.errorf(path, "hash persistence keeps no records, so there is nothing to mirror: every device maps a key to the same member")
		case !c.HAEnabled():
			v.errorf(path, "mirror: true needs a device group (devices, local, traffic_groups): records are mirrored to the traffic group's next-active device")
		default:
			for _, d := range sortedKeys(c.Devices) {
				if len(c.Devices[d].MirrorAddresses) == 0 {
					v.errorf(path, "mirror: true needs mirror_addresses on every device; devices.%s has none", d)
				}
			}
		}
	}
}

func (v *validator) trustDir() {
	c := v.cfg
	if c.Local.TrustDir == "" {
		v.errorAt("devices", "local.trust_dir", "local.trust_dir is required with devices: every HA channel is authenticated (make the files with `fulcrum device-trust init`)")
		return
	}
	need := []string{"ca.pem", "heartbeat.key"}
	if c.Local.Device != "" {
		need = append(need, c.Local.Device+".pem", c.Local.Device+"-key.pem")
	}
	for _, f := range need {
		if _, err := os.Stat(filepath.Join(c.Local.TrustDir, f)); err != nil {
			v.errorf("local.trust_dir", "device trust file %s: %v (make it with `fulcrum device-trust init`)", filepath.Join(c.Local.TrustDir, f), err)
		}
	}
}

func (v *validator) devices() {
	c := v.cfg
	paths := -1
	var families []bool // is4 per path index
	seen := map[netip.Addr]string{}
	for _, name := range sortedKeys(c.Devices) {
		d := c.Devices[name]
		path := "devices." + name
		if d == nil || len(d.HAAddresses) == 0 {
			v.errorf(path+".ha_addresses", "ha_addresses is required: this device's unicast failover addresses, one per HA path")
			continue
		}
		if len(d.HAAddresses) > maxHAPaths {
			v.errorf(path+".ha_addresses", "at most %d HA paths", maxHAPaths)
			continue
		}
		if paths == -1 {
			paths = len(d.HAAddresses)
		} else if len(d.HAAddresses) != paths {
			v.errorf(path+".ha_addresses", "every device needs the same number of ha_addresses (one per HA path): this one has %d, others %d", len(d.HAAddresses), paths)
		}
		for i, s := range d.HAAddresses {
			ip := path + ".ha_addresses[" + strconv.Itoa(i) + "]"
			a, err := netip.ParseAddr(s)
			if err != nil || a.IsUnspecified() || a.IsMulticast() {
				v.errorf(ip, "%q is not a unicast IP address", s)
				continue
			}
			a = a.Unmap()
			if other, dup := seen[a]; dup {
				v.errorf(ip, "address %s is also an HA address of %s", a, other)
			}
			seen[a] = name
			if i < len(families) {
				if families[i] != a.Is4() {
					v.errorf(ip, "HA path %d mixes IPv4 and IPv6 addresses across devices", i)
				}
			} else if i == len(families) {
				families = append(families, a.Is4())
			}
		}
		if len(d.MirrorAddresses) > 2 {
			v.errorf(path+".mirror_addresses", "mirror_addresses holds a primary and at most one secondary address")
		}
		for i, s := range d.MirrorAddresses {
			if a, err := netip.ParseAddr(s); err != nil || a.IsUnspecified() || a.IsMulticast() {
				v.errorf(path+".mirror_addresses["+strconv.Itoa(i)+"]", "%q is not a unicast IP address", s)
			}
		}
	}
}

func (v *validator) failover() {
	f := &v.cfg.Failover
	if f.Port < 1 || f.Port > 65535 {
		v.errorf("failover.port", "port must be 1 to 65535")
	}
	if f.MirrorPort < 1 || f.MirrorPort+len(v.cfg.TrafficGroups) > 65536 {
		v.errorf("failover.mirror_port", "mirror_port must be 1 to 65535 and leave one port per traffic group")
	}
	v.positive("failover.interval", "interval", f.Interval, false)
	v.positive("failover.dead_time", "dead_time", f.DeadTime, false)
	if f.Interval > 0 && f.Interval < Duration(time.Millisecond) {
		v.errorf("failover.interval", "interval must be at least 1ms")
	}
	if f.Interval > 0 && f.DeadTime > 0 && f.Interval != Indefinite && f.DeadTime != Indefinite {
		switch {
		case f.DeadTime < 2*f.Interval:
			v.errorf("failover.dead_time", "dead_time (%s) must be at least twice the heartbeat interval (%s), or one lost heartbeat fails the group over", time.Duration(f.DeadTime), time.Duration(f.Interval))
		case f.DeadTime < 3*f.Interval:
			v.notice("failover.dead_time", "dead_time (%s) is under three heartbeat intervals (%s): two lost heartbeats in a row on every path fail the group over", time.Duration(f.DeadTime), time.Duration(f.Interval))
		}
	}
	if f.GARPCount < 1 || f.GARPCount > 100 {
		v.errorf("failover.garp_count", "garp_count must be 1 to 100")
	}
	v.positive("failover.garp_interval", "garp_interval", f.GARPInterval, false)
}

func (v *validator) configSync() {
	cs := &v.cfg.ConfigSync
	if cs.Mode != "manual" && cs.Mode != "automatic" {
		v.errorf("config_sync.mode", "mode %q: want manual or automatic", cs.Mode)
	}
	if cs.Port < 1 || cs.Port > 65535 {
		v.errorf("config_sync.port", "port must be 1 to 65535")
	}
	if cs.Interval < Duration(100*time.Millisecond) || cs.Interval == Indefinite {
		v.errorf("config_sync.interval", "interval must be at least 100ms")
	}
}

// MaxTrafficGroups bounds traffic_groups: every heartbeat carries each
// group's state and must fit one datagram.
const MaxTrafficGroups = 32

func (v *validator) trafficGroups() {
	c := v.cfg
	if len(c.TrafficGroups) > MaxTrafficGroups {
		v.errorf("traffic_groups", "at most %d traffic groups (has %d)", MaxTrafficGroups, len(c.TrafficGroups))
	}
	owner := map[netip.Addr]string{}
	for _, name := range sortedKeys(c.TrafficGroups) {
		tg := c.TrafficGroups[name]
		path := "traffic_groups." + name
		if len(tg.Addresses) == 0 {
			v.errorf(path+".addresses", "a traffic group needs at least one floating address")
		}
		for i, a := range tg.Addresses {
			ap := path + ".addresses[" + strconv.Itoa(i) + "]"
			pf, err := netip.ParsePrefix(a.Address)
			if err != nil {
				v.errorf(ap+".address", "%q is not IP/PREFIXLEN (write 10.1.0.100/24 or 2001:db8::100/64)", a.Address)
			} else if pf.Addr().IsUnspecified() || pf.Addr().IsMulticast() || pf.Addr().IsLoopback() {
				v.errorf(ap+".address", "%s cannot float: it must be a unicast, non-loopback address", pf.Addr())
			} else {
				if other, dup := owner[pf.Addr()]; dup {
					v.errorf(ap+".address", "address %s is already in traffic group %s", pf.Addr(), other)
				}
				owner[pf.Addr()] = name
				for _, dn := range sortedKeys(c.Devices) {
					if d := c.Devices[dn]; d != nil && slices.Contains(d.HAAddresses, pf.Addr().String()) {
						v.errorf(ap+".address", "%s is an HA address of device %s: HA addresses are per device and cannot float", pf.Addr(), dn)
					}
				}
			}
			if a.Interface == "" {
				v.errorf(ap+".interface", "interface is required: the interface the address is added to when the group is active here")
			} else if len(a.Interface) > 15 || strings.ContainsAny(a.Interface, "/ \t") {
				v.errorf(ap+".interface", "%q is not a valid interface name", a.Interface)
			}
		}
		if len(tg.HAOrder) == 0 {
			v.errorf(path+".ha_order", "ha_order must name at least one device")
		}
		seen := map[string]bool{}
		for i, d := range tg.HAOrder {
			if seen[d] {
				v.errorf(path+".ha_order["+strconv.Itoa(i)+"]", "device %q is listed twice", d)
			}
			seen[d] = true
			refCheck(v, path+".ha_order["+strconv.Itoa(i)+"]", "device", d, c.Devices)
		}
		v.positive(path+".failback_delay", "failback_delay", tg.FailbackDelay, false)
	}
	for _, name := range sortedKeys(c.Virtuals) {
		vs := c.Virtuals[name]
		if ap, err := ParseDestination(vs.Destination); err == nil {
			vs.TrafficGroup = c.TrafficGroupOf(ap.Addr())
		}
	}
}

// connectionMirror checks `mirror: true` on virtual servers: only what can
// really survive a failover is accepted, and the reason is given for the
// rest.
func (v *validator) connectionMirror() {
	c := v.cfg
	for _, name := range sortedKeys(c.Virtuals) {
		vs := c.Virtuals[name]
		if vs == nil || !vs.Mirror {
			continue
		}
		path := "virtuals." + name + ".mirror"
		switch {
		case vs.ClientSSL != "" || vs.ServerSSL != "":
			v.errorf(path, "TLS-terminated connections cannot be mirrored: Go's TLS cannot export a live connection's record state (keys and sequence numbers) and this kernel has no kTLS to read it from, so a standby could not continue the TLS stream; mirror a tcp virtual that passes TLS through instead (docs/ha.md)")
			continue
		case vs.Type == "fastl4":
			v.errorf(path, "mirroring fastl4 virtuals is not built yet: their bytes move in the kernel, where no write gate can hold them until the standby has them (tcp and udp virtuals are mirrored)")
			continue
		}
		if vs.TrafficGroup == "" {
			v.errorf(path, "mirror: true needs a destination that is a floating address of a traffic group: the client's connection must reach the device that takes over")
			continue
		}
		for _, d := range sortedKeys(c.Devices) {
			if len(c.Devices[d].MirrorAddresses) == 0 {
				v.errorf(path, "mirror: true needs mirror_addresses on every device; devices.%s has none", d)
			}
		}
		switch vs.SNAT {
		case "", "automap":
			v.errorf(path, "a mirrored virtual needs a SNAT pool of traffic group %s's floating addresses (snat: POOL): with automap the server-side connection comes from this device's own address, which the next-active device does not have, so it could not go on after failover", vs.TrafficGroup)
		case "none":
			v.errorf(path, "a mirrored virtual needs a SNAT pool of traffic group %s's floating addresses (snat: POOL): with snat none the members answer the client's address directly and nothing guarantees their replies reach the device that takes over", vs.TrafficGroup)
		default:
			sp := c.SNATPools[vs.SNAT]
			if sp == nil {
				break // reported by the virtual's own check
			}
			for _, a := range sp.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue // reported by the pool's own check
				}
				if tg := c.TrafficGroupOf(addr); tg != vs.TrafficGroup {
					where := "is not a floating address"
					if tg != "" {
						where = "belongs to traffic group " + tg
					}
					v.errorf(path, "SNAT pool %s's address %s %s: a mirrored virtual's server-side connections must come from floating addresses of its own traffic group %s, so that they move with it", vs.SNAT, a, where, vs.TrafficGroup)
				}
			}
		}
	}
}
