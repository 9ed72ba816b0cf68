package api

import (
	"encoding/json"
	"errors"
	"time"
)

// This file is the wire model of the management API. Field names follow the
// F5 vocabulary an operator already knows (availability, state, connection
// limit, ratio, priority); JSON names are snake_case. Zero times are omitted
// from JSON rather than rendered as year 1.

// VirtualStatus is one virtual server (F5: ltm virtual) and its statistics.
type VirtualStatus struct {
	Name        string `json:"name"`
	Destination string `json:"destination"` // IP:PORT it listens on
	Type        string `json:"type"`        // e.g. standard, http, udp
	Pool        string `json:"pool"`        // default pool
	Persistence string `json:"persistence"` // persistence profile name, "" = none
	Enabled     bool   `json:"enabled"`
	TLS         bool   `json:"tls"` // terminates TLS (client-ssl profile)
	// Availability is available, offline (no pool member is available) or
	// disabled (the virtual server itself is disabled).
	Availability string `json:"availability"`

	Active   int64  `json:"active_connections"`
	Total    uint64 `json:"total_connections"`
	Requests uint64 `json:"requests"`
	BytesIn  uint64 `json:"bytes_in"`  // from clients
	BytesOut uint64 `json:"bytes_out"` // to clients
	Errors   uint64 `json:"errors"`    // failures charged to members or to Fulcrum itself
	Rejected uint64 `json:"rejected"`  // malformed or refused client input
	// ClientErrors are exchanges the client broke (truncated, malformed or
	// stalled request body, gone mid-response): never charged to a member.
	ClientErrors uint64 `json:"client_errors"`
	// PersistFallbacks are connections or datagrams whose first bytes gave
	// a msrdp, sip or ssl persistence profile no key (nothing in time,
	// garbage, no cookie, Call-ID or session ID): balanced without it.
	PersistFallbacks uint64 `json:"persist_fallbacks"`
	// FastL4 says how a fastl4 virtual relays (nil for other types).
	FastL4 *FastL4Status `json:"fastl4,omitempty"`
	// Mirror counts a mirrored virtual's connections (nil when mirror is off).
	Mirror *MirrorCounts `json:"mirror,omitempty"`
	// ISession counts an iSession virtual's connections (nil without isession).
	ISession *ISessionCounts `json:"isession,omitempty"`
	// LBSP counts how lbsp persistence chose members (nil without it).
	LBSP *LBSPCounts `json:"lbsp,omitempty"`
	// DSR counts a dsr virtual's forwarding (nil for other types).
	DSR *DSRCounts `json:"dsr,omitempty"`
}

// DSRCounts are a dsr virtual's packets and flows.
type DSRCounts struct {
	Packets   uint64            `json:"packets"`   // read from the virtual's TUN device
	Forwarded uint64            `json:"forwarded"` // sent to members
	NewFlows  uint64            `json:"new_flows"`
	Flows     int               `json:"flows"` // in the flow table now
	Drops     map[string]uint64 `json:"drops"` // by reason
}

// LBSPCounts are an lbsp virtual's connections by how the member was
// chosen, and the options it ignored and why (docs/lbsp.md).
type LBSPCounts struct {
	ByServer         uint64 `json:"persisted_by_server_option"`   // the option's server address named an eligible member
	ByIdentity       uint64 `json:"persisted_by_client_identity"` // a record of the option's client identity
	Balanced         uint64 `json:"balanced"`                     // the pool's method chose (then recorded)
	NoOption         uint64 `json:"no_option"`                    // the SYN carried none: balanced
	IgnoredNotMember uint64 `json:"ignored_not_member"`           // a server address that is no eligible member
	Malformed        uint64 `json:"ignored_malformed"`            // destination options refused by the walker
	Unreadable       uint64 `json:"unreadable"`                   // the kernel did not hand over the SYN's options
}

// ISessionCounts are an iSession virtual's connections by where they went.
type ISessionCounts struct {
	Profile       string `json:"profile"`
	Tunneled      uint64 `json:"tunneled"`       // through a tunnel
	LocalFallback uint64 `json:"local_fallback"` // served from the local pool: no tunnel could be set up
	Refused       uint64 `json:"refused"`        // no tunnel and no local pool
}

// MirrorCounts are a mirrored virtual's connections by what mirroring did
// with them.
type MirrorCounts struct {
	Mirrored   uint64 `json:"mirrored"`   // whose state reached the mirror channel
	Unmirrored uint64 `json:"unmirrored"` // served without a mirror (no peer streaming, sockets unreadable)
	Lost       uint64 `json:"lost"`       // mirroring ended before the connection did (channel down)
	Restored   uint64 `json:"taken_over"` // continued here after a failover
	Resets     uint64 `json:"reset_gap"`  // taken over, then reset: the old active had acknowledged bytes never mirrored
	// ResetHalfClosed: taken over half-closed (a side had sent its FIN),
	// so reset on both sides rather than left half open.
	ResetHalfClosed uint64 `json:"reset_half_closed"`
	HandedOver      uint64 `json:"handed_over"` // frozen and moved to the peer in a planned failover
	// Remirrored: tcp connections and http upgrade tunnels mirrored from
	// where they were (begun unmirrored, mirroring lost, or taken over)
	Remirrored uint64 `json:"remirrored"`
}

