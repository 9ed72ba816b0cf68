package engine

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/packetlb"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/virtual"
)

// This file implements api.Backend: read-only views built from the owners'
// snapshots, and the two writes (member state, configuration).

var _ api.Backend = (*Engine)(nil)

// Virtuals lists every configured virtual server with its counters.
func (e *Engine) Virtuals() []api.VirtualStatus {
	e.mu.Lock()
	cfg, pools := e.cfg, e.pools
	e.mu.Unlock()
	if cfg == nil {
		return []api.VirtualStatus{}
	}
	out := make([]api.VirtualStatus, 0, len(cfg.Virtuals))
	for _, name := range cfg.VirtualNames() {
		v := cfg.Virtuals[name]
		enabled := v.Enabled == nil || *v.Enabled
		vs := api.VirtualStatus{
			Name: name, Destination: v.Destination, Type: v.Type, Pool: v.Pool,
			Persistence: v.Persistence, Enabled: enabled, TLS: v.ClientSSL != "",
		}
		switch {
		case !enabled:
			vs.Availability = "disabled"
		case pools[v.Pool] != nil && pools[v.Pool].AvailableCount() > 0,
			v.ISession != "" && pools[v.ISessionEndpoints] != nil && pools[v.ISessionEndpoints].AvailableCount() > 0:
			vs.Availability = "available"
		default:
			vs.Availability = "offline"
		}
		e.mu.Lock()
		st := e.vstats[name]
		e.mu.Unlock()
		if st != nil {
			vs.Active = st.Active.Load()
			vs.Total = st.Total.Load()
			vs.Requests = st.Requests.Load()
			vs.BytesIn = st.BytesIn.Load()
			vs.BytesOut = st.BytesOut.Load()
			vs.Errors = st.Errors.Load()
			vs.Rejected = st.Rejected.Load()
			vs.ClientErrors = st.ClientErrors.Load()
			vs.PersistFallbacks = st.PersistFallbacks.Load()
			if v.Type == "fastl4" {
				f := &st.FastL4
				vs.FastL4 = &api.FastL4Status{Relay: f.RelayMode(), KernelFlows: f.KernelFlows.Load(),
					UserFlows: f.UserFlows.Load(), MapFull: f.MapFull.Load(), Resets: f.Resets.Load()}
			}
			if v.Mirror {
				m := &st.Mirror
				vs.Mirror = &api.MirrorCounts{Mirrored: m.Mirrored.Load(), Unmirrored: m.Unmirrored.Load(), Lost: m.Lost.Load(),
					Restored: m.Restored.Load(), Resets: m.Resets.Load(), ResetHalfClosed: m.ResetHalfClosed.Load(), HandedOver: m.HandedOver.Load(),
					Remirrored: m.Remirrored.Load()}
			}
			if v.ISession != "" {
				is := &st.ISession
				vs.ISession = &api.ISessionCounts{Profile: v.ISession, Tunneled: is.Tunneled.Load(),
					LocalFallback: is.LocalFallback.Load(), Refused: is.Refused.Load()}
			}
			if v.Type == "dsr" {
				vs.DSR = e.dsrCounts(v.Destination, v.Interface)
			}
			if pp := cfg.Profiles.Persistence[v.Persistence]; pp != nil && pp.Type == "lbsp" {
				l := &st.LBSP
				vs.LBSP = &api.LBSPCounts{ByServer: l.ByServer.Load(), ByIdentity: l.ByIdentity.Load(), Balanced: l.Balanced.Load(),
					NoOption: l.NoOption.Load(), IgnoredNotMember: l.IgnoredNotMember.Load(), Malformed: l.Malformed.Load(), Unreadable: l.Unreadable.Load()}
			}
		}
		out = append(out, vs)
	}
	return out
}

// Pools lists every pool with members, their health and counters.
func (e *Engine) Pools() []api.PoolStatus {
	e.mu.Lock()
	pools := e.pools
	e.mu.Unlock()
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]api.PoolStatus, 0, len(names))
	for _, n := range names {
		out = append(out, e.poolStatus(n, pools[n]))
	}
	return out
}

