package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// fakeBackend is an in-memory Backend for the API and client tests.
type fakeBackend struct {
	mu       sync.Mutex
	virtuals []VirtualStatus
	pools    []PoolStatus
	conns    []ConnectionStatus
	persist  []PersistenceRecord

	lastConnQuery    ConnQuery
	lastPersistQuery PersistQuery
	loaded           [][]byte
	applied          ConfigApplied // returned by a successful LoadConfig
	running          ConfigSource  // returned by RunningConfig; empty YAML = ErrNotFound
	reloads          int
	killed           []uint64
	lastDelete       PersistDelete
	loadErr          error // returned by LoadConfig and Reload
	setErr           error // returned by SetMemberState before looking anything up
	panicOnVirtuals  bool
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFake() *fakeBackend {
	return &fakeBackend{
		virtuals: []VirtualStatus{
			{Name: "web_vs", Destination: "10.0.0.10:80", Type: "http", Pool: "web", Persistence: "src",
				Enabled: true, Availability: "available", Active: 3, Total: 120, Requests: 400,
				BytesIn: 5000, BytesOut: 3 << 20, Errors: 2, Rejected: 1},
			{Name: "app_vs", Destination: "10.0.0.11:443", Type: "standard", Pool: "app", TLS: true,
				Enabled: true, Availability: "offline"},
		},
		pools: []PoolStatus{
			{Name: "web", Method: "round-robin", Availability: "available", Available: 1, Total: 3,
				Active: 3, TotalConns: 120, Requests: 400,
				Members: []MemberStatus{
					{Address: "127.0.0.1:8081", State: "enabled", Health: "up", Availability: "available",
						Reason: "monitor http: 200 OK", Since: t0, Ratio: 1, Active: 3, Total: 100, Requests: 390,
						BytesIn: 2048, BytesOut: 1536, LatencyEWMANS: int64(2 * time.Millisecond), SlowRampPercent: 100,
						Monitors: []MonitorStatus{{Monitor: "http", Up: true, Checked: true, LastRun: t0, LatencyNS: 1e6}}},
					{Address: "127.0.0.1:8082", State: "disabled", Health: "up", Availability: "disabled",
						Reason: "disabled via API", Ratio: 2, Total: 20, PassiveFailures: 4},
					{Address: "[::1]:8083", State: "enabled", Health: "down", Availability: "offline",
						Reason: "monitor http: connection refused", Errors: 7,
						Monitors: []MonitorStatus{{Monitor: "http", Up: false, Checked: true, Reason: "connection refused"}}},
				}},
			{Name: "app", Method: "least-connections", Availability: "offline", Total: 0},
		},
		conns: []ConnectionStatus{
			{ID: 1, Virtual: "web_vs", Proto: "tcp", Pool: "web", Client: "192.0.2.7:50000", VirtualAddr: "10.0.0.10:80",
				ServerLocal: "127.0.0.1:40000", Server: "127.0.0.1:8081", Created: t0, AgeSeconds: 65, IdleSeconds: 2.5,
				IdleTimeoutSeconds: 300, BytesIn: 1 << 10, BytesOut: 5 << 20},
			{ID: 2, Virtual: "app_vs", Proto: "tcp", Pool: "app", Client: "192.0.2.8:50001", VirtualAddr: "10.0.0.11:443",
				ServerLocal: "127.0.0.1:40001", Server: "127.0.0.1:9000", AgeSeconds: 1, BytesIn: 10, BytesOut: 20},
		},
		persist: []PersistenceRecord{
			{Key: "src|web_vs|web|source_addr|192.0.2.7", Type: "source-address", Value: "192.0.2.7", Profile: "src", Virtual: "web_vs",
				Pool: "web", Member: "127.0.0.1:8081", Created: t0, Expires: t0.Add(180 * time.Second), TimeoutSeconds: 180},
			{Key: "uni|web_vs|web|universal|/a/b c", Type: "universal", Value: "/a/b c", Profile: "uni", Virtual: "web_vs",
				Pool: "web", Member: "127.0.0.1:8082", Created: t0, Expires: t0.Add(60 * time.Second), TimeoutSeconds: 60},
		},
	}
}

func (f *fakeBackend) Virtuals() []VirtualStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicOnVirtuals {
		panic("boom")
	}
	return append([]VirtualStatus(nil), f.virtuals...)
}

