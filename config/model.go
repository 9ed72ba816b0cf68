package config

import "github.com/fulcrum-adc/fulcrum/profile/tcp"

// This file is the configuration schema: every key an operator can write.
// docs/configuration.md documents each one; keep the two in step.

// Config is one whole configuration file.
type Config struct {
	Management Management           `yaml:"management"`
	Log        Log                  `yaml:"log"`
	Monitors   map[string]*Monitor  `yaml:"monitors"`
	Pools      map[string]*Pool     `yaml:"pools"`
	Profiles   Profiles             `yaml:"profiles"`
	SNATPools  map[string]*SNATPool `yaml:"snat_pools"`
	Virtuals   map[string]*Virtual  `yaml:"virtuals"`
	Limits     Limits               `yaml:"limits"`
	ISession   ISession             `yaml:"isession"`

	// Networks Fulcrum owns on the host (config/network.go;
	// docs/etherip.md).
	VLANs      map[string]*VLAN      `yaml:"vlans"`
	VLANGroups map[string]*VLANGroup `yaml:"vlan_groups"`
	Tunnels    map[string]*Tunnel    `yaml:"tunnels"`
	SelfIPs    map[string]*SelfIP    `yaml:"self_ips"`

	// High availability (config/ha.go; docs/ha.md).
	Local         Local                    `yaml:"local"`
	Devices       map[string]*Device       `yaml:"devices"`
	Failover      Failover                 `yaml:"failover"`
	TrafficGroups map[string]*TrafficGroup `yaml:"traffic_groups"`
	ConfigSync    ConfigSync               `yaml:"config_sync"`

	// TCP is every TCP profile, resolved (inheritance applied, built-ins
	// included): what the engine reads. Virtuals name these in
	// clientside_tcp and serverside_tcp.
	TCP map[string]*tcp.Profile `yaml:"-"`

	// File is the path the configuration was read from ("" for built-in or API input).
	File string `yaml:"-"`
	// Source is the YAML this configuration was parsed from, as given
	// (GET /api/v1/config shows it).
	Source []byte `yaml:"-"`
	// Notices are non-fatal findings from validation (printed by `check`, logged by `run`).
	Notices []string `yaml:"-"`
	// lines maps object paths ("pools.web.members[1].address") to source lines.
	lines map[string]int
}

// Management is the REST API / metrics / dashboard listener.
type Management struct {
	Address   string `yaml:"address"`    // default 127.0.0.1:9090; "off" disables
	Token     string `yaml:"token"`      // bearer token; empty = no auth
	TokenFile string `yaml:"token_file"` // file holding the token
	// MaxConnections caps concurrent API connections; more wait in the
	// kernel's accept queue (default 64).
	MaxConnections int    `yaml:"max_connections"`
	StateFile      string `yaml:"state_file"` // runtime member states; default <config file>.state; "off" disables
}

// Limits bound the tables that clients can grow and that no other setting
// bounds (HAProxy: a stick-table's size).
type Limits struct {
	// PersistenceRecords caps the persistence table (every profile's
	// records together); default 1,000,000.
	PersistenceRecords int `yaml:"persistence_records"`
}

// Log controls the structured log and the HTTP access log.
type Log struct {
	Level     string `yaml:"level"`      // debug | info | warn | error (default info)
	Format    string `yaml:"format"`     // text | json (default text)
	AccessLog string `yaml:"access_log"` // off | stderr | stdout | syslog | PATH (default off)
	// AccessLogFormat is json (one object per line) or text (HAProxy-like).
	AccessLogFormat string `yaml:"access_log_format"` // default json
	SyslogSocket    string `yaml:"syslog_socket"`     // access_log syslog: local socket (default /dev/log)
}

// Monitor is a health monitor (F5: ltm monitor).
type Monitor struct {
	Type         string   `yaml:"type"`          // tcp | http | https | udp | virtual_location
	Interval     Duration `yaml:"interval"`      // default 5s
	UpInterval   Duration `yaml:"up_interval"`   // default 0 = use interval
	Timeout      Duration `yaml:"timeout"`       // default 3 × interval + 1s (16s for the default interval)
	TimeUntilUp  Duration `yaml:"time_until_up"` // default 0
	Send         string   `yaml:"send"`          // bytes to send (tcp/udp) or the request (http/https)
	Receive      string   `yaml:"receive"`       // regex the response must match (empty = any)
	Status       []int    `yaml:"status"`        // http/https: accepted status codes (empty = any)
	Destination  string   `yaml:"destination"`   // "*:*" (default), "*:PORT", "IP:PORT"
	ServerName   string   `yaml:"server_name"`   // https: SNI
	ReverseMatch bool     `yaml:"reverse"`       // F5 reverse: a receive match marks the member down
}

