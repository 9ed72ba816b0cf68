package virtual

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/sockmap"
	"github.com/fulcrum-adc/fulcrum/isession"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// Plan is everything one virtual server needs, compiled from the
// configuration. It is read-only once published: a reload builds a new Plan.
type Plan struct {
	Name        string
	Type        string // tcp | udp | http | fastl4
	Destination netip.AddrPort
	// TrafficGroup is the traffic group whose floating address is the
	// destination ("" : none). Its listener is opened only where the group
	// is active, with IP_FREEBIND so that it does not wait for the address.
	TrafficGroup string

	Pool  *pool.Pool
	Pools map[string]*pool.Pool // every pool, for match-across-pools persistence records
	// HashKey extracts the consistent-hash key for the pool's method (nil: none).
	HashKey HashKey

	Persist  *persist.Profile // nil: no persistence
	LBSPType byte             // lbsp persistence: the Destination Option type
	// DSRInterface is a dsr virtual's servers' segment.
	DSRInterface string
	Fallback     *persist.Profile // nil: no fallback
	PersistTable *persist.Table
	Conns        *conntrack.Table

	// Clientside and Serverside are the TCP profiles (nil on udp virtuals).
	Clientside, Serverside *tcp.Profile

	SNAT      SNAT
	ClientTLS *tls.Config // nil: plain
	ServerTLS *tls.Config // nil: plain to members
	HTTP      HTTPSettings
	FastL4    FastL4Settings // type fastl4

	// Proxy buffers (F5 proxy-buffer-high/low): ToClient holds data from the
	// server waiting for the client (clientside profile), ToServer the reverse.
	ToClient, ToServer BufferLimits

	IdleTimeout     time.Duration // 0: never reaped
	ConnectTimeout  time.Duration
	ConnectionLimit int // 0: unlimited

	Stats *Stats // per-virtual counters; carried across reloads by name

	// ISession, when set, sends connections through iSession tunnels.
	ISession *ISessionPlan

	// Mirror mirrors the virtual's connections to its traffic group's
	// next-active device (nil: mirror off).
	Mirror ConnMirror
	// Guard is the crash guard of mirrored connections' flows (nil: none).
	Guard FlowGuard

	Log       *slog.Logger
	AccessLog *slog.Logger // nil: off
	// Observer returns the request-latency observer for a member (nil: no histograms).
	Observer func(pool, member string) prometheus.Observer
	// Rejected counts refused input by reason (nil: not counted beyond Stats).
	Rejected func(reason string)

	// DialContext, when set, makes the server-side connections instead of
	// d.DialContext (d carries the SNAT source, timeout and socket options).
	// Tests inject failures through it, as with net/http's Transport.
	DialContext func(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error)

	// NewKernelRelay, when set, creates a fastl4 listener's kernel relay
	// instead of sockmap.New. Tests make it fail to force the user-space
	// fallback.
	NewKernelRelay func(sockmap.Options) (*sockmap.Relay, error)
}

// FastL4Settings is the compiled fastl4 profile (F5: ltm profile fastl4).
type FastL4Settings struct {
	Profile        string
	ResetOnTimeout bool // idle flows end with RST on both sides
	LooseClose     bool // the first FIN ends the flow (after LooseCloseLinger)
	KernelRelay    bool // false: relay in user space
}

// HTTPSettings is the compiled HTTP profile.
type HTTPSettings struct {
	InsertXFF         bool
	MaxHeaderBytes    int
	MaxHeaders        int
	HeaderTimeout     time.Duration
	KeepAliveTimeout  time.Duration
	OneConnect        bool
	MaxIdlePerMember  int
	ServerIdleTimeout time.Duration
	ResponseTimeout   time.Duration
}

// BufferLimits are one direction's proxy-buffer marks in bytes: reading
// stops at High and resumes below Low.
type BufferLimits struct{ High, Low int64 }

// HashKeyKind says what a consistent-hash pool hashes on.
type HashKeyKind uint8

const (
	HashNone HashKeyKind = iota
	HashSourceAddr
	HashURI
	HashHeader
	HashQuery
	HashCookie
)

// HashKey is the compiled consistent-hash key.
type HashKey struct {
	Kind HashKeyKind
	Name string // header, query or cookie name
}

// SNATMode is how the server-side source address is chosen.
type SNATMode uint8

