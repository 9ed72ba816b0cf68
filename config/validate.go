package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-adc/fulcrum/lbsp"
	"github.com/fulcrum-adc/fulcrum/monitor"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/profile/ssl"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// validator completes and checks one decoded configuration. It never stops
// at the first problem: every rule runs and adds what it finds.
type validator struct {
	cfg     *Config
	p       *parser
	userTCP []string        // profiles.tcp entries written in the file
	once    map[string]bool // problems reported once although found from several places
}

func (v *validator) errorf(path, format string, args ...any) {
	if v.p.suppressed(path) {
		return
	}
	v.p.add(v.p.lineFor(path), path, format, args...)
}

// errorOnce reports a problem about a shared object (a profile used by
// several virtuals) only the first time.
func (v *validator) errorOnce(path, format string, args ...any) {
	if v.once == nil {
		v.once = map[string]bool{}
	}
	key := path + "\x00" + fmt.Sprintf(format, args...)
	if v.once[key] {
		return
	}
	v.once[key] = true
	v.errorf(path, format, args...)
}

func (v *validator) notice(path, format string, args ...any) {
	if v.once == nil {
		v.once = map[string]bool{}
	}
	msg := fmt.Sprintf(format, args...)
	if v.once["notice\x00"+path+msg] {
		return
	}
	v.once["notice\x00"+path+msg] = true
	v.p.notices = append(v.p.notices, &Error{File: v.p.file, Line: v.p.lineFor(path), Path: path, Msg: msg})
}

func (v *validator) validate() {
	v.names()
	v.management()
	v.limits()
	v.logging()
	v.monitors()
	v.pools()
	v.httpProfiles()
	v.clientSSL()
	v.serverSSL()
	v.persistence()
	v.tcpProfiles()
	v.fastL4Profiles()
	v.snatPools()
	v.isession()
	v.virtuals()
	v.listeners()
	v.network()
	v.ha()

	sortErrors(v.p.notices)
	for _, n := range v.p.notices {
		v.cfg.Notices = append(v.cfg.Notices, n.Error())
	}
}