func (f *fakeBackend) Pools() []PoolStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]PoolStatus, len(f.pools))
	for i, p := range f.pools {
		out[i] = p
		if p.Members != nil {
			out[i].Members = append([]MemberStatus(nil), p.Members...)
		}
	}
	return out
}

func (f *fakeBackend) Connections(q ConnQuery) []ConnectionStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastConnQuery = q
	var out []ConnectionStatus
	for _, c := range f.conns {
		if (q.Virtual == "" || c.Virtual == q.Virtual) && (q.Pool == "" || c.Pool == q.Pool) &&
			(q.Member == "" || c.Server == q.Member) && (q.Client == "" || strings.HasPrefix(c.Client, q.Client)) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeBackend) Persistence(q PersistQuery) []PersistenceRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPersistQuery = q
	var out []PersistenceRecord
	for _, r := range f.persist {
		if (q.Virtual == "" || r.Virtual == q.Virtual) && (q.Pool == "" || r.Pool == q.Pool) &&
			(q.Profile == "" || r.Profile == q.Profile) && (q.Member == "" || r.Member == q.Member) {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeBackend) SetMemberState(pool, member, state string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setErr != nil {
		return f.setErr
	}
	for pi := range f.pools {
		if f.pools[pi].Name != pool {
			continue
		}
		for mi := range f.pools[pi].Members {
			m := &f.pools[pi].Members[mi]
			if m.Address == member {
				// Like the pool package: a state other than enabled masks
				// health in the F5 availability word.
				m.State = state
				switch {
				case state != "enabled":
					m.Availability = "disabled"
				case m.Health == "down":
					m.Availability = "offline"
				case m.Health == "up":
					m.Availability = "available"
				default:
					m.Availability = "unknown"
				}
				return nil
			}
		}
		return fmt.Errorf("%w: member %s in pool %q", ErrNotFound, member, pool)
	}
	return fmt.Errorf("pool %q: %w", pool, ErrNotFound)
}

func (f *fakeBackend) LoadConfig(yaml []byte) (ConfigApplied, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loadErr != nil {
		return ConfigApplied{}, f.loadErr
	}
	f.loaded = append(f.loaded, append([]byte(nil), yaml...))
	f.running = ConfigSource{File: f.applied.File, YAML: append([]byte(nil), yaml...)}
	return f.applied, nil
}

func (f *fakeBackend) RunningConfig() (ConfigSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.running.YAML) == 0 {
		return ConfigSource{}, fmt.Errorf("%w: no configuration applied yet", ErrNotFound)
	}
	return f.running, nil
}

// KillConnection drops the connection from the list, as the engine's
// closer ends up doing.
func (f *fakeBackend) KillConnection(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.conns {
		if c.ID == id {
			f.conns = append(f.conns[:i:i], f.conns[i+1:]...)
			f.killed = append(f.killed, id)
			return nil
		}
	}
	return fmt.Errorf("%w: connection %d", ErrNotFound, id)
}

func (f *fakeBackend) DeletePersistence(d PersistDelete) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastDelete = d
	var keep []PersistenceRecord
	n := 0
	for _, r := range f.persist {
		match := r.Key == d.Key
		if d.Key == "" {
			match = (d.Virtual == "" || r.Virtual == d.Virtual) && (d.Pool == "" || r.Pool == d.Pool) &&
				(d.Profile == "" || r.Profile == d.Profile) && (d.Member == "" || r.Member == d.Member)
		}
		if match {
			n++
		} else {
			keep = append(keep, r)
		}
	}
	if d.Key != "" && n == 0 {
		return 0, fmt.Errorf("%w: persistence record %q", ErrNotFound, d.Key)
	}
	f.persist = keep
	return n, nil
}

func (f *fakeBackend) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loadErr != nil {
		return f.loadErr
	}
	f.reloads++
	return nil
}

func (f *fakeBackend) member(pool, addr string) MemberStatus {
	for _, p := range f.Pools() {
		if p.Name == pool {
			for _, m := range p.Members {
				if m.Address == addr {
					return m
				}
			}
		}
	}
	return MemberStatus{}
}

func (f *fakeBackend) Connection(id uint64) (ConnectionDetail, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		if c.ID == id {
			return ConnectionDetail{ConnectionStatus: c, Detail: json.RawMessage(`{"clientside":{"profile":"tcp"}}`)}, nil
		}
	}
	return ConnectionDetail{}, fmt.Errorf("%w: connection %d", ErrNotFound, id)
}
