package engine

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/locate"
	"github.com/fulcrum-adc/fulcrum/netcfg"
	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/tunnel/etherip"
)

// Networks: the VLAN sub-interfaces, VLAN-group bridges, EtherIP tunnels
// and self IPs of the configuration (config/network.go), made real with
// netcfg and tunnel/etherip, and the virtual_location monitor (locate).
// One owner: netState, guarded by Engine.mu.

type netState struct {
	mux       *etherip.Mux
	endpoints map[string]*tunnelEndpoint // by tunnel name
	links     map[string]bool            // sub-interfaces and bridges Fulcrum owns, by interface name
	ports     map[string]string          // interface -> bridge it was put in
	selfIPs   map[selfIP]bool            // static self IPs added
	swept     bool                       // leftovers of an earlier run removed
	locator   *locate.Locator
	// ifnames are the tunnels' interface names, for the locator's
	// goroutines (which must not take Engine.mu: Apply stops them under
	// it).
	ifnames atomic.Pointer[[]string]
}

type selfIP struct {
	ifname string
	prefix netip.Prefix
}

type tunnelEndpoint struct {
	name  string // the tunnel's
	group string // its VLAN group, or ""
	cfg   etherip.Config
	ep    *etherip.Endpoint
}

// tunnelConfig is the endpoint configuration of tunnel t.
func tunnelConfig(t *config.Tunnel) etherip.Config {
	return etherip.Config{Name: t.Interface, Local: t.Local, Remote: t.Remote, MTU: t.MTU, OuterMTU: t.OuterMTU,
		AcceptReversed: t.AcceptReversedVersion, DontFragment: !t.Fragment, ClampMSS: t.MSSClamp != nil && *t.MSSClamp}
}

// tunnelInterfaces is the locator's view of the tunnels: their interface
// names now.
func (e *Engine) tunnelInterfaces() []string {
	if p := e.net.ifnames.Load(); p != nil {
		return *p
	}
	return nil
}