// oneOf checks an enumerated keyword.
func (v *validator) oneOf(path, what, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	if value == "" {
		v.errorf(path, "%s is required: one of %s", what, strings.Join(allowed, ", "))
		return false
	}
	msg := fmt.Sprintf("%s %q is not valid: use one of %s", what, value, strings.Join(allowed, ", "))
	if s := suggest(value, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	v.errorf(path, "%s", msg)
	return false
}

// ref checks that name is one of the objects in m.
func refCheck[T any](v *validator, path, kind, name string, m map[string]*T) bool {
	if _, ok := m[name]; ok {
		return true
	}
	names := sortedKeys(m)
	list := "none are defined"
	if len(names) > 0 {
		list = "defined: " + strings.Join(names, ", ")
	}
	msg := fmt.Sprintf("%s %q does not exist (%s)", kind, name, list)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	v.errorf(path, "%s", msg)
	return false
}

// positive checks a duration that must be > 0 and, unless indefinite is
// allowed, finite.
func (v *validator) positive(path, what string, d Duration, indefiniteOK bool) {
	switch {
	case d == Indefinite && !indefiniteOK:
		v.errorf(path, "%s cannot be indefinite: give a duration such as 30s", what)
	case d == 0:
		if indefiniteOK {
			v.errorf(path, "%s must be longer than 0 (write indefinite for no limit)", what)
		} else {
			v.errorf(path, "%s must be longer than 0", what)
		}
	}
}

func (v *validator) finite(path, what string, d Duration) {
	if d == Indefinite {
		v.errorf(path, "%s cannot be indefinite: give a duration such as 30s", what)
	}
}

// ---- names ----

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func (v *validator) names() {
	check := func(section string, names []string) {
		for _, n := range names {
			if !validName(n) {
				v.errorf(section+"."+n, "name %q is not valid: names are made of letters, digits, '_', '.' and '-'", n)
			}
		}
	}
	c := v.cfg
	check("monitors", sortedKeys(c.Monitors))
	check("pools", sortedKeys(c.Pools))
	check("snat_pools", sortedKeys(c.SNATPools))
	check("virtuals", sortedKeys(c.Virtuals))
	check("profiles.http", sortedKeys(c.Profiles.HTTP))
	check("profiles.client_ssl", sortedKeys(c.Profiles.ClientSSL))
	check("profiles.server_ssl", sortedKeys(c.Profiles.ServerSSL))
	check("profiles.persistence", sortedKeys(c.Profiles.Persistence))
	check("profiles.tcp", sortedKeys(c.Profiles.TCP))
	check("profiles.fastl4", sortedKeys(c.Profiles.FastL4))
}

// ---- management and log ----

// ParseManagementAddress parses management.address: "IP:PORT",
// "localhost:PORT" or ":PORT" (every address).
func ParseManagementAddress(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not HOST:PORT (write 127.0.0.1:9090, [::1]:9090, :9090 or off)", s)
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn == 0 {
		return netip.AddrPort{}, fmt.Errorf("port %q must be a number from 1 to 65535", port)
	}
	var addr netip.Addr
	switch host {
	case "":
		addr = netip.IPv6Unspecified()
	case "localhost":
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		addr, err = netip.ParseAddr(host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("host %q must be an IP address, localhost or empty", host)
		}
	}
	return netip.AddrPortFrom(addr, uint16(pn)), nil
}

// maxMgmtConns bounds management.max_connections: the API is for
// operators and scrapers, not a data path.
const maxMgmtConns = 4096

// maxPersistenceRecords bounds limits.persistence_records (some 20 GB).
const maxPersistenceRecords = 100_000_000

func (v *validator) limits() {
	if n := v.cfg.Limits.PersistenceRecords; n < 1 || n > maxPersistenceRecords {
		v.errorf("limits.persistence_records", "%d must be from 1 to %d: clients create records (one per address, cookie or header value), so the table needs a bound", n, maxPersistenceRecords)
	}
}

func (v *validator) management() {
	m := &v.cfg.Management
	switch {
	case m.Token != "" && m.TokenFile != "":
		v.errorf("management.token_file", "set token or token_file, not both")
	case m.TokenFile != "":
		data, err := readRegular(m.TokenFile, maxTokenFile)
		if err != nil {
			v.errorf("management.token_file", "cannot read the token file: %v", err)
			break
		}
		m.Token = strings.TrimSpace(string(data))
		if m.Token == "" {
			v.errorf("management.token_file", "the token file %s is empty", m.TokenFile)
		}
	}
	if strings.ContainsFunc(m.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		path := "management.token"
		if m.TokenFile != "" {
			path = "management.token_file"
		}
		v.errorf(path, "the token must not contain spaces or control characters (it is sent as an HTTP bearer token)")
	}
	if m.MaxConnections < 1 || m.MaxConnections > maxMgmtConns {
		v.errorf("management.max_connections", "%d must be from 1 to %d", m.MaxConnections, maxMgmtConns)
	}
	if m.Address == ManagementOff {
		return
	}
	ap, err := ParseManagementAddress(m.Address)
	if err != nil {
		v.errorf("management.address", "%v", err)
		return
	}
	if !ap.Addr().IsLoopback() && m.Token == "" {
		v.notice("management.address", "the management API listens on %s without a token: anyone who can reach it can change the configuration; set token or token_file, or listen on 127.0.0.1", m.Address)
	}
}

func (v *validator) logging() {
	l := &v.cfg.Log
	v.oneOf("log.level", "level", l.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", "format", l.Format, "text", "json")
	v.oneOf("log.access_log_format", "access_log_format", l.AccessLogFormat, "json", "text")
	switch l.AccessLog {
	case "off", "stderr", "stdout", "syslog":
	default:
		dir := filepath.Dir(l.AccessLog)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			v.errorf("log.access_log", "the directory %s of access_log does not exist (use off, stderr, stdout, syslog or a file path)", dir)
		}
	}
	if !filepath.IsAbs(l.SyslogSocket) {
		v.errorf("log.syslog_socket", "%q must be an absolute path to a unix datagram socket, like /dev/log", l.SyslogSocket)
	}
}

// ---- monitors ----

func (v *validator) monitors() {
	for _, name := range sortedKeys(v.cfg.Monitors) {
		m := v.cfg.Monitors[name]
		path := "monitors." + name
		v.oneOf(path+".type", "type", m.Type, "tcp", "http", "https", "udp", "virtual_location")
		isHTTP := m.Type == "http" || m.Type == "https"
		if m.Type == "virtual_location" {
			// It sends nothing: it reads where each member's MAC address
			// was learned (docs/etherip.md).
			for _, f := range []struct {
				key string
				set bool
			}{{"send", m.Send != ""}, {"receive", m.Receive != ""}, {"status", len(m.Status) > 0}, {"reverse", m.ReverseMatch},
				{"destination", m.Destination != "" && m.Destination != "*:*"}, {"server_name", m.ServerName != ""}} {
				if f.set {
					v.errorf(path+"."+f.key, "%s does not apply to a virtual_location monitor: it probes nothing, it reads where each member's MAC address was learned", f.key)
				}
			}
		}

		switch {
		case m.Interval == Indefinite:
			v.errorf(path+".interval", "interval cannot be indefinite")
		case m.Interval < MinMonitorInterval:
			v.errorf(path+".interval", "interval must be at least %s", MinMonitorInterval)
		}
		switch {
		case m.UpInterval == Indefinite:
			v.errorf(path+".up_interval", "up_interval cannot be indefinite (0 means: use interval)")
		case m.UpInterval != 0 && m.UpInterval < MinMonitorInterval:
			v.errorf(path+".up_interval", "up_interval must be 0 (use interval) or at least %s", MinMonitorInterval)
		}
		switch {
		case m.Timeout == Indefinite:
			v.errorf(path+".timeout", "timeout cannot be indefinite")
		case m.Interval > 0 && m.Interval != Indefinite && m.Timeout <= m.Interval:
			v.errorf(path+".timeout", "timeout (%s) must be longer than interval (%s), or a member is marked down after a single late probe; F5 recommends 3 × interval + 1s = %s",
				m.Timeout, m.Interval, monitorTimeoutFactorF5*m.Interval+Duration(time.Second))
		}
		v.finite(path+".time_until_up", "time_until_up", m.TimeUntilUp)

		if len(m.Status) > 0 && !isHTTP {
			v.errorf(path+".status", "status applies only to http and https monitors")
		}
		for i, code := range m.Status {
			if code < 100 || code > 599 {
				v.errorf(fmt.Sprintf("%s.status[%d]", path, i), "status code %d is not valid: use 100 to 599", code)
			}
		}
		if m.Receive != "" {
			if _, err := regexp.Compile(m.Receive); err != nil {
				v.errorf(path+".receive", "receive is not a valid regular expression (Go RE2 syntax): %v", err)
			}
		}
		if m.ReverseMatch && m.Receive == "" {
			v.errorf(path+".reverse", "reverse marks a member down when receive matches: it needs receive")
		}
		if isHTTP && strings.Contains(m.Send, `\r\n`) {
			v.errorf(path+".send", `send contains the characters \r\n literally: write it in double quotes ("GET / HTTP/1.0\r\n\r\n") so YAML turns them into CR LF`)
		}
		if m.ServerName != "" && m.Type != "https" {
			v.errorf(path+".server_name", "server_name (TLS SNI) applies only to https monitors")
		}
		if _, err := monitor.ParseDestination(m.Destination); err != nil {
			v.errorf(path+".destination", "%v", err)
		}
	}
}

// ---- pools ----

// LBMethods lists the load-balancing methods, in documentation order.
func LBMethods() []string {
	return []string{"round-robin", "ratio", "least-connections", "fastest", "consistent-hash", "power-of-two"}
}

// isToken reports whether s is an RFC 9110 token (header and cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func (v *validator) pools() {
	for _, name := range sortedKeys(v.cfg.Pools) {
		pl := v.cfg.Pools[name]
		path := "pools." + name
		v.oneOf(path+".lb_method", "lb_method", pl.LBMethod, LBMethods()...)
		if pl.LBMethod == "consistent-hash" {
			if pl.HashKey == "" {
				v.errorf(path+".hash_key", "consistent-hash needs hash_key: source_addr, uri, header:NAME, query:NAME or cookie:NAME")
			} else if _, err := persist.ParseKey(pl.HashKey); err != nil {
				v.errorf(path+".hash_key", "%v", err)
			}
		} else if pl.HashKey != "" {
			v.notice(path+".hash_key", "hash_key is ignored: lb_method is %s, not consistent-hash", pl.LBMethod)
		}

		seen := map[string]int{}
		for i, mon := range pl.Monitors {
			mp := fmt.Sprintf("%s.monitors[%d]", path, i)
			if j, dup := seen[mon]; dup {
				v.errorf(mp, "monitor %q is listed twice (also monitors[%d])", mon, j)
				continue
			}
			seen[mon] = i
			refCheck(v, mp, "monitor", mon, v.cfg.Monitors)
		}
		locMonitors := 0
		for _, mon := range pl.Monitors {
			if m := v.cfg.Monitors[mon]; m != nil && m.Type == "virtual_location" {
				locMonitors++
			}
		}
		switch {
		case locMonitors > 1:
			v.errorf(path+".monitors", "a pool takes at most one virtual_location monitor")
		case locMonitors == 1 && pl.MinActiveMembers == 0:
			v.notice(path+".min_active_members", "the virtual_location monitor ranks local members first inside their priority group, which matters only with priority group activation: set min_active_members (1: remote members serve only when no local one can)")
		}
		if health := len(pl.Monitors) - locMonitors; pl.MonitorMinUp > health && locMonitors > 0 {
			v.errorf(path+".monitor_min_up", "monitor_min_up is %d but the pool has %d health monitors (virtual_location decides locality, not health)", pl.MonitorMinUp, health)
		}
		if pl.MonitorMinUp < 0 || pl.MonitorMinUp > len(pl.Monitors) {
			v.errorf(path+".monitor_min_up", "monitor_min_up is %d but the pool has %d monitors: use 0 (all must pass) to %d", pl.MonitorMinUp, len(pl.Monitors), len(pl.Monitors))
		}
		if pl.MinActiveMembers < 0 {
			v.errorf(path+".min_active_members", "min_active_members cannot be negative (0 turns priority groups off)")
		}
		v.finite(path+".slow_ramp_time", "slow_ramp_time", pl.SlowRampTime)

		if pp := pl.Passive; *pp.Enabled {
			if pp.Failures < 1 {
				v.errorf(path+".passive.failures", "failures must be at least 1 (set enabled: false to turn passive detection off)")
			}
			v.positive(path+".passive.failure_interval", "failure_interval", pp.FailureInterval, false)
			v.positive(path+".passive.retry_time", "retry_time", pp.RetryTime, false)
		}

		if len(pl.Members) == 0 {
			mp := path
			if v.p.has(path + ".members") {
				mp = path + ".members"
			}
			v.errorf(mp, "a pool needs at least one member (members: [{address: 192.0.2.10:80}])")
		}
		addrs := map[netip.AddrPort]int{}
		for i, m := range pl.Members {
			mp := memberPath(name, i)
			if m.Address == "" {
				v.errorf(mp+".address", "address is required: IP:PORT")
			} else if ap, err := parseMember(m.Address); err != nil {
				v.errorf(mp+".address", "%v", err)
			} else if j, dup := addrs[ap]; dup {
				v.errorf(mp+".address", "member %s is listed twice in this pool (also members[%d])", ap, j)
			} else {
				addrs[ap] = i
			}
			if m.Ratio < 1 || m.Ratio > MaxRatio {
				v.errorf(mp+".ratio", "ratio %d is out of range: use 1 to %d", m.Ratio, MaxRatio)
			}
			if m.ConnectionLimit < 0 {
				v.errorf(mp+".connection_limit", "connection_limit cannot be negative (0 means unlimited)")
			}
			if m.Priority < 0 {
				v.errorf(mp+".priority", "priority cannot be negative")
			}
			v.oneOf(mp+".state", "state", m.State, "enabled", "disabled", "forced-offline")
		}
	}
}