func (e *Engine) poolStatus(name string, p *pool.Pool) api.PoolStatus {
	ps := p.Stats()
	out := api.PoolStatus{
		Name: name, Method: ps.Method, Availability: ps.Availability,
		Available: ps.Available, Total: ps.Total,
		Active: ps.Active, TotalConns: ps.TotalConns, Requests: ps.Requests,
		BytesIn: ps.BytesOut, BytesOut: ps.BytesIn, Errors: ps.Errors,
		Members: make([]api.MemberStatus, 0, len(ps.Members)),
	}
	for _, ms := range ps.Members {
		m := api.MemberStatus{
			Address: ms.Address, State: ms.State, Health: ms.Health, Availability: ms.Availability,
			Reason: ms.Reason, Since: ms.Since, Ratio: ms.Ratio, Priority: ms.Priority, ConnLimit: ms.ConnLimit,
			Active: ms.Active, Total: ms.Total, Requests: ms.Requests,
			// pool counts from the client's point of view (in = toward the
			// server); the API counts from the member's.
			BytesIn: ms.BytesOut, BytesOut: ms.BytesIn,
			Errors: ms.Errors, PassiveFailures: ms.Failures,
			LatencyEWMANS: int64(ms.LatencyEWMA), SlowRampPercent: ms.SlowRampPct,
			Location: ms.Location, LocationReason: ms.LocationReason,
		}
		for _, pr := range e.monitors.Status(name + "/" + ms.Address) {
			m.Monitors = append(m.Monitors, api.MonitorStatus{
				Monitor: pr.Monitor, Up: pr.Up, Checked: pr.Checked, Reason: pr.Reason,
				LastRun: pr.LastRun, LatencyNS: int64(pr.Latency),
			})
		}
		out.Members = append(out.Members, m)
	}
	return out
}

// dsrCounts reads a dsr virtual's forwarder (nil when it is not running).
func (e *Engine) dsrCounts(destination, iface string) *api.DSRCounts {
	dest, err := config.ParseDestination(destination)
	if err != nil {
		return nil
	}
	e.mu.Lock()
	d, _ := e.listeners[listenerKey("dsr", dest)+"|"+iface].(*virtual.DSR)
	e.mu.Unlock()
	if d == nil {
		return nil
	}
	st := d.Forwarding()
	out := &api.DSRCounts{Packets: st.Packets, Forwarded: st.Sent, NewFlows: st.NewFlows, Flows: st.Flows, Drops: map[string]uint64{}}
	for i, n := range st.Drops {
		out.Drops[packetlb.DropName(i)] = n
	}
	return out
}

