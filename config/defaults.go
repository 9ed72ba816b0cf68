package config

import (
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// Defaults. Each is what a field holds after Parse when the operator left it
// out; docs/configuration.md quotes them.
const (
	DefaultManagementAddress = "127.0.0.1:9090"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "text"
	DefaultAccessLog         = "off"
	DefaultAccessLogFormat   = "json"
	DefaultSyslogSocket      = "/dev/log"
	DefaultMgmtMaxConns      = 64
	// DefaultPersistenceRecords bounds the persistence table: about 200
	// bytes a record, so some 200 MB when full.
	DefaultPersistenceRecords = 1_000_000

	DefaultMonitorInterval    = Duration(5 * time.Second)
	DefaultMonitorTimeout     = Duration(16 * time.Second) // 3 × interval + 1s (F5 rule) for the default interval
	DefaultMonitorDestination = "*:*"
	DefaultHTTPMonitorSend    = "GET / HTTP/1.0\r\n\r\n"

	DefaultLBMethod               = "round-robin"
	DefaultSlowRampTime           = Duration(10 * time.Second)
	DefaultPassiveFailures        = 3
	DefaultPassiveFailureInterval = Duration(10 * time.Second)
	DefaultPassiveRetryTime       = Duration(30 * time.Second)
	DefaultRatio                  = 1
	DefaultMemberState            = "enabled"

	DefaultMaxHeaderSize     = Size(32 << 10)
	DefaultMaxHeaderCount    = 64
	DefaultHeaderTimeout     = Duration(10 * time.Second)
	DefaultKeepAliveTimeout  = Duration(60 * time.Second)
	DefaultMaxIdlePerMember  = 64
	DefaultServerIdleTimeout = Duration(30 * time.Second)
	DefaultResponseTimeout   = Duration(60 * time.Second)

	DefaultTLSMinVersion = "1.2"
	DefaultALPN          = "http/1.1" // offered by client_ssl profiles of http virtuals

	DefaultPersistenceTimeout = Duration(180 * time.Second)
	DefaultPrefixV4           = 32
	DefaultPrefixV6           = 128
	DefaultCookiePath         = "/"
	DefaultPeekTimeout        = Duration(5 * time.Second) // msrdp, sip, ssl
	DefaultPeekMaxBytes       = Size(4 << 10)

	DefaultFastL4IdleTimeout = Duration(300 * time.Second) // F5 fastl4 idle-timeout
	DefaultFastL4Mode        = "preserve"                  // tcp_timestamp_mode, tcp_wscale_mode
	DefaultKernelRelay       = "off"

	DefaultSNAT           = SNATAutomap
	DefaultIdleTimeoutTCP = Duration(300 * time.Second) // tcp and http virtuals
	DefaultIdleTimeoutUDP = Duration(60 * time.Second)
	DefaultConnectTimeout = Duration(5 * time.Second)
	// DefaultUDPConnectionLimit bounds a udp virtual's flow table: spoofed
	// source ports make flows without a handshake. Each flow is one socket
	// (file descriptor) and about 2 KiB, so 10,000 flows take 10,000
	// descriptors and about 20 MiB.
	DefaultUDPConnectionLimit = 10000
	// DefaultDSRFlows bounds a dsr virtual's flow table (anyone can send
	// SYNs from spoofed addresses).
	DefaultDSRFlows = 100000
)

// Keywords with a meaning of their own.
const (
	// SNATAutomap translates the client address to the address the
	// operating system picks for the connection to the member.
	SNATAutomap = "automap"
	// SNATNone keeps the client's address on the server side.
	SNATNone = "none"
	// ManagementOff disables the management listener.
	ManagementOff = "off"
)

// Names of the built-in objects. An object of the same name in the file
// replaces the built-in one.
const (
	// DefaultTCPProfile is the profile of a tcp or http virtual that names
	// none: buffers sized from the path (tcp-progressive), not the
	// reference's fixed 64 KB, which caps a single stream on a fast LAN.
	DefaultTCPProfile   = tcp.BuiltinProgressive
	BuiltinHTTPProfile  = "http"
	BuiltinFastL4       = "fastl4"
	BuiltinSourceAddr   = "source_addr"
	BuiltinCookieInsert = "cookie_insert"
	BuiltinCookie       = "cookie" // F5's name for the cookie-insert profile
	BuiltinTCPMonitor   = "tcp"
	BuiltinHTTPMonitor  = "http"
	BuiltinHTTPSMonitor = "https"
	BuiltinUDPMonitor   = "udp"
	// BuiltinVirtualLocation is F5's virtual_location monitor.
	BuiltinVirtualLocation = "virtual_location"
)

// Limits enforced by validation.
const (
	MaxRatio              = pool.MaxRatio                    // member ratio is 1..MaxRatio; pool owns the limit
	MinMonitorInterval    = Duration(100 * time.Millisecond) // shortest monitor interval
	MinCookieSecretLength = 16                               // cookie_insert secret, bytes
	MinMaxHeaderSize      = Size(1 << 10)
	MaxMaxHeaderSize      = Size(1 << 20)
	MaxMaxHeaderCount     = 1000

	maxPEMFile             = 1 << 20
	maxTokenFile           = 64 << 10
	monitorTimeoutFactorF5 = 3
)

// builtins adds the objects that exist without being declared.
func (v *validator) builtins() {
	c := v.cfg
	if c.Monitors == nil {
		c.Monitors = map[string]*Monitor{}
	}
	addIfMissing(c.Monitors, BuiltinTCPMonitor, &Monitor{Type: "tcp"})
	addIfMissing(c.Monitors, BuiltinHTTPMonitor, &Monitor{Type: "http", Send: DefaultHTTPMonitorSend})
	addIfMissing(c.Monitors, BuiltinHTTPSMonitor, &Monitor{Type: "https", Send: DefaultHTTPMonitorSend})
	addIfMissing(c.Monitors, BuiltinUDPMonitor, &Monitor{Type: "udp"})
	addIfMissing(c.Monitors, BuiltinVirtualLocation, &Monitor{Type: "virtual_location"})

	pr := &c.Profiles
	if pr.Persistence == nil {
		pr.Persistence = map[string]*PersistenceProfile{}
	}
	addIfMissing(pr.Persistence, BuiltinSourceAddr, &PersistenceProfile{Type: "source_addr"})
	addIfMissing(pr.Persistence, BuiltinCookieInsert, &PersistenceProfile{Type: "cookie_insert"})
	addIfMissing(pr.Persistence, BuiltinCookie, &PersistenceProfile{Type: "cookie_insert"})
	if pr.HTTP == nil {
		pr.HTTP = map[string]*HTTPProfile{}
	}
	addIfMissing(pr.HTTP, BuiltinHTTPProfile, &HTTPProfile{})
	if pr.FastL4 == nil {
		pr.FastL4 = map[string]*FastL4Profile{}
	}
	addIfMissing(pr.FastL4, BuiltinFastL4, &FastL4Profile{IdleTimeout: DefaultFastL4IdleTimeout})
	if pr.TCP == nil {
		pr.TCP = map[string]*TCPProfile{}
	}
	// The built-in TCP profiles are listed with empty settings (they cannot
	// be redefined); Config.TCP holds their values.
	for name := range tcp.Builtins() {
		addIfMissing(pr.TCP, name, &TCPProfile{})
	}
	if pr.ClientSSL == nil {
		pr.ClientSSL = map[string]*ClientSSLProfile{}
	}
	if pr.ServerSSL == nil {
		pr.ServerSSL = map[string]*ServerSSLProfile{}
	}
	if c.Pools == nil {
		c.Pools = map[string]*Pool{}
	}
	if c.Virtuals == nil {
		c.Virtuals = map[string]*Virtual{}
	}
	if c.SNATPools == nil {
		c.SNATPools = map[string]*SNATPool{}
	}
}

func addIfMissing[T any](m map[string]*T, name string, obj *T) {
	if _, ok := m[name]; !ok {
		m[name] = obj
	}
}

// fillNil replaces objects written with an empty value ("web:") by empty
// objects, so that validation reports what they lack instead of crashing.
func fillNil[T any](m map[string]*T) {
	for k, v := range m {
		if v == nil {
			m[k] = new(T)
		}
	}
}

// complete fills in built-ins and defaults and resolves file paths: after
// it, the engine can read every field without checking for zero.
func (v *validator) complete() {
	c, p := v.cfg, v.p
	fillNil(c.Monitors)
	fillNil(c.Pools)
	fillNil(c.SNATPools)
	fillNil(c.Virtuals)
	fillNil(c.Profiles.HTTP)
	fillNil(c.Profiles.ClientSSL)
	fillNil(c.Profiles.ServerSSL)
	fillNil(c.Profiles.Persistence)
	fillNil(c.Profiles.TCP)
	fillNil(c.Profiles.FastL4)
	v.userTCP = sortedKeys(c.Profiles.TCP)
	v.resolveTCP()
	v.builtins()

	if c.Management.Address == "" {
		c.Management.Address = DefaultManagementAddress
	}
	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
	if c.Log.AccessLog == "" {
		c.Log.AccessLog = DefaultAccessLog
	}
	if c.Log.AccessLogFormat == "" {
		c.Log.AccessLogFormat = DefaultAccessLogFormat
	}
	if c.Log.SyslogSocket == "" {
		c.Log.SyslogSocket = DefaultSyslogSocket
	}
	if c.Management.MaxConnections == 0 {
		c.Management.MaxConnections = DefaultMgmtMaxConns
	}
	if !p.has("limits.persistence_records") {
		c.Limits.PersistenceRecords = DefaultPersistenceRecords
	}

	for name, m := range c.Monitors {
		path := "monitors." + name
		if !p.has(path + ".interval") {
			m.Interval = DefaultMonitorInterval
		}
		if !p.has(path + ".timeout") {
			// F5 derives the default timeout from the interval (3n+1).
			m.Timeout = DefaultMonitorTimeout
			if m.Interval > 0 && m.Interval != Indefinite {
				m.Timeout = monitorTimeoutFactorF5*m.Interval + Duration(time.Second)
			}
		}
		if m.Destination == "" {
			m.Destination = DefaultMonitorDestination
		}
		if (m.Type == "http" || m.Type == "https") && m.Send == "" {
			m.Send = DefaultHTTPMonitorSend
		}
	}

	for name, pl := range c.Pools {
		path := "pools." + name
		if pl.LBMethod == "" {
			pl.LBMethod = DefaultLBMethod
		}
		if !p.has(path + ".slow_ramp_time") {
			pl.SlowRampTime = DefaultSlowRampTime
		}
		if pl.Passive == nil {
			pl.Passive = &Passive{}
		}
		pp := pl.Passive
		if pp.Enabled == nil {
			pp.Enabled = ptr(true)
		}
		if !p.has(path + ".passive.failures") {
			pp.Failures = DefaultPassiveFailures
		}
		if !p.has(path + ".passive.failure_interval") {
			pp.FailureInterval = DefaultPassiveFailureInterval
		}
		if !p.has(path + ".passive.retry_time") {
			pp.RetryTime = DefaultPassiveRetryTime
		}
		for i, m := range pl.Members {
			if m == nil {
				m = &Member{}
				pl.Members[i] = m
			}
			mp := memberPath(name, i)
			if !p.has(mp + ".ratio") {
				m.Ratio = DefaultRatio
			}
			if m.State == "" {
				m.State = DefaultMemberState
			}
		}
	}

	for name, h := range c.Profiles.HTTP {
		path := "profiles.http." + name
		if h.InsertXForwardedFor == nil {
			h.InsertXForwardedFor = ptr(true)
		}
		if h.OneConnect == nil {
			h.OneConnect = ptr(true)
		}
		if !p.has(path + ".max_header_size") {
			h.MaxHeaderSize = DefaultMaxHeaderSize
		}
		if !p.has(path + ".max_header_count") {
			h.MaxHeaderCount = DefaultMaxHeaderCount
		}
		if !p.has(path + ".header_timeout") {
			h.HeaderTimeout = DefaultHeaderTimeout
		}
		if !p.has(path + ".keepalive_timeout") {
			h.KeepAliveTimeout = DefaultKeepAliveTimeout
		}
		if !p.has(path + ".max_idle_per_member") {
			h.MaxIdlePerMember = DefaultMaxIdlePerMember
		}
		if !p.has(path + ".server_idle_timeout") {
			h.ServerIdleTimeout = DefaultServerIdleTimeout
		}
		if !p.has(path + ".response_timeout") {
			h.ResponseTimeout = DefaultResponseTimeout
		}
	}

	for name, f := range c.Profiles.FastL4 {
		if !p.has("profiles.fastl4." + name + ".idle_timeout") {
			f.IdleTimeout = DefaultFastL4IdleTimeout
		}
		if f.ResetOnTimeout == nil {
			f.ResetOnTimeout = ptr(true)
		}
		if f.TCPTimestampMode == "" {
			f.TCPTimestampMode = DefaultFastL4Mode
		}
		if f.TCPWScaleMode == "" {
			f.TCPWScaleMode = DefaultFastL4Mode
		}
		if f.KernelRelay == "" {
			f.KernelRelay = DefaultKernelRelay
		}
	}

	for _, s := range c.Profiles.ClientSSL {
		if s.MinVersion == "" {
			s.MinVersion = DefaultTLSMinVersion
		}
	}
	for _, s := range c.Profiles.ServerSSL {
		if s.MinVersion == "" {
			s.MinVersion = DefaultTLSMinVersion
		}
	}

	for name, pp := range c.Profiles.Persistence {
		path := "profiles.persistence." + name
		if !p.has(path+".timeout") && pp.Type != "cookie_insert" && pp.Type != "hash" {
			// cookie_insert: no timeout means a session cookie (F5 default);
			// hash keeps no records, so nothing times out.
			pp.Timeout = DefaultPersistenceTimeout
		}
		if peeks(pp.Type) {
			if !p.has(path + ".peek_timeout") {
				pp.PeekTimeout = DefaultPeekTimeout
			}
			if !p.has(path + ".peek_max_bytes") {
				pp.PeekMaxBytes = DefaultPeekMaxBytes
			}
		}
		if pp.PrefixV4 == nil {
			pp.PrefixV4 = ptr(DefaultPrefixV4)
		}
		if pp.PrefixV6 == nil {
			pp.PrefixV6 = ptr(DefaultPrefixV6)
		}
		if pp.CookiePath == "" {
			pp.CookiePath = DefaultCookiePath
		}
		if pp.HTTPOnly == nil {
			pp.HTTPOnly = ptr(true)
		}
	}

	for name, vs := range c.Virtuals {
		path := "virtuals." + name
		if vs.Type == "http" && vs.HTTP == "" {
			vs.HTTP = BuiltinHTTPProfile
		}
		if vs.Type == "fastl4" && vs.FastL4 == "" {
			vs.FastL4 = BuiltinFastL4
		}
		if vs.SNAT == "" {
			vs.SNAT = DefaultSNAT
		}
		if vs.ClientsideTCP == "" {
			vs.ClientsideTCP = DefaultTCPProfile
		}
		if vs.ServersideTCP == "" {
			vs.ServersideTCP = vs.ClientsideTCP
		}
		if !p.has(path + ".idle_timeout") {
			// F5 keeps the idle timeout in the TCP profile: a tcp or http
			// virtual takes its clientside profile's.
			vs.IdleTimeout = DefaultIdleTimeoutTCP
			if prof, ok := c.TCP[vs.ClientsideTCP]; ok && vs.Type != "udp" {
				vs.IdleTimeout = Duration(prof.IdleTimeout)
				if prof.IdleTimeout == 0 {
					vs.IdleTimeout = Indefinite
				}
			}
			if vs.Type == "udp" {
				vs.IdleTimeout = DefaultIdleTimeoutUDP
			}
			// A fastl4 virtual's idle timeout is its fastl4 profile's (F5).
			if f, ok := c.Profiles.FastL4[vs.FastL4]; ok && vs.Type == "fastl4" {
				vs.IdleTimeout = f.IdleTimeout
				if f.IdleTimeout == 0 {
					vs.IdleTimeout = Indefinite
				}
			}
		}
		if !p.has(path + ".connect_timeout") {
			vs.ConnectTimeout = DefaultConnectTimeout
		}
		if vs.Type == "udp" && !p.has(path+".connection_limit") {
			vs.ConnectionLimit = DefaultUDPConnectionLimit
		}
		if vs.Type == "dsr" && !p.has(path+".connection_limit") {
			vs.ConnectionLimit = DefaultDSRFlows
		}
		if vs.Enabled == nil {
			vs.Enabled = ptr(true)
		}
	}

	v.resolvePaths()
	v.completeHA()
}

// resolvePaths makes every file path absolute, relative paths being taken
// from the configuration file's directory (as HAProxy and nginx do), so
// that the running process does not depend on its working directory.
func (v *validator) resolvePaths() {
	c := v.cfg
	base := "."
	if c.File != "" {
		base = filepath.Dir(c.File)
	}
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	res := func(s *string) {
		if *s == "" || filepath.IsAbs(*s) {
			return
		}
		*s = filepath.Join(base, *s)
	}
	res(&c.Management.TokenFile)
	if c.Management.StateFile != ManagementOff {
		res(&c.Management.StateFile)
	}
	switch strings.ToLower(c.Log.AccessLog) {
	case "off", "stderr", "stdout", "syslog":
	default:
		res(&c.Log.AccessLog)
	}
	for _, s := range c.Profiles.ClientSSL {
		res(&s.Cert)
		res(&s.Key)
		for i := range s.SNI {
			res(&s.SNI[i].Cert)
			res(&s.SNI[i].Key)
		}
	}
	for _, s := range c.Profiles.ServerSSL {
		res(&s.CA)
		res(&s.Cert)
		res(&s.Key)
	}
}

func ptr[T any](v T) *T { return &v }

func memberPath(pool string, i int) string {
	return "pools." + pool + ".members[" + strconv.Itoa(i) + "]"
}