func parseMember(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return ap, fmt.Errorf("address %q is not IP:PORT (write 192.0.2.10:80 or [2001:db8::10]:80)", s)
	case ap.Port() == 0:
		return ap, fmt.Errorf("address %q: the port must be 1 to 65535", s)
	case ap.Addr().IsUnspecified():
		return ap, fmt.Errorf("address %q: a member needs a real address, not %s", s, ap.Addr())
	}
	return ap, nil
}

// ---- profiles ----

func (v *validator) httpProfiles() {
	for _, name := range sortedKeys(v.cfg.Profiles.HTTP) {
		h := v.cfg.Profiles.HTTP[name]
		path := "profiles.http." + name
		if h.MaxHeaderSize < MinMaxHeaderSize || h.MaxHeaderSize > MaxMaxHeaderSize {
			v.errorf(path+".max_header_size", "max_header_size %d is out of range: use 1KiB to 1MiB", h.MaxHeaderSize)
		}
		if h.MaxHeaderCount < 1 || h.MaxHeaderCount > MaxMaxHeaderCount {
			v.errorf(path+".max_header_count", "max_header_count %d is out of range: use 1 to %d", h.MaxHeaderCount, MaxMaxHeaderCount)
		}
		v.positive(path+".header_timeout", "header_timeout", h.HeaderTimeout, false)
		v.positive(path+".keepalive_timeout", "keepalive_timeout", h.KeepAliveTimeout, false)
		v.positive(path+".server_idle_timeout", "server_idle_timeout", h.ServerIdleTimeout, false)
		v.positive(path+".response_timeout", "response_timeout", h.ResponseTimeout, false)
		if h.MaxIdlePerMember < 0 {
			v.errorf(path+".max_idle_per_member", "max_idle_per_member cannot be negative (0 keeps no idle connections)")
		}
	}
}