// FastL4Status is how a fastl4 virtual's flows are relayed.
type FastL4Status struct {
	// Relay is what new flows get: "kernel" (eBPF sockmap) or
	// "user: REASON" (kernel_relay off, or the kernel relay unavailable).
	Relay       string `json:"relay"`
	KernelFlows uint64 `json:"kernel_flows"`
	UserFlows   uint64 `json:"user_flows"` // includes map_full
	MapFull     uint64 `json:"map_full"`   // relayed in user space because the socket map was full
	Resets      uint64 `json:"resets"`     // flows ended by a reset (propagated to the other side)
}

// MonitorStatus is the last result of one health monitor on one member.
type MonitorStatus struct {
	Monitor   string    `json:"monitor"`
	Up        bool      `json:"up"`
	Checked   bool      `json:"checked"` // false until the first result
	Reason    string    `json:"reason"`
	LastRun   time.Time `json:"last_run,omitzero"`
	LatencyNS int64     `json:"latency_ns"`
}

// MemberStatus is one pool member (F5: ltm pool members).
type MemberStatus struct {
	Address      string    `json:"address"`      // IP:PORT ("[::1]:80" for IPv6)
	State        string    `json:"state"`        // enabled | disabled | forced-offline
	Health       string    `json:"health"`       // up | down | unchecked
	Availability string    `json:"availability"` // available | offline | unknown | disabled
	Reason       string    `json:"reason"`       // why the last health/state change happened
	Since        time.Time `json:"since,omitzero"`

	Ratio     int `json:"ratio"`
	Priority  int `json:"priority"`
	ConnLimit int `json:"connection_limit"` // 0 = unlimited

	Active          int64  `json:"active_connections"`
	Total           uint64 `json:"total_connections"`
	Requests        uint64 `json:"requests"`
	BytesIn         uint64 `json:"bytes_in"`  // from the member
	BytesOut        uint64 `json:"bytes_out"` // to the member
	Errors          uint64 `json:"errors"`
	PassiveFailures uint64 `json:"passive_failures"`

	LatencyEWMANS   int64 `json:"latency_ewma_ns"`
	SlowRampPercent int   `json:"slow_ramp_percent"` // 100 = full weight

	// Location is local, remote or unknown: where the virtual_location
	// monitor found the member (docs/etherip.md), and why.
	Location       string `json:"location"`
	LocationReason string `json:"location_reason,omitempty"`

	Monitors []MonitorStatus `json:"monitors"`
}