// applyNetwork makes cfg's networks real. What it adds it adds before
// anything else of cfg is applied; what cfg no longer has, commit
// removes. On an error it removes what it added (rollback) and the
// running networks are as they were, except that a tunnel whose settings
// changed was restarted with the new ones.
func (e *Engine) applyNetwork(cfg *config.Config) (commit, rollback func(), err error) {
	n := &e.net
	if n.mux == nil {
		n.mux = new(etherip.Mux)
		n.endpoints = map[string]*tunnelEndpoint{}
		n.links = map[string]bool{}
		n.ports = map[string]string{}
		n.selfIPs = map[selfIP]bool{}
	}
	var created []string             // links made by this call
	var opened []*tunnelEndpoint     // endpoints made by this call
	replaced := map[string]bool{}    // tunnels whose old endpoint was closed
	wantLinks := map[string]bool{}   // every link cfg owns
	wantPorts := map[string]string{} // port -> bridge
	wantSelf := map[selfIP]bool{}    // static self IPs
	wantEP := map[string]etherip.Config{}
	undo := func() {
		for _, t := range opened {
			t.ep.Close()
		}
		for _, l := range created {
			netcfg.DeleteOwned(l)
		}
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()

	// Sub-interfaces first, then bridges, tunnels, ports and self IPs.
	for _, name := range sortedNames(cfg.VLANs) {
		v := cfg.VLANs[name]
		if v.Tag == 0 {
			continue
		}
		wantLinks[name] = true
		made, err := netcfg.EnsureVLAN(name, v.Interface, v.Tag, v.MTU, "vlans."+name)
		if made {
			created = append(created, name)
		}
		if err != nil {
			return nil, nil, e.netError(cfg, "vlans."+name, err)
		}
	}
	for _, name := range sortedNames(cfg.VLANGroups) {
		g := cfg.VLANGroups[name]
		wantLinks[g.Bridge] = true
		made, err := netcfg.EnsureBridge(g.Bridge, "vlan_groups."+name, g.STP)
		if made {
			created = append(created, g.Bridge)
		}
		if err != nil {
			return nil, nil, e.netError(cfg, "vlan_groups."+name, err)
		}
	}
	group := map[string]string{} // member -> group
	for _, gname := range sortedNames(cfg.VLANGroups) {
		for _, m := range cfg.VLANGroups[gname].Members {
			group[m] = gname
		}
	}
	for _, name := range sortedNames(cfg.Tunnels) {
		t := cfg.Tunnels[name]
		want := tunnelConfig(t)
		wantEP[name] = want
		if old := n.endpoints[name]; old != nil {
			if old.cfg == want {
				old.group = group[name]
				continue
			}
			// New settings: the old endpoint's TAP must go first (same
			// name); the tunnel restarts.
			old.ep.Close()
			delete(n.endpoints, name)
			replaced[name] = true
		}
		ep, err := n.mux.New(want)
		if err != nil {
			return nil, nil, e.netError(cfg, "tunnels."+name, err)
		}
		te := &tunnelEndpoint{name: name, group: group[name], cfg: want, ep: ep}
		opened = append(opened, te)
	}
	for _, gname := range sortedNames(cfg.VLANGroups) {
		g := cfg.VLANGroups[gname]
		for _, m := range g.Members {
			port := cfg.IfName(m)
			if t := cfg.Tunnels[m]; t != nil {
				port = t.Interface
			}
			wantPorts[port] = g.Bridge
			if err := netcfg.Enslave(port, g.Bridge); err != nil {
				return nil, nil, e.netError(cfg, "vlan_groups."+gname+".members", err)
			}
		}
	}
	for _, name := range sortedNames(cfg.SelfIPs) {
		s := cfg.SelfIPs[name]
		if s.TrafficGroup != "" {
			continue // floating: the traffic group adds it where it is active
		}
		k := selfIP{cfg.IfName(s.VLAN), s.Prefix}
		wantSelf[k] = true
		if err := netcfg.AddSelfIP(k.ifname, k.prefix); err != nil {
			return nil, nil, e.netError(cfg, "self_ips."+name, err)
		}
	}

	return func() {
		for _, t := range opened {
			n.endpoints[t.name] = t
			e.log.Info("tunnel up", "tunnel", t.name, "type", "etherip", "interface", t.ep.Name(),
				"local", t.cfg.Local.String(), "remote", t.cfg.Remote.String(), "mtu", t.ep.MTU(), "restarted", replaced[t.name])
		}
		for k := range n.selfIPs {
			if !wantSelf[k] {
				if err := netcfg.RemoveSelfIP(k.ifname, k.prefix); err != nil {
					e.log.Warn("self IP not removed", "address", k.prefix.String(), "interface", k.ifname, "err", err)
				}
			}
		}
		for port, br := range n.ports {
			if wantPorts[port] != br {
				netcfg.Release(port)
			}
		}
		for name, t := range n.endpoints {
			if _, ok := wantEP[name]; !ok {
				t.ep.Close()
				delete(n.endpoints, name)
				e.log.Info("tunnel removed", "tunnel", name)
			}
		}
		for l := range n.links {
			if !wantLinks[l] {
				if err := netcfg.DeleteOwned(l); err != nil {
					e.log.Warn("interface not removed", "interface", l, "err", err)
				}
			}
		}
		if !n.swept {
			n.swept = true
			e.sweepLeftovers(wantLinks)
		}
		n.links, n.ports, n.selfIPs = wantLinks, wantPorts, wantSelf
		names := make([]string, 0, len(n.endpoints))
		for _, t := range n.endpoints {
			names = append(names, t.ep.Name())
		}
		n.ifnames.Store(&names)
	}, undo, nil
}

// sweepLeftovers deletes interfaces an earlier run of Fulcrum made (alias
// fulcrum:vlans.… or fulcrum:vlan_groups.…) that this configuration does
// not have: a crash leaves them behind.
func (e *Engine) sweepLeftovers(keep map[string]bool) {
	for _, name := range netcfg.OwnedLinks() {
		if !keep[name] {
			if err := netcfg.DeleteOwned(name); err == nil {
				e.log.Info("interface left by an earlier run removed", "interface", name)
			}
		}
	}
}

func (e *Engine) netError(cfg *config.Config, path string, err error) error {
	return fmt.Errorf("%s:%d: %s: %w (the running configuration is unchanged)", cfg.File, cfg.Line(path), path, err)
}

// closeNetwork removes everything applyNetwork made: at shutdown.
func (e *Engine) closeNetwork() {
	n := &e.net
	if n.locator != nil {
		n.locator.Close()
	}
	for name, t := range n.endpoints {
		t.ep.Close()
		delete(n.endpoints, name)
	}
	for k := range n.selfIPs {
		netcfg.RemoveSelfIP(k.ifname, k.prefix)
	}
	for port := range n.ports {
		netcfg.Release(port)
	}
	for l := range n.links {
		netcfg.DeleteOwned(l)
	}
	n.links, n.ports, n.selfIPs = nil, nil, nil
}

// locationJobs are the virtual_location monitor's jobs of cfg's pools;
// members of pools without one get their location cleared.
func locationJobs(cfg *config.Config, pools map[string]*pool.Pool) []locate.Job {
	var jobs []locate.Job
	for _, name := range sortedNames(pools) {
		var vloc *config.Monitor
		for _, mn := range cfg.Pools[name].Monitors {
			if m := cfg.Monitors[mn]; m != nil && m.Type == "virtual_location" {
				vloc = m
			}
		}
		members := pools[name].Members()
		if vloc == nil {
			for _, m := range members {
				if m.Location() != pool.LocationUnknown {
					m.SetLocation(pool.LocationUnknown, "no virtual_location monitor")
				}
			}
			continue
		}
		j := locate.Job{Key: name, Interval: vloc.Interval.D()}
		for _, m := range members {
			j.Members = append(j.Members, m)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// TunnelStats is one tunnel as `show tunnels` and the API report it.
type TunnelStats struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Interface string            `json:"interface"`
	Group     string            `json:"vlan_group,omitempty"`
	Local     string            `json:"local_address"`
	Remote    string            `json:"remote_address"`
	MTU       int               `json:"mtu"`
	State     string            `json:"state"`
	TxPackets uint64            `json:"packets_out"`
	TxBytes   uint64            `json:"bytes_out"`
	RxPackets uint64            `json:"packets_in"`
	RxBytes   uint64            `json:"bytes_in"`
	Drops     map[string]uint64 `json:"drops"`
	// ForeignSource counts protocol-97 packets to this tunnel's local
	// address from no tunnel's remote (shared by the tunnels of one local
	// address).
	ForeignSource uint64 `json:"foreign_source_drops"`
	TAPErrors     uint64 `json:"interface_write_errors"`
}

// Tunnels returns the running tunnels, by name.
func (e *Engine) Tunnels() []TunnelStats {
	e.mu.Lock()
	eps := make([]*tunnelEndpoint, 0, len(e.net.endpoints))
	for _, t := range e.net.endpoints {
		eps = append(eps, t)
	}
	e.mu.Unlock()
	sort.Slice(eps, func(i, j int) bool { return eps[i].name < eps[j].name })
	out := make([]TunnelStats, 0, len(eps))
	for _, t := range eps {
		s, rs := t.ep.Stats(), t.ep.ReceiverStats()
		ts := TunnelStats{Name: t.name, Type: "etherip", Interface: t.ep.Name(), Group: t.group,
			Local: t.cfg.Local.String(), Remote: t.cfg.Remote.String(), MTU: t.ep.MTU(), State: "up",
			TxPackets: s.TxPackets, TxBytes: s.TxBytes, RxPackets: s.RxPackets, RxBytes: s.RxBytes,
			Drops: map[string]uint64{}, TAPErrors: s.TAPWriteErrors,
			ForeignSource: rs.Drops[etherip.DropForeignSource]}
		for r, n := range s.Drops {
			ts.Drops[etherip.DropReason(r).String()] = n
		}
		for _, r := range []etherip.DropReason{etherip.DropBadOuter, etherip.DropOversize} {
			ts.Drops["receiver_"+r.String()] = rs.Drops[r]
		}
		out = append(out, ts)
	}
	return out
}

// tunnelCollector exports the tunnels' counters, reading them once per
// scrape.
type tunnelCollector struct{ e *Engine }

var (
	descTunnelPackets = prometheus.NewDesc("fulcrum_tunnel_packets_total", "Frames through an EtherIP tunnel, by direction (in: from the peer).", []string{"tunnel", "direction"}, nil)
	descTunnelBytes   = prometheus.NewDesc("fulcrum_tunnel_bytes_total", "Ethernet frame bytes through an EtherIP tunnel, by direction.", []string{"tunnel", "direction"}, nil)
	descTunnelDrops   = prometheus.NewDesc("fulcrum_tunnel_drops_total", "Packets and frames an EtherIP tunnel dropped, by reason.", []string{"tunnel", "reason"}, nil)
)

func (c tunnelCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTunnelPackets
	ch <- descTunnelBytes
	ch <- descTunnelDrops
}

func (c tunnelCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.e.Tunnels() {
		ch <- prometheus.MustNewConstMetric(descTunnelPackets, prometheus.CounterValue, float64(t.TxPackets), t.Name, "out")
		ch <- prometheus.MustNewConstMetric(descTunnelPackets, prometheus.CounterValue, float64(t.RxPackets), t.Name, "in")
		ch <- prometheus.MustNewConstMetric(descTunnelBytes, prometheus.CounterValue, float64(t.TxBytes), t.Name, "out")
		ch <- prometheus.MustNewConstMetric(descTunnelBytes, prometheus.CounterValue, float64(t.RxBytes), t.Name, "in")
		reasons := make([]string, 0, len(t.Drops))
		for r := range t.Drops {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		for _, r := range reasons {
			ch <- prometheus.MustNewConstMetric(descTunnelDrops, prometheus.CounterValue, float64(t.Drops[r]), t.Name, r)
		}
		ch <- prometheus.MustNewConstMetric(descTunnelDrops, prometheus.CounterValue, float64(t.ForeignSource), t.Name, "foreign_source")
	}
}

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