// loadPair loads a certificate and its key the way the data plane will,
// so that `check` finds a wrong path or a key that does not match.
func (v *validator) loadPair(path, certFile, keyFile string) (*tls.Certificate, bool) {
	certPEM, err := readRegular(certFile, maxPEMFile)
	if err != nil {
		v.errorf(path+".cert", "cannot read the certificate: %v", err)
		return nil, false
	}
	keyPEM, err := readRegular(keyFile, maxPEMFile)
	if err != nil {
		v.errorf(path+".key", "cannot read the key: %v", err)
		return nil, false
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		v.errorf(path+".cert", "certificate %s with key %s: %v", certFile, keyFile, err)
		return nil, false
	}
	if leaf := pair.Leaf; leaf != nil {
		now := time.Now()
		switch {
		case now.After(leaf.NotAfter):
			v.notice(path+".cert", "certificate %s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
		case now.Before(leaf.NotBefore):
			v.notice(path+".cert", "certificate %s is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.DateOnly))
		}
	}
	return &pair, true
}

func validServerName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) clientSSL() {
	for _, name := range sortedKeys(v.cfg.Profiles.ClientSSL) {
		s := v.cfg.Profiles.ClientSSL[name]
		path := "profiles.client_ssl." + name
		if _, err := ssl.ParseVersion(s.MinVersion); err != nil {
			v.errorf(path+".min_version", "%v", err)
		}
		switch {
		case s.Cert == "" && s.Key == "":
			v.errorf(path, "a client_ssl profile needs cert and key (PEM files)")
		case s.Cert == "":
			v.errorf(path+".cert", "cert is required (PEM file)")
		case s.Key == "":
			v.errorf(path+".key", "key is required (PEM file)")
		default:
			v.loadPair(path, s.Cert, s.Key)
		}
		for i := range s.SNI {
			e := &s.SNI[i]
			ep := fmt.Sprintf("%s.sni[%d]", path, i)
			if e.Cert == "" || e.Key == "" {
				v.errorf(ep, "an sni entry needs cert and key")
				continue
			}
			for j, sn := range e.ServerNames {
				if !validServerName(sn) {
					v.errorf(fmt.Sprintf("%s.server_names[%d]", ep, j), "%q is not a server name (write www.example.com or *.example.com)", sn)
				}
			}
			pair, ok := v.loadPair(ep, e.Cert, e.Key)
			if !ok || len(e.ServerNames) > 0 {
				continue
			}
			// Default: the names the certificate is valid for.
			if pair.Leaf != nil {
				e.ServerNames = slices.Clone(pair.Leaf.DNSNames)
			}
			if len(e.ServerNames) == 0 {
				v.errorf(ep+".server_names", "certificate %s names no DNS names: list server_names", e.Cert)
			}
		}
		for i, p := range s.ALPN {
			if p == "" || len(p) > 255 {
				v.errorf(fmt.Sprintf("%s.alpn[%d]", path, i), "an ALPN protocol name is 1 to 255 bytes")
			}
		}
	}
}

func (v *validator) serverSSL() {
	for _, name := range sortedKeys(v.cfg.Profiles.ServerSSL) {
		s := v.cfg.Profiles.ServerSSL[name]
		path := "profiles.server_ssl." + name
		if _, err := ssl.ParseVersion(s.MinVersion); err != nil {
			v.errorf(path+".min_version", "%v", err)
		}
		switch {
		case s.Cert != "" && s.Key == "":
			v.errorf(path+".key", "cert is set but key is not: a client certificate needs both")
		case s.Cert == "" && s.Key != "":
			v.errorf(path+".cert", "key is set but cert is not: a client certificate needs both")
		case s.Cert != "":
			v.loadPair(path, s.Cert, s.Key)
		}
		if s.CA != "" {
			data, err := readRegular(s.CA, maxPEMFile)
			if err != nil {
				v.errorf(path+".ca", "cannot read the CA bundle: %v", err)
			} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
				v.errorf(path+".ca", "%s holds no PEM certificate", s.CA)
			}
		}
		if s.ServerName != "" && !validServerName(s.ServerName) {
			v.errorf(path+".server_name", "%q is not a server name", s.ServerName)
		}
	}
}

// persistenceNeedsHTTP reports whether a persistence profile reads HTTP.
func persistenceNeedsHTTP(pp *PersistenceProfile) bool {
	switch pp.Type {
	case "cookie_insert", "cookie_passive", "universal":
		return true
	case "hash":
		k, err := persist.ParseKey(pp.Key)
		return err == nil && k.HTTP()
	}
	return false
}

// peeks reports whether a persistence type reads the client's first bytes
// before a member is chosen.
func peeks(typ string) bool { return typ == "msrdp" || typ == "sip" || typ == "ssl" }

// persistenceVirtualTypes is the virtual types a persistence type that
// reads the client's first bytes works on (nil: every type).
func persistenceVirtualTypes(typ string) []string {
	switch typ {
	case "msrdp", "ssl":
		return []string{"tcp"}
	case "sip":
		return []string{"tcp", "udp"}
	}
	return nil
}

// DefaultLBSPOptionType is the IPv6 Destination Option type of LBSP
// (DESIGN.md §6: experimental, skip if unknown, may not change en route).
const DefaultLBSPOptionType = 0x1E

// ipv6Destination reports whether a virtual's destination is an IPv6
// address ("[2001:db8::1]:443", "[::]:80").
func ipv6Destination(dest string) bool {
	d, err := ParseDestination(dest)
	return err == nil && d.Addr().Is6() && !d.Addr().Is4In6()
}

// maxPeekTimeout bounds peek_timeout: a connection that sends nothing
// holds its goroutine and socket this long before it is balanced.
const maxPeekTimeout = Duration(time.Minute)

