package config

import (
	"fmt"
	"hash/fnv"
)

// DSRTUN is the TUN device a dsr virtual address is routed into (shared
// by the dsr virtuals of that address).
func DSRTUN(addr string) string {
	h := fnv.New32a()
	h.Write([]byte(addr))
	return fmt.Sprintf("fdsr%08x", h.Sum32())
}

// virtualDSR checks a dsr virtual (single-pass packet forwarding with
// direct server return, docs/lbsp.md): what it cannot do is refused.
func (v *validator) virtualDSR(name string, vs *Virtual, pool *Pool) {
	path := "virtuals." + name
	if vs.Type != "dsr" {
		if vs.Interface != "" {
			v.errorf(path+".interface", "interface applies only to virtuals of type dsr (this one is %s)", vs.Type)
		}
		return
	}
	if vs.Interface == "" {
		v.errorf(path+".interface", "a dsr virtual needs interface: the servers' segment, where its packets go to the members' MAC addresses")
	} else if !validIfName(vs.Interface) {
		v.errorf(path+".interface", "%q is not a Linux interface name", vs.Interface)
	}
	dest, err := ParseDestination(vs.Destination)
	if err == nil && (!dest.Addr().Is6() || dest.Addr().Is4In6() || dest.Addr().IsUnspecified()) {
		v.errorf(path+".destination", "a dsr virtual's destination must be one IPv6 address (IPv4 and wildcards are not built)")
	}
	for _, k := range []struct {
		key string
		set bool
	}{{"client_ssl", vs.ClientSSL != ""}, {"server_ssl", vs.ServerSSL != ""}, {"http_profile", vs.HTTP != ""},
		{"fastl4_profile", vs.FastL4 != ""}, {"fallback_persistence", vs.FallbackPersistence != ""}, {"mirror", vs.Mirror},
		{"isession", vs.ISession != ""}, {"connect_timeout", v.p.has(path + ".connect_timeout")}} {
		if k.set {
			v.errorf(path+"."+k.key, "%s does not apply to a dsr virtual: it forwards the client's packets to a member without terminating anything", k.key)
		}
	}
	if v.p.has(path + ".snat") {
		v.errorf(path+".snat", "a dsr virtual translates no address: the member answers the client directly from the virtual address (on its loopback)")
	}
	if vs.ConnectionLimit < 1 {
		v.errorf(path+".connection_limit", "a dsr virtual's flow table must be bounded: connection_limit must be at least 1 (default %d)", DefaultDSRFlows)
	}
	if pool != nil && err == nil {
		for i, m := range pool.Members {
			ap, perr := ParseDestination(m.Address)
			if perr != nil {
				continue
			}
			if ap.Port() != dest.Port() || !ap.Addr().Is6() || ap.Addr().Is4In6() {
				v.errorf(fmt.Sprintf("pools.%s.members[%d].address", vs.Pool, i), "member %s of dsr virtual %s: direct server return translates neither address nor port, so members are IPv6 on the virtual's port %d", m.Address, name, dest.Port())
			}
		}
	}
	for _, other := range sortedKeys(v.cfg.Virtuals) {
		o := v.cfg.Virtuals[other]
		if other >= name || o.Type != "dsr" || !*o.Enabled || !*vs.Enabled {
			continue
		}
		od, oerr := ParseDestination(o.Destination)
		switch {
		case err != nil || oerr != nil:
		case od == dest:
			v.errorf(path+".destination", "dsr virtuals %s and %s have one destination", other, name)
		case od.Addr() == dest.Addr() && o.Interface != vs.Interface:
			v.errorf(path+".interface", "dsr virtuals %s and %s share address %s, so one forwarder: they need one interface (%s, %s)", other, name, dest.Addr(), o.Interface, vs.Interface)
		}
	}
}