// Connections lists the connection table (F5: show sys connection).
func (e *Engine) Connections(q api.ConnQuery) []api.ConnectionStatus {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	now := time.Now()
	out := []api.ConnectionStatus{}
	e.conns.Range(func(en *conntrack.Entry) bool {
		in := en.Snapshot(now)
		if q.Virtual != "" && in.Virtual != q.Virtual || q.Pool != "" && in.Pool != q.Pool ||
			q.Member != "" && in.Server != q.Member || q.Client != "" && !strings.HasPrefix(in.Client, q.Client) {
			return true
		}
		out = append(out, connStatus(in))
		return len(out) < limit
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Connection returns one connection with its detailed view (TCP profile,
// socket options read back, TCP_INFO, proxy buffers).
func (e *Engine) Connection(id uint64) (api.ConnectionDetail, error) {
	en, ok := e.conns.Get(id)
	if !ok {
		return api.ConnectionDetail{}, fmt.Errorf("%w: connection %d (closed, or never existed)", api.ErrNotFound, id)
	}
	cd := api.ConnectionDetail{ConnectionStatus: connStatus(en.Snapshot(time.Now()))}
	if d := en.Detail(); d != nil {
		b, err := json.Marshal(d)
		if err != nil {
			return cd, err
		}
		cd.Detail = b
	}
	return cd, nil
}

func connStatus(in conntrack.Info) api.ConnectionStatus {
	return api.ConnectionStatus{
		ID: in.ID, Virtual: in.Virtual, Proto: in.Proto, Pool: in.Pool, Client: in.Client,
		VirtualAddr: in.VirtualAddr, ServerLocal: in.ServerLocal, Server: in.Server,
		Created: in.Created, AgeSeconds: in.AgeSeconds, IdleSeconds: in.IdleSeconds,
		IdleTimeoutSeconds: in.IdleTimeoutSeconds, BytesIn: in.BytesIn, BytesOut: in.BytesOut,
	}
}

// Persistence lists persistence records (F5: show ltm persistence persist-records).
func (e *Engine) Persistence(q api.PersistQuery) []api.PersistenceRecord {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	now := time.Now()
	out := []api.PersistenceRecord{}
	e.persists.Range(func(r persist.Record) bool {
		if r.Expires.Before(now) || !persistMatch(r, q.Virtual, q.Pool, q.Profile, q.Member) {
			return true
		}
		out = append(out, api.PersistenceRecord{
			Key: r.Key, Type: r.Type, Value: r.Value, Profile: r.Profile, Virtual: r.Virtual, Pool: r.Pool,
			Member: r.Member.String(), Created: r.Created, Expires: r.Expires, TimeoutSeconds: r.Timeout.Seconds(),
		})
		return len(out) < limit
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// persistMatch reports whether r matches every non-empty filter.
func persistMatch(r persist.Record, virtual, pool, profile, member string) bool {
	return (virtual == "" || r.Virtual == virtual) && (pool == "" || r.Pool == pool) &&
		(profile == "" || r.Profile == profile) && (member == "" || r.Member.String() == member)
}

// SetMemberState changes a member's state at runtime (F5: session
// user-enabled/user-disabled, state user-down) and saves it to the state
// file so that it survives a restart.
func (e *Engine) SetMemberState(poolName, member, state string) error {
	st, err := pool.ParseState(state)
	if err != nil {
		return fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	ap, err := netip.ParseAddrPort(member)
	if err != nil {
		return fmt.Errorf("%w: member %q is not IP:PORT", api.ErrBadRequest, member)
	}
	key := memberKey{poolName, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	e.mu.Lock()
	p, cfg := e.pools[poolName], e.cfg
	e.mu.Unlock()
	// The state lock is held across the change and the file write, so the
	// file always ends with the last change made. It is taken after e.mu
	// is released: Apply takes them in the other order.
	e.states.mu.Lock()
	defer e.states.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w: pool %q", api.ErrNotFound, poolName)
	}
	m := p.Member(key.member)
	if m == nil {
		return fmt.Errorf("%w: member %s in pool %q", api.ErrNotFound, member, poolName)
	}
	m.SetState(st, "set through the API")
	if cfg != nil {
		e.recordMemberState(key, st, configuredStates(cfg)[key])
	}
	return nil
}

// LoadConfig validates and applies a configuration given as YAML (API) and,
// when the instance runs from a file, saves it there: the old file is kept
// as FILE.bak and the new one replaces it atomically, so a restart or a
// reload runs what the API applied. Failing to save does not undo the
// apply; it is reported in the result and logged.
func (e *Engine) LoadConfig(data []byte) (api.ConfigApplied, error) {
	e.states.cfgMu.Lock()
	defer e.states.cfgMu.Unlock()
	// Parsed under a name beside the file it will be saved as, so its
	// relative paths (token_file, certificates) mean what they will mean
	// after a restart; problems are reported against "FILE (API)".
	name := "api"
	if e.path != "" {
		name = e.path + apiSourceSuffix
	}
	cfg, err := config.Parse(data, name)
	if err != nil {
		return api.ConfigApplied{}, fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	if err := refuseRedacted(cfg); err != nil {
		return api.ConfigApplied{}, err
	}
	if err := e.Apply(cfg); err != nil {
		return api.ConfigApplied{}, applyError(err)
	}
	if e.path == "" {
		e.log.Info("configuration loaded through the API (runtime only: no configuration file)")
		return api.ConfigApplied{Reason: "this instance was not started from a configuration file"}, nil
	}
	res := saveConfig(e.path, data)
	if !res.Persisted {
		e.log.Error("configuration loaded through the API but not saved: a restart or reload goes back to the file",
			"file", res.File, "error", res.Reason)
		return res, nil
	}
	e.log.Info("configuration loaded through the API and saved", "file", res.File, "backup", res.Backup)
	return res, nil
}

// apiSourceSuffix marks a configuration that came through the API in
// messages (filepath.Dir of "dir/f.yaml (API)" is still "dir").
const apiSourceSuffix = " (API)"

// refuseRedacted refuses a configuration holding the placeholder GET
// /api/v1/config shows instead of a secret: posting it back unchanged would
// replace the token or cookie secret with the placeholder.
func refuseRedacted(cfg *config.Config) error {
	var bad []string
	if cfg.Management.Token == api.Redacted {
		bad = append(bad, fmt.Sprintf("%s:%d: management.token", cfg.File, cfg.Line("management.token")))
	}
	names := make([]string, 0, len(cfg.Profiles.Persistence))
	for n := range cfg.Profiles.Persistence {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if p := cfg.Profiles.Persistence[n]; p != nil && p.Secret == api.Redacted {
			path := "profiles.persistence." + n + ".secret"
			bad = append(bad, fmt.Sprintf("%s:%d: %s", cfg.File, cfg.Line(path), path))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	for i := range bad {
		bad[i] += ": is the placeholder " + api.Redacted + " from GET /api/v1/config: put the real value back"
	}
	return fmt.Errorf("%w: %s", api.ErrBadRequest, strings.Join(bad, "\n"))
}

// saveConfig writes data over the configuration file at path (through a
// symbolic link to its target), keeping the previous content as PATH.bak
// and the previous file's permissions.
func saveConfig(path string, data []byte) api.ConfigApplied {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	res := api.ConfigApplied{File: path}
	perm := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
		old, err := readLimited(path, config.MaxFileSize)
		if err == nil {
			err = writeFileAtomic(path+".bak", old, perm)
		}
		if err != nil {
			res.Reason = "keeping the previous file as " + path + ".bak: " + err.Error()
			return res
		}
		res.Backup = path + ".bak"
	}
	if err := writeFileAtomic(path, data, perm); err != nil {
		res.Backup = ""
		res.Reason = "writing " + path + ": " + err.Error()
		return res
	}
	res.Persisted = true
	return res
}

// RunningConfig returns the YAML of the configuration in force.
func (e *Engine) RunningConfig() (api.ConfigSource, error) {
	cfg := e.Config()
	if cfg == nil || cfg.Source == nil {
		return api.ConfigSource{}, fmt.Errorf("%w: no configuration applied yet", api.ErrNotFound)
	}
	file := strings.TrimSuffix(cfg.File, apiSourceSuffix)
	if file == "api" {
		file = ""
	}
	return api.ConfigSource{File: file, YAML: cfg.Source}, nil
}

// KillConnection resets one connection through the connection table's
// closer: both sides are aborted (F5: delete sys connection).
func (e *Engine) KillConnection(id uint64) error {
	if !e.conns.Kill(id) {
		return fmt.Errorf("%w: connection %d", api.ErrNotFound, id)
	}
	e.log.Info("connection reset by the operator", "id", id)
	return nil
}

// DeletePersistence deletes one persistence record by key or every record
// matching the filters (F5: delete ltm persistence persist-records).
func (e *Engine) DeletePersistence(d api.PersistDelete) (int, error) {
	if d.Key != "" {
		if !e.persists.Delete(d.Key) {
			return 0, fmt.Errorf("%w: persistence record %q", api.ErrNotFound, d.Key)
		}
		return 1, nil
	}
	if !d.All && d.Virtual == "" && d.Pool == "" && d.Profile == "" && d.Member == "" {
		return 0, fmt.Errorf("%w: give a key, a filter or all", api.ErrBadRequest)
	}
	n := 0
	e.persists.Range(func(r persist.Record) bool {
		if persistMatch(r, d.Virtual, d.Pool, d.Profile, d.Member) && e.persists.Delete(r.Key) {
			n++
		}
		return true
	})
	return n, nil
}