func (v *validator) persistence() {
	for _, name := range sortedKeys(v.cfg.Profiles.Persistence) {
		pp := v.cfg.Profiles.Persistence[name]
		path := "profiles.persistence." + name
		if !v.oneOf(path+".type", "type", pp.Type, persist.Types()...) {
			continue
		}
		switch {
		case pp.Type == "cookie_insert":
			v.finite(path+".timeout", "a cookie_insert timeout (cookie expiry; 0 = session cookie)", pp.Timeout)
		case pp.Type == "hash":
			if v.p.has(path + ".timeout") {
				v.errorf(path+".timeout", "hash persistence keeps no records, so nothing times out: remove timeout")
			}
			for _, k := range []struct {
				key string
				set bool
			}{{"match_across_virtuals", pp.MatchAcrossVirtual}, {"match_across_pools", pp.MatchAcrossPools}} {
				if k.set {
					v.errorf(path+"."+k.key, "%s needs persistence records; hash persistence keeps none (every virtual using the same pool already hashes the same key to the same member)", k.key)
				}
			}
		default:
			v.positive(path+".timeout", "timeout", pp.Timeout, true)
		}
		if pp.Type == "lbsp" {
			if pp.OptionType == nil {
				pp.OptionType = new(int)
				*pp.OptionType = DefaultLBSPOptionType
			}
			if *pp.OptionType < 0 || *pp.OptionType > 255 {
				v.errorf(path+".option_type", "option_type must be 0 to 255")
			} else if err := lbsp.CheckType(byte(*pp.OptionType)); err != nil {
				v.errorf(path+".option_type", "%v", err)
			}
		} else if pp.OptionType != nil {
			v.errorf(path+".option_type", "option_type applies only to lbsp persistence (this profile is %s)", pp.Type)
		}
		if peeks(pp.Type) {
			v.positive(path+".peek_timeout", "peek_timeout", pp.PeekTimeout, false)
			if pp.PeekTimeout > maxPeekTimeout {
				v.errorf(path+".peek_timeout", "peek_timeout %s is longer than %s: a client that sends nothing holds a connection that long before it is balanced", pp.PeekTimeout, maxPeekTimeout)
			}
			if n := int64(pp.PeekMaxBytes); n < persist.MinPeekMaxBytes || n > persist.MaxPeekMaxBytes {
				v.errorf(path+".peek_max_bytes", "peek_max_bytes %d is out of range: use %d to %d bytes", n, persist.MinPeekMaxBytes, persist.MaxPeekMaxBytes)
			}
		} else {
			for _, k := range []string{"peek_timeout", "peek_max_bytes"} {
				if v.p.has(path + "." + k) {
					v.errorf(path+"."+k, "%s applies only to msrdp, sip and ssl persistence (this profile is %s)", k, pp.Type)
				}
			}
		}
		if *pp.PrefixV4 < 0 || *pp.PrefixV4 > 32 {
			v.errorf(path+".prefix_v4", "prefix_v4 %d is out of range: use 0 to 32", *pp.PrefixV4)
		}
		if *pp.PrefixV6 < 0 || *pp.PrefixV6 > 128 {
			v.errorf(path+".prefix_v6", "prefix_v6 %d is out of range: use 0 to 128", *pp.PrefixV6)
		}
		if pp.CookieName != "" && !isToken(pp.CookieName) {
			v.errorf(path+".cookie_name", "%q is not a valid cookie name", pp.CookieName)
		}
		if pp.Type == "cookie_passive" && pp.CookieName == "" {
			v.errorf(path+".cookie_name", "cookie_passive needs cookie_name: the application's session cookie (e.g. JSESSIONID)")
		}
		if !strings.HasPrefix(pp.CookiePath, "/") || strings.ContainsFunc(pp.CookiePath, badCookieAttr) {
			v.errorf(path+".cookie_path", "cookie_path %q must start with / and contain no ';', spaces or control characters", pp.CookiePath)
		}
		if strings.ContainsFunc(pp.CookieDomain, badCookieAttr) {
			v.errorf(path+".cookie_domain", "cookie_domain %q contains ';', spaces or control characters", pp.CookieDomain)
		}
		if pp.Secret != "" && len(pp.Secret) < MinCookieSecretLength {
			v.errorf(path+".secret", "secret is %d bytes: use at least %d (random, e.g. `openssl rand -hex 32`)", len(pp.Secret), MinCookieSecretLength)
		}
		switch {
		case pp.Type == "universal" && pp.Key == "":
			v.errorf(path+".key", "universal persistence needs key: header:NAME, uri, query:NAME or cookie:NAME")
		case pp.Type == "universal":
			if _, err := persist.ParseUniversalKey(pp.Key); err != nil {
				v.errorf(path+".key", "%v", err)
			}
		case pp.Type == "hash" && pp.Key == "":
			v.errorf(path+".key", "hash persistence needs key: source_addr, uri, header:NAME, query:NAME or cookie:NAME")
		case pp.Type == "hash":
			if _, err := persist.ParseKey(pp.Key); err != nil {
				v.errorf(path+".key", "%v", err)
			}
		case pp.Key != "":
			v.errorf(path+".key", "key applies only to universal and hash persistence (this profile is %s)", pp.Type)
		}
	}
}

func badCookieAttr(r rune) bool { return r == ';' || r <= ' ' || r == 0x7f }

// resolveTCP resolves the TCP profiles written in the file over the
// built-ins into Config.TCP, reporting each problem at its key.
func (v *validator) resolveTCP() {
	c := v.cfg
	user := make(map[string]*tcp.Settings, len(v.userTCP))
	for _, name := range v.userTCP {
		user[name] = c.Profiles.TCP[name]
	}
	all, err := tcp.Resolve(user)
	c.TCP = all
	var errs tcp.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			path := "profiles.tcp." + e.Profile
			if e.Key != "" && v.p.suppressed(path+"."+e.Key) {
				continue // its value was rejected while decoding
			}
			if e.Key != "" && v.p.has(path+"."+e.Key) {
				path += "." + e.Key
			}
			v.errorf(path, "%s", e.Msg)
		}
	} else if err != nil {
		v.errorf("profiles.tcp", "%v", err)
	}
}