// Pool is a load-balancing pool (F5: ltm pool).
type Pool struct {
	LBMethod         string    `yaml:"lb_method"`          // default round-robin
	HashKey          string    `yaml:"hash_key"`           // consistent-hash key: source_addr | uri | header:NAME | query:NAME | cookie:NAME
	Monitors         []string  `yaml:"monitors"`           // monitor names
	MonitorMinUp     int       `yaml:"monitor_min_up"`     // 0 = all monitors must pass; N = at least N
	MinActiveMembers int       `yaml:"min_active_members"` // priority group activation; 0 = off
	SlowRampTime     Duration  `yaml:"slow_ramp_time"`     // default 10s
	Passive          *Passive  `yaml:"passive"`            // passive (inband) failure detection
	Members          []*Member `yaml:"members"`
}

// Passive is passive failure detection from live traffic (F5: inband monitor).
type Passive struct {
	Enabled         *bool    `yaml:"enabled"`          // default true
	Failures        int      `yaml:"failures"`         // default 3
	FailureInterval Duration `yaml:"failure_interval"` // default 10s
	RetryTime       Duration `yaml:"retry_time"`       // default 30s
}

// Member is one pool member (F5: pool member, node:port).
type Member struct {
	Address         string `yaml:"address"`          // IP:PORT
	Ratio           int    `yaml:"ratio"`            // default 1
	ConnectionLimit int    `yaml:"connection_limit"` // 0 = unlimited
	Priority        int    `yaml:"priority"`         // priority group; higher is preferred (default 0)
	State           string `yaml:"state"`            // enabled | disabled | forced-offline
}

// Profiles holds every named profile by kind.
type Profiles struct {
	HTTP        map[string]*HTTPProfile        `yaml:"http"`
	ClientSSL   map[string]*ClientSSLProfile   `yaml:"client_ssl"`
	ServerSSL   map[string]*ServerSSLProfile   `yaml:"server_ssl"`
	Persistence map[string]*PersistenceProfile `yaml:"persistence"`
	TCP         map[string]*TCPProfile         `yaml:"tcp"`
	ISession    map[string]*ISessionProfile    `yaml:"isession"`
	FastL4      map[string]*FastL4Profile      `yaml:"fastl4"`
}

// FastL4Profile controls a fastl4 virtual (F5: ltm profile fastl4). The
// built-in profile "fastl4" holds the defaults; docs/fastl4.md maps each
// key onto F5's.
type FastL4Profile struct {
	IdleTimeout      Duration `yaml:"idle_timeout"`       // default 300s; indefinite: never
	ResetOnTimeout   *bool    `yaml:"reset_on_timeout"`   // default true: RST both sides when idle
	LooseClose       bool     `yaml:"loose_close"`        // default false: end the flow on the first FIN
	LooseInitiation  bool     `yaml:"loose_initiation"`   // default false; true is refused (needs packet forwarding)
	TCPTimestampMode string   `yaml:"tcp_timestamp_mode"` // preserve (default; strip and rewrite are refused)
	TCPWScaleMode    string   `yaml:"tcp_wscale_mode"`    // preserve (default; strip and rewrite are refused)
	KernelRelay      string   `yaml:"kernel_relay"`       // on (default) | off: relay in user space
}

// HTTPProfile controls the HTTP/1.1 full proxy (F5: http profile + oneconnect).
type HTTPProfile struct {
	InsertXForwardedFor *bool    `yaml:"insert_xforwarded_for"` // default true
	MaxHeaderSize       Size     `yaml:"max_header_size"`       // default 32KiB (F5 max-header-size)
	MaxHeaderCount      int      `yaml:"max_header_count"`      // default 64 (F5 max-header-count)
	HeaderTimeout       Duration `yaml:"header_timeout"`        // default 10s: whole request head must arrive in this time
	KeepAliveTimeout    Duration `yaml:"keepalive_timeout"`     // default 60s: idle client keep-alive
	OneConnect          *bool    `yaml:"oneconnect"`            // default true: reuse server-side connections
	MaxIdlePerMember    int      `yaml:"max_idle_per_member"`   // default 64
	ServerIdleTimeout   Duration `yaml:"server_idle_timeout"`   // default 30s
	ResponseTimeout     Duration `yaml:"response_timeout"`      // default 60s: wait for response head
}

// ClientSSLProfile terminates TLS from clients (F5: client-ssl profile).
type ClientSSLProfile struct {
	Cert       string    `yaml:"cert"`        // PEM file
	Key        string    `yaml:"key"`         // PEM file
	SNI        []SNICert `yaml:"sni"`         // extra certificates chosen by server name
	MinVersion string    `yaml:"min_version"` // 1.0 | 1.1 | 1.2 | 1.3 (default 1.2)
	ALPN       []string  `yaml:"alpn"`        // default [http/1.1] on http virtuals
}

// SNICert is one certificate served for the listed names.
type SNICert struct {
	ServerNames []string `yaml:"server_names"` // names (wildcards "*.example.com" allowed); default: names in the certificate
	Cert        string   `yaml:"cert"`
	Key         string   `yaml:"key"`
}

// ServerSSLProfile re-encrypts to the pool member (F5: server-ssl profile).
type ServerSSLProfile struct {
	ServerName string `yaml:"server_name"` // SNI sent to the server
	Verify     bool   `yaml:"verify"`      // verify the server certificate (default false, as F5)
	CA         string `yaml:"ca"`          // PEM bundle for verification (default: system roots)
	MinVersion string `yaml:"min_version"` // default 1.2
	Cert       string `yaml:"cert"`        // client certificate (optional)
	Key        string `yaml:"key"`
}