const (
	// SNATAutomap lets the kernel pick the egress interface's address (F5 automap).
	SNATAutomap SNATMode = iota
	// SNATNone keeps the client's address (transparent proxy, IP_TRANSPARENT); the
	// members' route back to the client must pass through this host.
	SNATNone
	// SNATPool binds to one address of a SNAT pool chosen by hashing the client address.
	SNATPool
)

// SNAT is the compiled source-address translation.
type SNAT struct {
	Mode      SNATMode
	Addresses []netip.Addr // SNATPool
}

// Stats are a virtual server's counters.
type Stats struct {
	Active   atomic.Int64
	Total    atomic.Uint64
	Requests atomic.Uint64
	BytesIn  atomic.Uint64 // client → server
	BytesOut atomic.Uint64 // server → client
	Errors   atomic.Uint64 // failures charged to members or to Fulcrum itself
	Rejected atomic.Uint64 // refused input (limits, bad requests, client faults)
	// ClientErrors counts exchanges a client broke: a malformed or truncated
	// request body, an upload that stalled, a client that left mid-response.
	// They are charged here, never to the member.
	ClientErrors atomic.Uint64
	// PersistFallbacks counts connections (tcp) and datagrams (udp) whose
	// first bytes did not give a peeking persistence profile (msrdp, sip,
	// ssl) its identity in time (nothing sent, garbage, no cookie,
	// Call-ID or session ID): they were balanced without that key.
	PersistFallbacks atomic.Uint64

	FastL4   FastL4Stats   // fastl4 virtuals only
	Mirror   MirrorStats   // mirrored virtuals only
	ISession ISessionStats // iSession virtuals only
	LBSP     LBSPStats     // lbsp persistence only
}

// ISessionStats counts an iSession virtual's connections.
type ISessionStats struct {
	Tunneled      atomic.Uint64 // sent through a tunnel
	LocalFallback atomic.Uint64 // served from the local pool: no tunnel could be set up
	Refused       atomic.Uint64 // no tunnel and no local pool
}

// MirrorStats counts a mirrored virtual's connections.
type MirrorStats struct {
	Mirrored   atomic.Uint64 // connections whose state reached the mirror channel
	Unmirrored atomic.Uint64 // served without a mirror: no peer streaming, or the sockets could not be read
	Lost       atomic.Uint64 // mirroring ended before the connection did (channel broke)
	Restored   atomic.Uint64 // taken over from the previous active device
	Resets     atomic.Uint64 // taken over but reset: the old active had acknowledged bytes the mirror never got
	// ResetHalfClosed: taken over half-closed (a side had sent its FIN),
	// so reset on both sides rather than left half open.
	ResetHalfClosed atomic.Uint64
	HandedOver      atomic.Uint64 // frozen and handed to the peer in a planned failover
	// Remirrored: tcp connections (and http upgrade tunnels) mirrored from
	// where they were: begun unmirrored, mirroring lost, or taken over.
	Remirrored atomic.Uint64
}

// FastL4Stats counts how a fastl4 virtual's flows were relayed.
type FastL4Stats struct {
	KernelFlows atomic.Uint64 // handed to the kernel relay
	UserFlows   atomic.Uint64 // relayed in user space (kernel relay off, unavailable or full)
	MapFull     atomic.Uint64 // of those, because the socket map was full
	Resets      atomic.Uint64 // flows ended by a reset one side sent (the other side reset too)
	// Mode is the relay new flows get: "kernel", or "user: REASON".
	Mode atomic.Pointer[string]
}

// RelayMode is the relay new flows of a fastl4 virtual get ("" for other types).
func (s *FastL4Stats) RelayMode() string {
	if m := s.Mode.Load(); m != nil {
		return *m
	}
	return ""
}

func (p *Plan) reject(reason string) {
	p.Stats.Rejected.Add(1)
	if p.Rejected != nil {
		p.Rejected(reason)
	}
}

// ISessionPlan sends a virtual's connections through iSession tunnels
// (the remote end): the Plan's Pool holds the endpoints (the data-center
// sites' listeners) and Tunnels the tunnel connections to them.
type ISessionPlan struct {
	Tunnels *isession.Pool
	Profile string
	// Local serves connections when no tunnel can be set up (the
	// virtual's own pool; nil: none, they are refused).
	Local *Plan
	// down is set while tunnels cannot be set up, so the change is logged
	// once rather than per connection.
	down atomic.Bool
}