// tcpProfiles checks what depends on the host: the congestion-control
// algorithms this kernel offers, and settings that Linux applies only
// system-wide or per route (notices).
func (v *validator) tcpProfiles() {
	if len(v.userTCP) == 0 {
		return
	}
	var avail []string
	var availErr error
	for _, name := range v.userTCP {
		p, ok := v.cfg.TCP[name]
		if !ok || p.CongestionControl == "" {
			continue
		}
		if avail == nil && availErr == nil {
			avail, availErr = tcp.AvailableCongestionControls()
		}
		path := "profiles.tcp." + name + ".congestion_control"
		if availErr != nil {
			v.notice(path, "cannot list this kernel's congestion-control algorithms (%v): %q is not checked", availErr, p.CongestionControl)
			continue
		}
		if err := tcp.CheckCongestionControl(p.CongestionControl, avail); err != nil && v.p.has(path) {
			v.errorf(path, "%v", err)
		}
	}
	sys, err := tcp.ReadSystem()
	if err != nil {
		v.notice("profiles.tcp", "cannot read the host's TCP settings (%v): system-wide settings are not compared with the profiles", err)
		return
	}
	for _, name := range v.userTCP {
		if p, ok := v.cfg.TCP[name]; ok {
			for _, msg := range tcp.SystemNotices(p, sys) {
				v.notice("profiles.tcp."+name, "%s", msg)
			}
		}
	}
}

func (v *validator) snatPools() {
	for _, name := range sortedKeys(v.cfg.SNATPools) {
		s := v.cfg.SNATPools[name]
		path := "snat_pools." + name
		if name == SNATNone || name == SNATAutomap {
			v.errorf(path, "a SNAT pool cannot be called %q: that word is a snat keyword; rename the pool", name)
		}
		if len(s.Addresses) == 0 {
			v.errorf(path+".addresses", "a SNAT pool needs at least one address")
		}
		seen := map[netip.Addr]int{}
		for i, a := range s.Addresses {
			ap := fmt.Sprintf("%s.addresses[%d]", path, i)
			ip, err := netip.ParseAddr(a)
			switch {
			case err != nil:
				v.errorf(ap, "%q is not an IP address (a SNAT address has no port)", a)
			case ip.IsUnspecified():
				v.errorf(ap, "%s cannot be a translation address", ip)
			default:
				if j, dup := seen[ip]; dup {
					v.errorf(ap, "address %s is listed twice (also addresses[%d])", ip, j)
				}
				seen[ip] = i
			}
		}
	}
}

// ---- virtuals ----

// ParseDestination parses a virtual's destination: IPv4:PORT or
// [IPv6]:PORT, port 1-65535; 0.0.0.0 and :: listen on every address.
func ParseDestination(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("destination %q is not IP:PORT (write 192.0.2.1:443, [2001:db8::1]:443 or 0.0.0.0:443)", s)
	}
	if ap.Port() == 0 {
		return ap, fmt.Errorf("destination %q: the port must be 1 to 65535", s)
	}
	return ap, nil
}

