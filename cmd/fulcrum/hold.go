package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/internal/flowhold"
	"github.com/fulcrum-adc/fulcrum/virtual"
)

// groupHolds holds the packets of traffic groups with mirrored virtuals
// while they are not active here: TCP segments to their floating
// addresses other than new connections' SYNs are dropped, UDP datagrams
// to them too, and so are resets from those addresses; FINs and resets of mirrored connections'
// sockets are dropped always (the Guard), until Fulcrum itself ends the
// connection. A nil *groupHolds holds nothing.
type groupHolds struct {
	cfg   func() *config.Config // the running configuration (groups that gain mirrored virtuals by a reload)
	h     *flowhold.Holder
	guard *flowhold.Guard // mirrored connections' flows (engine.SetFlowGuard)
	log   *slog.Logger
	mu    sync.Mutex
	addrs map[string][]netip.Addr // groups with mirrored virtuals
	held  map[string]func() error // release of each group held now
}

// newGroupHolds holds every traffic group with a mirrored virtual (all
// start standby); nil when there is none.
func newGroupHolds(cfg *config.Config, running func() *config.Config, log *slog.Logger) (*groupHolds, error) {
	addrs := mirroredGroups(cfg)
	if len(addrs) == 0 {
		return nil, nil
	}
	h, err := flowhold.New("fulcrum_hold")
	if err != nil {
		return nil, fmt.Errorf("connection mirroring needs nftables to hold a traffic group's packets during a failover: %w", err)
	}
	// A mirrored connection's sockets carry virtual.MirrorMark: if this
	// process dies, their FINs and resets must not reach the client or the
	// server, or the peer that takes over would find them ended.
	// The kernel's own resets (for packets of connections whose socket
	// is gone) must carry the mark of the packet they answer.
	for _, key := range []string{"net/ipv4/fwmark_reflect", "net/ipv6/fwmark_reflect"} {
		if err := os.WriteFile("/proc/sys/"+key, []byte("1"), 0o644); err != nil {
			h.Close()
			return nil, fmt.Errorf("connection mirroring: set %s: %w", strings.ReplaceAll(key, "/", "."), err)
		}
	}
	guard, err := h.Guard(virtual.MirrorMark)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("connection mirroring: cannot guard mirrored connections against this process's crash: %w", err)
	}
	g := &groupHolds{cfg: running, h: h, guard: guard, log: log, addrs: addrs, held: map[string]func() error{}}
	for name := range addrs {
		if !g.hold(name) {
			h.Close()
			return nil, fmt.Errorf("connection mirroring: cannot hold traffic group %s's packets", name)
		}
	}
	return g, nil
}

// hold starts holding group's packets (if it has mirrored virtuals); true
// when they are held.
func (g *groupHolds) hold(group string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.addrs[group] == nil {
		// A group may have gained mirrored virtuals by a reload.
		g.addrs[group] = mirroredGroups(g.cfg())[group]
	}
	if g.addrs[group] == nil {
		return false
	}
	if g.held[group] != nil {
		return true
	}
	release, err := g.h.Hold(g.addrs[group])
	if err != nil {
		g.log.Error("cannot hold the traffic group's packets: its mirrored connections will not move cleanly", "traffic_group", group, "error", err.Error())
		return false
	}
	g.held[group] = release
	return true
}

// release lets group's packets through again.
func (g *groupHolds) release(group string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.held[group]; r != nil {
		if err := r(); err != nil {
			g.log.Error("cannot release the traffic group's packets", "traffic_group", group, "error", err.Error())
			return
		}
		delete(g.held, group)
	}
}

func (g *groupHolds) close() {
	if g != nil {
		g.h.Close()
	}
}

// mirroredGroups maps each traffic group with a mirrored virtual to its
// floating addresses.
func mirroredGroups(cfg *config.Config) map[string][]netip.Addr {
	addrs := map[string][]netip.Addr{}
	if cfg == nil {
		return addrs
	}
	for _, v := range cfg.Virtuals {
		if tg := cfg.TrafficGroups[v.TrafficGroup]; v.Mirror && tg != nil && addrs[v.TrafficGroup] == nil {
			for _, p := range tg.Prefixes {
				addrs[v.TrafficGroup] = append(addrs[v.TrafficGroup], p.Addr())
			}
		}
	}
	return addrs
}