// PersistenceProfile is a session-persistence method (F5: persistence profile).
type PersistenceProfile struct {
	Type               string   `yaml:"type"`                  // source_addr | dest_addr | cookie_insert | cookie_passive | universal | hash | msrdp | sip | ssl | lbsp
	Timeout            Duration `yaml:"timeout"`               // default 180s (table entries); cookie_insert: cookie expiry, 0 = session cookie; hash: none (no table)
	PrefixV4           *int     `yaml:"prefix_v4"`             // source_addr, dest_addr, msrdp fallback, hash source_addr: IPv4 mask length (default 32)
	PrefixV6           *int     `yaml:"prefix_v6"`             // the same for IPv6 (default 128)
	CookieName         string   `yaml:"cookie_name"`           // cookie_insert default FULCRUM_<pool>; cookie_passive: required
	CookiePath         string   `yaml:"cookie_path"`           // default /
	CookieDomain       string   `yaml:"cookie_domain"`         // default none
	HTTPOnly           *bool    `yaml:"httponly"`              // default true
	Secure             bool     `yaml:"secure"`                // default false
	Secret             string   `yaml:"secret"`                // cookie_insert HMAC key; default random per start
	Key                string   `yaml:"key"`                   // universal: header:NAME | uri | query:NAME | cookie:NAME; hash: the same or source_addr
	PeekTimeout        Duration `yaml:"peek_timeout"`          // msrdp, sip, ssl: longest wait for the client's first bytes (default 5s)
	PeekMaxBytes       Size     `yaml:"peek_max_bytes"`        // msrdp, sip, ssl: most first bytes read before choosing (default 4KiB)
	MatchAcrossVirtual bool     `yaml:"match_across_virtuals"` // one record shared by every virtual
	MatchAcrossPools   bool     `yaml:"match_across_pools"`    // a record may point into another pool
	Mirror             bool     `yaml:"mirror"`                // replicate records to the traffic group's next-active device (HA)
	OptionType         *int     `yaml:"option_type"`           // lbsp: the Destination Option's type (default 0x1E = 30)
}

// TCPProfile is a TCP profile as written (F5: ltm profile tcp): every key is
// optional and inherits from parent (default tcp). Config.TCP holds the
// resolved profiles; docs/tcp-profiles.md documents every key.
type TCPProfile = tcp.Settings

// SNATPool is a list of translation addresses (F5: ltm snatpool).
type SNATPool struct {
	Addresses []string `yaml:"addresses"`
}

// Virtual is a virtual server (F5: ltm virtual, "Standard" type).
type Virtual struct {
	Destination         string   `yaml:"destination"`          // IP:PORT to listen on
	Type                string   `yaml:"type"`                 // tcp | udp | http | fastl4 | dsr
	Pool                string   `yaml:"pool"`                 // default pool
	Persistence         string   `yaml:"persistence"`          // persistence profile name
	FallbackPersistence string   `yaml:"fallback_persistence"` // used when the primary finds nothing to go on
	SNAT                string   `yaml:"snat"`                 // automap (default) | none | SNAT pool name
	HTTP                string   `yaml:"http_profile"`         // default built-in "http" for type http
	FastL4              string   `yaml:"fastl4_profile"`       // default built-in "fastl4" for type fastl4
	ClientSSL           string   `yaml:"client_ssl"`           // client-ssl profile: terminate TLS
	ServerSSL           string   `yaml:"server_ssl"`           // server-ssl profile: re-encrypt to members
	ClientsideTCP       string   `yaml:"clientside_tcp"`       // TCP profile for the client side (default tcp-progressive)
	ServersideTCP       string   `yaml:"serverside_tcp"`       // TCP profile for the server side (default: clientside's)
	IdleTimeout         Duration `yaml:"idle_timeout"`         // default 300s (tcp/http), 60s (udp), the fastl4 profile's (fastl4)
	ConnectTimeout      Duration `yaml:"connect_timeout"`      // default 5s
	ConnectionLimit     int      `yaml:"connection_limit"`     // 0 = unlimited (tcp/http); udp: flows, default 10000, ≥ 1
	Enabled             *bool    `yaml:"enabled"`              // default true
	Mirror              bool     `yaml:"mirror"`               // connection mirroring to the traffic group's next-active device (F5: Connection Mirroring)
	ISession            string   `yaml:"isession"`             // iSession profile: send connections through a tunnel to another site
	ISessionEndpoints   string   `yaml:"isession_endpoints"`   // pool of the remote sites' iSession listener addresses
	Interface           string   `yaml:"interface"`            // dsr: the servers' segment, where frames go to the members' MAC addresses

	// TrafficGroup is the traffic group whose floating addresses hold the
	// destination ("" when none): the virtual listens only where that group
	// is active.
	TrafficGroup string `yaml:"-"`
}