func (v *validator) virtuals() {
	c := v.cfg
	for _, name := range sortedKeys(c.Virtuals) {
		vs := c.Virtuals[name]
		path := "virtuals." + name
		typeOK := v.oneOf(path+".type", "type", vs.Type, VirtualTypes()...)
		if vs.Destination == "" {
			v.errorf(path+".destination", "destination is required: IP:PORT to listen on")
		} else if _, err := ParseDestination(vs.Destination); err != nil {
			v.errorf(path+".destination", "%v", err)
		}
		var pool *Pool
		if vs.Pool == "" && vs.ISession == "" {
			v.errorf(path+".pool", "pool is required: the pool this virtual sends connections to")
		} else if vs.Pool != "" && refCheck(v, path+".pool", "pool", vs.Pool, c.Pools) {
			pool = c.Pools[vs.Pool]
		}
		if vs.ConnectionLimit < 0 {
			v.errorf(path+".connection_limit", "connection_limit cannot be negative (0 means unlimited)")
		} else if vs.ConnectionLimit == 0 && vs.Type == "udp" {
			// Anyone can make UDP flows with spoofed source ports: the table needs a bound.
			v.errorf(path+".connection_limit", "a udp virtual's flow table must be bounded: connection_limit must be at least 1 (default %d)", DefaultUDPConnectionLimit)
		}
		v.positive(path+".idle_timeout", "idle_timeout", vs.IdleTimeout, true)
		v.positive(path+".connect_timeout", "connect_timeout", vs.ConnectTimeout, false)

		if vs.HTTP != "" {
			if typeOK && vs.Type != "http" {
				v.errorf(path+".http_profile", "http_profile applies only to virtuals of type http (this one is %s)", vs.Type)
			} else {
				refCheck(v, path+".http_profile", "http profile", vs.HTTP, c.Profiles.HTTP)
			}
		}
		if vs.FastL4 != "" {
			if typeOK && vs.Type != "fastl4" {
				v.errorf(path+".fastl4_profile", "fastl4_profile applies only to virtuals of type fastl4 (this one is %s)", vs.Type)
			} else {
				refCheck(v, path+".fastl4_profile", "fastl4 profile", vs.FastL4, c.Profiles.FastL4)
			}
		}
		if vs.Type == "fastl4" {
			// The kernel moves a fastl4 flow's bytes socket to socket:
			// nothing in user space sees them to decrypt or encrypt.
			for _, k := range []struct{ key, val string }{{"client_ssl", vs.ClientSSL}, {"server_ssl", vs.ServerSSL}} {
				if k.val != "" {
					v.errorf(path+"."+k.key, "a fastl4 virtual cannot use TLS: its bytes are relayed by the kernel and never reach Fulcrum to be decrypted or encrypted; remove %s or use type tcp", k.key)
				}
			}
		}
		if vs.ClientSSL != "" && vs.Type != "fastl4" {
			if vs.Type == "udp" {
				v.errorf(path+".client_ssl", "a udp virtual cannot terminate TLS (DTLS is not supported): remove client_ssl")
			} else if refCheck(v, path+".client_ssl", "client_ssl profile", vs.ClientSSL, c.Profiles.ClientSSL) && vs.Type == "http" {
				prof := c.Profiles.ClientSSL[vs.ClientSSL]
				if len(prof.ALPN) == 0 {
					prof.ALPN = []string{DefaultALPN}
				}
				if slices.Contains(prof.ALPN, "h2") {
					v.errorOnce("profiles.client_ssl."+vs.ClientSSL+".alpn", "HTTP/2 is not built yet: remove h2 from alpn (the profile is used by http virtual %s)", name)
				}
			}
		}
		if vs.ServerSSL != "" && vs.Type != "fastl4" {
			if vs.Type == "udp" {
				v.errorf(path+".server_ssl", "a udp virtual cannot use TLS to its members (DTLS is not supported): remove server_ssl")
			} else {
				refCheck(v, path+".server_ssl", "server_ssl profile", vs.ServerSSL, c.Profiles.ServerSSL)
			}
		}

		var primary *PersistenceProfile
		if vs.Persistence != "" && refCheck(v, path+".persistence", "persistence profile", vs.Persistence, c.Profiles.Persistence) {
			primary = c.Profiles.Persistence[vs.Persistence]
			only := persistenceVirtualTypes(primary.Type)
			switch {
			case typeOK && persistenceNeedsHTTP(primary) && vs.Type != "http":
				what := primary.Type
				if primary.Type == "hash" {
					what = "hash with key " + primary.Key
				}
				v.errorf(path+".persistence", "persistence profile %q is %s, which reads HTTP: it needs a virtual of type http (this one is %s)", vs.Persistence, what, vs.Type)
			case typeOK && only != nil && !slices.Contains(only, vs.Type):
				v.errorf(path+".persistence", "persistence profile %q is %s, which reads the client's first bytes: it works on virtuals of type %s (this one is %s)", vs.Persistence, primary.Type, strings.Join(only, " or "), vs.Type)
			case typeOK && primary.Type == "lbsp" && vs.Type != "tcp" && vs.Type != "dsr":
				v.errorf(path+".persistence", "persistence profile %q is lbsp: it works on virtuals of type tcp (full proxy) and dsr (single pass); not on %s", vs.Persistence, vs.Type)
			case typeOK && vs.Type == "dsr" && primary.Type != "lbsp":
				v.errorf(path+".persistence", "a dsr virtual takes only lbsp persistence (it chooses from the first packet; %q is %s)", vs.Persistence, primary.Type)
			case typeOK && primary.Type == "lbsp" && !ipv6Destination(vs.Destination):
				v.errorf(path+".persistence", "persistence profile %q is lbsp, carried in an IPv6 Destination Option: the virtual's destination must be an IPv6 address", vs.Persistence)
			case primary.Type == "lbsp" && vs.ClientSSL != "":
				v.errorf(path+".persistence", "persistence profile %q is lbsp: not built together with client_ssl yet", vs.Persistence)
			case (primary.Type == "ssl" || primary.Type == "msrdp") && vs.ClientSSL != "":
				v.errorf(path+".persistence", "persistence profile %q is %s, which reads what the client sends before any TLS: it cannot work on a virtual that terminates TLS (client_ssl); remove client_ssl, or use source_addr", vs.Persistence, primary.Type)
			}
			v.cookieSecretNotice(vs.Persistence, primary)
		}
		if vs.FallbackPersistence != "" {
			switch {
			case vs.Persistence == "":
				v.errorf(path+".fallback_persistence", "fallback_persistence needs persistence: it is used when the primary profile finds nothing")
			case refCheck(v, path+".fallback_persistence", "persistence profile", vs.FallbackPersistence, c.Profiles.Persistence):
				fb := c.Profiles.Persistence[vs.FallbackPersistence]
				if fb.Type != "source_addr" {
					v.errorf(path+".fallback_persistence", "fallback persistence must be of type source_addr (%q is %s)", vs.FallbackPersistence, fb.Type)
				}
			}
		}

		switch vs.SNAT {
		case SNATAutomap, SNATNone:
		default:
			sp, ok := c.SNATPools[vs.SNAT]
			if !ok {
				names := append([]string{SNATAutomap, SNATNone}, sortedKeys(c.SNATPools)...)
				v.errorf(path+".snat", "snat %q is not automap, none or a SNAT pool (choose from: %s)", vs.SNAT, strings.Join(names, ", "))
			} else if pool != nil {
				v.snatFamilies(path+".snat", vs.SNAT, sp, vs.Pool, pool)
			}
		}
		v.virtualTCP(name, vs)
		v.virtualDSR(name, vs, pool)

		// A pool that hashes on HTTP data cannot serve an L4 virtual.
		if pool != nil && typeOK && vs.Type != "http" && pool.LBMethod == "consistent-hash" {
			if k, err := persist.ParseKey(pool.HashKey); err == nil && k.HTTP() {
				v.errorf(path+".pool", "pool %q hashes on %s, which needs a virtual of type http (this one is %s); use hash_key: source_addr or another pool", vs.Pool, pool.HashKey, vs.Type)
			}
		}
	}
}

// VirtualTypes lists the virtual-server types, in documentation order.
func VirtualTypes() []string { return []string{"tcp", "udp", "http", "fastl4", "dsr"} }

// fastL4Profiles checks the fastl4 profiles. What a socket proxy cannot do
// honestly is refused with the reason, not silently ignored.
func (v *validator) fastL4Profiles() {
	for _, name := range sortedKeys(v.cfg.Profiles.FastL4) {
		f := v.cfg.Profiles.FastL4[name]
		path := "profiles.fastl4." + name
		v.positive(path+".idle_timeout", "idle_timeout", f.IdleTimeout, true)
		if f.LooseInitiation {
			v.errorf(path+".loose_initiation", "loose_initiation cannot work here: Fulcrum's fastl4 terminates TCP on both sides (a socket pair), so a flow starts only with a handshake the kernel accepts; set it to false (F5's default)")
		}
		for _, m := range []struct{ key, val string }{{"tcp_timestamp_mode", f.TCPTimestampMode}, {"tcp_wscale_mode", f.TCPWScaleMode}} {
			if !v.oneOf(path+"."+m.key, m.key, m.val, "preserve", "strip", "rewrite") || m.val == "preserve" {
				continue
			}
			v.errorf(path+"."+m.key, "%s %s cannot be honoured: Linux negotiates TCP options separately on the client and the server connection (each keeps what its peer offered), so only preserve describes what happens; use preserve", m.key, m.val)
		}
		if v.oneOf(path+".kernel_relay", "kernel_relay", f.KernelRelay, "on", "off") && f.KernelRelay == "on" {
			v.errorf(path+".kernel_relay", "kernel_relay on is not available in this release: the eBPF sockmap relay has a known defect on Linux 6.18 (now and then it delivers bytes twice when the receive queue is pruned) and measured about 6x slower than the user-space relay; see docs/fastl4.md. Use off (the default)")
		}
	}
}