// PoolStatus is one pool (F5: ltm pool) with its members.
type PoolStatus struct {
	Name         string `json:"name"`
	Method       string `json:"method"`       // load-balancing method
	Availability string `json:"availability"` // available | offline
	Available    int    `json:"available_members"`
	Total        int    `json:"total_members"`

	Active     int64  `json:"active_connections"`
	TotalConns uint64 `json:"total_connections"`
	Requests   uint64 `json:"requests"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
	Errors     uint64 `json:"errors"`

	Members []MemberStatus `json:"members"`
}

// ConnectionStatus is one proxied connection (F5: show sys connection): the
// client-side pair and the server-side pair of the full proxy.
type ConnectionStatus struct {
	ID          uint64 `json:"id"`
	Virtual     string `json:"virtual"`
	Proto       string `json:"proto"` // tcp | udp
	Pool        string `json:"pool"`
	Client      string `json:"client"`       // client address
	VirtualAddr string `json:"virtual_addr"` // the address the client connected to
	ServerLocal string `json:"server_local"` // our side of the server connection (SNAT address)
	Server      string `json:"server"`       // the pool member

	Created            time.Time `json:"created,omitzero"`
	AgeSeconds         float64   `json:"age_s"`
	IdleSeconds        float64   `json:"idle_s"`
	IdleTimeoutSeconds float64   `json:"idle_timeout_s"`
	BytesIn            uint64    `json:"bytes_in"`  // from the client
	BytesOut           uint64    `json:"bytes_out"` // to the client
}

// ConnectionDetail is one connection with its detailed view: for tcp and
// http virtuals, each side's TCP profile, every socket option read back
// from the kernel, TCP_INFO (RTT, cwnd, retransmits, delivery rate) and the
// proxy buffers.
type ConnectionDetail struct {
	ConnectionStatus
	Detail json.RawMessage `json:"detail,omitempty"`
}

// PersistenceRecord is one persistence-table entry (F5: show ltm persistence
// persist-records).
type PersistenceRecord struct {
	Key     string `json:"key"`   // table key
	Type    string `json:"type"`  // source-address, cookie, hash, ...
	Value   string `json:"value"` // the persisted value as an operator reads it (e.g. client IP)
	Profile string `json:"profile"`
	Virtual string `json:"virtual"`
	Pool    string `json:"pool"`
	Member  string `json:"member"`

	Created        time.Time `json:"created,omitzero"`
	Expires        time.Time `json:"expires,omitzero"`
	TimeoutSeconds float64   `json:"timeout_s"`
}

// ConnQuery filters the connection table. Empty fields match everything.
type ConnQuery struct {
	Virtual string
	Pool    string
	Member  string // server address
	Client  string // client address or IP
	Limit   int    // 0 = DefaultLimit
}

// PersistQuery filters the persistence table. Empty fields match everything.
type PersistQuery struct {
	Virtual string
	Pool    string
	Profile string
	Member  string // member address the records point to
	Limit   int    // 0 = DefaultLimit
}

// PersistDelete says which persistence records to delete (F5: delete ltm
// persistence persist-records): one record by its table key, or every
// record matching the filters. With neither a key nor a filter, All must be
// set, so a forgotten filter cannot wipe the table.
type PersistDelete struct {
	Key     string // table key as listed ("src|vs_web|web|source_addr|192.0.2.7")
	Virtual string
	Pool    string
	Profile string
	Member  string
	All     bool
}

// ConfigApplied is what a Backend reports after applying a configuration
// posted to the API: whether it was also written to the file the instance
// was started from (so a restart or reload keeps it).
type ConfigApplied struct {
	Persisted bool
	File      string // the file written, or the file that could not be written
	Backup    string // where the previous file was kept ("" if there was none)
	// Reason says why the configuration was not persisted (no file, or
	// the write failed); "" when Persisted.
	Reason string
}

// ConfigSource is the configuration in force as it was applied: the YAML
// source, not a re-rendering of the parsed model.
type ConfigSource struct {
	File string // file it was loaded from; "" when it came through the API or is built in
	YAML []byte
}

// Redacted replaces secret values (management.token, persistence secret)
// in GET /api/v1/config. It is refused if posted back, so a configuration
// copied from GET cannot silently replace a secret with the placeholder.
const Redacted = "(redacted)"

const (
	// DefaultLimit is how many connections or persistence records a query
	// returns when it does not say.
	DefaultLimit = 1000
	// MaxLimit bounds one answer, so a mistyped limit cannot make the
	// management plane build a response of millions of rows in memory.
	MaxLimit = 100000
)

var (
	// ErrNotFound is wrapped by a Backend for an unknown pool, member or
	// virtual server; the API answers 404.
	ErrNotFound = errors.New("not found")
	// ErrBadRequest is wrapped by a Backend for invalid input (a bad state
	// word, an invalid configuration); the API answers 400. For a
	// configuration the error message carries one problem per line.
	ErrBadRequest = errors.New("bad request")
	// ErrUnauthorized is what Client errors unwrap to when the API answered
	// 401 (missing or wrong token).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrConflict is wrapped for a request that conflicts with state
	// elsewhere (config sync: both devices changed); the API answers 409.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable is wrapped when a peer device cannot be reached; the
	// API answers 503.
	ErrUnavailable = errors.New("unavailable")
)

// Backend is what the API shows and changes. The engine implements it. All
// methods must be safe for concurrent use; the read methods return copies
// the API may keep.
type Backend interface {
	Virtuals() []VirtualStatus
	Pools() []PoolStatus
	Connections(q ConnQuery) []ConnectionStatus
	// Connection returns one connection with its detail (ErrNotFound if gone).
	Connection(id uint64) (ConnectionDetail, error)
	Persistence(q PersistQuery) []PersistenceRecord
	// SetMemberState changes a member's runtime state: enabled, disabled
	// (F5 user-disabled: persistent and active connections still allowed)
	// or forced-offline (only active connections continue).
	SetMemberState(pool, member, state string) error
	// LoadConfig validates and applies a whole new configuration and, when
	// the instance runs from a file, writes it there. A validation failure
	// wraps ErrBadRequest and its message has one problem per line; a
	// failed write is not an error (the configuration is applied) but is
	// reported in ConfigApplied.
	LoadConfig(yaml []byte) (ConfigApplied, error)
	// RunningConfig returns the configuration in force as applied
	// (ErrNotFound before the first one).
	RunningConfig() (ConfigSource, error)
	// Reload re-reads the configuration file from disk (same error rules).
	Reload() error
	// KillConnection resets one connection: both sides are aborted (F5:
	// delete sys connection). ErrNotFound if it is not open.
	KillConnection(id uint64) error
	// DeletePersistence deletes persistence records and returns how many.
	// A Key that is not in the table wraps ErrNotFound; a request with
	// neither key, filter nor All wraps ErrBadRequest.
	DeletePersistence(d PersistDelete) (int, error)
}

// NormalizeState maps the words an operator types to a member state the
// Backend understands: enable/enabled, disable/disabled,
// force-offline/forced-offline/forced_offline/offline. ok is false for
// anything else.
func NormalizeState(s string) (state string, ok bool) {
	switch s {
	case "enable", "enabled":
		return "enabled", true
	case "disable", "disabled":
		return "disabled", true
	case "force-offline", "forced-offline", "forced_offline", "offline":
		return "forced-offline", true
	}
	return "", false
}
