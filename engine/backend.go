package engine

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
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
		case pools[v.Pool] != nil && pools[v.Pool].AvailableCount() > 0:
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
		if r.Expires.Before(now) || q.Virtual != "" && r.Virtual != q.Virtual || q.Pool != "" && r.Pool != q.Pool ||
			q.Profile != "" && r.Profile != q.Profile {
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

// SetMemberState changes a member's state at runtime (F5: session
// user-enabled/user-disabled, state user-down).
func (e *Engine) SetMemberState(poolName, member, state string) error {
	st, err := pool.ParseState(state)
	if err != nil {
		return fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	e.mu.Lock()
	p := e.pools[poolName]
	e.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w: pool %q", api.ErrNotFound, poolName)
	}
	ap, err := netip.ParseAddrPort(member)
	if err != nil {
		return fmt.Errorf("%w: member %q is not IP:PORT", api.ErrBadRequest, member)
	}
	m := p.Member(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	if m == nil {
		return fmt.Errorf("%w: member %s in pool %q", api.ErrNotFound, member, poolName)
	}
	m.SetState(st, "set through the API")
	return nil
}