// virtualTCP checks a virtual's clientside and serverside TCP profiles and
// adds the proxy-buffer rule notices for the pair.
func (v *validator) virtualTCP(name string, vs *Virtual) {
	path := "virtuals." + name
	if vs.Type == "udp" || vs.Type == "dsr" {
		for _, key := range []string{"clientside_tcp", "serverside_tcp"} {
			if v.p.has(path + "." + key) {
				v.errorf(path+"."+key, "a %s virtual has no TCP profile (it terminates no TCP): remove %s", vs.Type, key)
			}
		}
		return
	}
	ok := refCheck(v, path+".clientside_tcp", "tcp profile", vs.ClientsideTCP, v.cfg.TCP)
	if v.p.has(path+".serverside_tcp") || vs.ServersideTCP != vs.ClientsideTCP {
		// Not written: it follows clientside_tcp, already checked.
		ok = refCheck(v, path+".serverside_tcp", "tcp profile", vs.ServersideTCP, v.cfg.TCP) && ok
	}
	if !ok {
		return
	}
	for _, msg := range tcp.RuleNotices(v.cfg.TCP[vs.ClientsideTCP], v.cfg.TCP[vs.ServersideTCP]) {
		v.notice(path, "%s", msg)
	}
}

// snatFamilies checks that a SNAT pool can source connections to every
// member: an IPv6 member needs an IPv6 translation address, and so on.
func (v *validator) snatFamilies(path, spName string, sp *SNATPool, poolName string, pool *Pool) {
	var has4, has6 bool
	for _, a := range sp.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			has4 = has4 || ip.Unmap().Is4()
			has6 = has6 || !ip.Unmap().Is4()
		}
	}
	if !has4 && !has6 {
		return // the SNAT pool's own errors say why
	}
	for _, m := range pool.Members {
		ap, err := parseMember(m.Address)
		if err != nil {
			continue
		}
		if is4 := ap.Addr().Unmap().Is4(); (is4 && !has4) || (!is4 && !has6) {
			fam := "IPv6"
			if is4 {
				fam = "IPv4"
			}
			v.errorf(path, "SNAT pool %q has no %s address, so it cannot connect to member %s of pool %q; add one", spName, fam, ap, poolName)
			return
		}
	}
}

func (v *validator) cookieSecretNotice(name string, pp *PersistenceProfile) {
	if pp.Type == "cookie_insert" && pp.Secret == "" && !v.cfg.HAEnabled() {
		v.notice("profiles.persistence."+name, "persistence profile %q has no secret: a random secret is generated at start, so its cookies will not survive a restart or work across devices; set `secret`", name)
	}
}

// listeners rejects two enabled virtuals (or a virtual and the management
// API) that would bind clashing sockets, so `check` catches every bind
// failure `run` would hit.
func (v *validator) listeners() {
	type listener struct {
		name, path string
		udp        bool
		ap         netip.AddrPort
		dualStack  bool // a wildcard that takes the port in both families
		line       int
	}
	var ls []listener
	for name, vs := range v.cfg.Virtuals {
		if !*vs.Enabled {
			continue
		}
		ap, err := ParseDestination(vs.Destination)
		if err != nil || !slices.Contains(VirtualTypes(), vs.Type) || vs.Type == "dsr" {
			continue // a dsr virtual opens no socket (virtualDSR checks its own clashes)
		}
		path := "virtuals." + name
		ls = append(ls, listener{"virtual " + strconv.Quote(name), path + ".destination", vs.Type == "udp", ap, false, v.p.lineFor(path)})
	}
	slices.SortFunc(ls, func(a, b listener) int {
		if a.line != b.line {
			return a.line - b.line
		}
		return strings.Compare(a.name, b.name)
	})
	if addr := v.cfg.Management.Address; addr != ManagementOff {
		if ap, err := ParseManagementAddress(addr); err == nil {
			// The API listens with net.Listen("tcp", address), which opens a
			// wildcard (":P", "0.0.0.0:P" or "[::]:P") as one dual-stack
			// [::] socket: it takes the port in both families.
			ls = append(ls, listener{"the management API", "management.address", false, ap, ap.Addr().IsUnspecified(), v.p.lineFor("management.address")})
		}
	}
	for j := range ls {
		for i := range j {
			a, b := ls[i], ls[j]
			if a.udp != b.udp {
				continue
			}
			clash := Overlaps(a.ap, b.ap) ||
				(a.ap.Port() == b.ap.Port() && (a.dualStack || b.dualStack))
			if !clash {
				continue
			}
			where := ""
			if a.line > 0 {
				where = fmt.Sprintf(" (line %d)", a.line)
			}
			proto := "TCP"
			if a.udp {
				proto = "UDP"
			}
			v.errorf(b.path, "%s overlaps %s%s on %s: both would listen on %s port %d; change the address or port, or disable one",
				b.ap, a.name, where, a.ap, proto, b.ap.Port())
			break
		}
	}
}

// Overlaps reports whether two virtual servers' listening addresses would
// claim the same port (Linux refuses the second bind): same port, same
// address family (an IPv4-mapped address is IPv4), and equal addresses or
// one of them the family's wildcard. 0.0.0.0 covers every IPv4 address and
// :: every IPv6 address, but not each other: a virtual on [::] listens with
// IPV6_V6ONLY, so 0.0.0.0:P and [::1]:P (or [::]:P) coexist.
func Overlaps(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	if x.Is4() != y.Is4() {
		return false
	}
	return x == y || x.IsUnspecified() || y.IsUnspecified()
}
