package engine

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/isession"
	"github.com/fulcrum-adc/fulcrum/monitor"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/profile/ssl"
	"github.com/fulcrum-adc/fulcrum/virtual"
)

// compiled is a configuration turned into runtime objects, not yet published.
type compiled struct {
	pools map[string]*pool.Pool
	plans map[string]*virtual.Plan // by listener key
	jobs  []monitor.Job
	// tunnels are the iSession pools of this configuration, by profile;
	// newTunnels those it created (closed if it is not applied).
	tunnels    map[string]*tunnelPool
	newTunnels []*isession.Pool
}

func listenerKey(typ string, dest netip.AddrPort) string {
	switch typ {
	case "udp":
		return "udp|" + dest.String()
	case "dsr":
		return "dsr|" + dest.String()
	}
	return "tcp|" + dest.String()
}

// compile builds every runtime object for cfg. It must not change anything
// the running configuration uses except carrying pool members over (their
// runtime state is shared by design).
func (e *Engine) compile(cfg *config.Config) (*compiled, error) {
	c := &compiled{pools: map[string]*pool.Pool{}, plans: map[string]*virtual.Plan{}, tunnels: map[string]*tunnelPool{}}
	for _, name := range cfg.PoolNames() {
		pc := cfg.Pools[name]
		p, err := poolConfig(name, pc)
		if err != nil {
			return nil, fmt.Errorf("pools.%s: %w", name, err)
		}
		c.pools[name] = pool.New(p, e.pools[name], e.log)
		specs := make([]monitor.Spec, 0, len(pc.Monitors))
		for _, mn := range pc.Monitors {
			if m := cfg.Monitors[mn]; m != nil && m.Type == "virtual_location" {
				continue // locality, not health: the locator runs it (network.go)
			}
			s, err := monitorSpec(mn, cfg.Monitors[mn])
			if err != nil {
				return nil, fmt.Errorf("monitors.%s: %w", mn, err)
			}
			specs = append(specs, s)
		}
		if len(specs) == 0 {
			continue
		}
		for _, m := range c.pools[name].Members() {
			c.jobs = append(c.jobs, monitor.Job{Key: name + "/" + m.String(), Target: m, Specs: specs, MinUp: pc.MonitorMinUp})
		}
	}

	profiles := map[string]*persist.Profile{}
	persistProfile := func(name string) (*persist.Profile, error) {
		if name == "" {
			return nil, nil
		}
		if p, ok := profiles[name]; ok {
			return p, nil
		}
		var err error
		pp := cfg.Profiles.Persistence[name]
		if pp == nil {
			return nil, fmt.Errorf("persistence profile %q does not exist", name)
		}
		pc := persist.ProfileConfig{
			Name:                name,
			Type:                pp.Type,
			Timeout:             pp.Timeout.D(),
			PrefixV4:            intOr(pp.PrefixV4, 32),
			PrefixV6:            intOr(pp.PrefixV6, 128),
			CookieName:          pp.CookieName,
			CookiePath:          pp.CookiePath,
			CookieDomain:        pp.CookieDomain,
			HTTPOnly:            pp.HTTPOnly == nil || *pp.HTTPOnly,
			Secure:              pp.Secure,
			Key:                 pp.Key,
			PeekTimeout:         pp.PeekTimeout.D(),
			PeekMaxBytes:        int(pp.PeekMaxBytes),
			MatchAcrossVirtuals: pp.MatchAcrossVirtual,
			MatchAcrossPools:    pp.MatchAcrossPools,
		}
		if pp.Secret != "" {
			pc.Secret = []byte(pp.Secret)
		} else if pc.Secret, err = e.secretFor(name); err != nil {
			return nil, fmt.Errorf("profiles.persistence.%s: %w", name, err)
		}
		p, err := persist.NewProfile(pc)
		if err != nil {
			return nil, fmt.Errorf("profiles.persistence.%s: %w", name, err)
		}
		profiles[name] = p
		return p, nil
	}

	for _, name := range cfg.VirtualNames() {
		v := cfg.Virtuals[name]
		if v.Enabled != nil && !*v.Enabled {
			continue
		}
		dest, err := config.ParseDestination(v.Destination)
		if err != nil {
			return nil, fmt.Errorf("virtuals.%s.destination: %w", name, err)
		}
		stats := e.vstats[name]
		if stats == nil {
			stats = &virtual.Stats{}
			e.vstats[name] = stats
		}
		pl := c.pools[v.Pool]
		plan := &virtual.Plan{
			Name:            name,
			Type:            v.Type,
			Destination:     dest,
			TrafficGroup:    v.TrafficGroup,
			Pool:            pl,
			Pools:           c.pools,
			HashKey:         poolHashKey(cfg, v.Pool),
			PersistTable:    e.persists,
			Conns:           e.conns,
			IdleTimeout:     durOrZero(v.IdleTimeout),
			ConnectTimeout:  v.ConnectTimeout.D(),
			ConnectionLimit: v.ConnectionLimit,
			Stats:           stats,
			Log:             e.log.With("virtual", name),
			AccessLog:       e.accessLog,
			Rejected:        func(reason string) { e.metrics.Rejected(name, reason) },
			Observer: func(pool, member string) prometheus.Observer {
				return e.metrics.RequestObserver(name, pool, member)
			},
		}
		if v.Mirror {
			plan.Mirror, plan.Guard = engineMirror{e}, engineGuard{e}
		}
		plan.DSRInterface = v.Interface
		if v.Type != "udp" {
			plan.Clientside, plan.Serverside = cfg.TCP[v.ClientsideTCP], cfg.TCP[v.ServersideTCP]
			if plan.Clientside == nil || plan.Serverside == nil {
				return nil, fmt.Errorf("virtuals.%s: TCP profile %q or %q does not exist", name, v.ClientsideTCP, v.ServersideTCP)
			}
			// A side's proxy buffer holds data on its way to that side.
			plan.ToClient = virtual.BufferLimits{High: int64(plan.Clientside.ProxyBufferHigh), Low: int64(plan.Clientside.ProxyBufferLow)}
			plan.ToServer = virtual.BufferLimits{High: int64(plan.Serverside.ProxyBufferHigh), Low: int64(plan.Serverside.ProxyBufferLow)}
			// The idle timeout is the clientside profile's (F5), unless the
			// virtual sets its own.
			if cfg.Line("virtuals."+name+".idle_timeout") == 0 && v.Type != "fastl4" {
				plan.IdleTimeout = plan.Clientside.IdleTimeout
			}
		}
		if v.Type == "fastl4" {
			// The idle timeout is the fastl4 profile's (config filled it
			// in), unless the virtual sets its own.
			fp := cfg.Profiles.FastL4[v.FastL4]
			if fp == nil {
				return nil, fmt.Errorf("virtuals.%s.fastl4_profile: profile %q does not exist", name, v.FastL4)
			}
			plan.FastL4 = virtual.FastL4Settings{
				Profile:        v.FastL4,
				ResetOnTimeout: fp.ResetOnTimeout == nil || *fp.ResetOnTimeout,
				LooseClose:     fp.LooseClose,
				KernelRelay:    e.kernelRel,
			}
		}
		if plan.Persist, err = persistProfile(v.Persistence); err != nil {
			return nil, err
		}
		if pp := cfg.Profiles.Persistence[v.Persistence]; pp != nil && pp.Type == persist.TypeLBSP {
			plan.LBSPType = config.DefaultLBSPOptionType
			if pp.OptionType != nil {
				plan.LBSPType = byte(*pp.OptionType)
			}
		}
		if plan.Fallback, err = persistProfile(v.FallbackPersistence); err != nil {
			return nil, err
		}
		plan.SNAT, err = snat(v.SNAT, cfg)
		if err != nil {
			return nil, fmt.Errorf("virtuals.%s.snat: %w", name, err)
		}
		if v.ClientSSL != "" {
			if plan.ClientTLS, err = clientTLS(cfg.Profiles.ClientSSL[v.ClientSSL]); err != nil {
				return nil, fmt.Errorf("profiles.client_ssl.%s: %w", v.ClientSSL, err)
			}
		}
		if v.ServerSSL != "" {
			if plan.ServerTLS, err = serverTLS(cfg.Profiles.ServerSSL[v.ServerSSL]); err != nil {
				return nil, fmt.Errorf("profiles.server_ssl.%s: %w", v.ServerSSL, err)
			}
		}
		if v.Type == "http" {
			hp := cfg.Profiles.HTTP[v.HTTP]
			if hp == nil {
				return nil, fmt.Errorf("virtuals.%s.http_profile: profile %q does not exist", name, v.HTTP)
			}
			plan.HTTP = virtual.HTTPSettings{
				InsertXFF:         hp.InsertXForwardedFor == nil || *hp.InsertXForwardedFor,
				MaxHeaderBytes:    int(hp.MaxHeaderSize),
				MaxHeaders:        hp.MaxHeaderCount,
				HeaderTimeout:     hp.HeaderTimeout.D(),
				KeepAliveTimeout:  hp.KeepAliveTimeout.D(),
				OneConnect:        hp.OneConnect == nil || *hp.OneConnect,
				MaxIdlePerMember:  hp.MaxIdlePerMember,
				ServerIdleTimeout: hp.ServerIdleTimeout.D(),
				ResponseTimeout:   hp.ResponseTimeout.D(),
			}
		}
		if v.ISession != "" {
			tp, err := e.tunnelPoolFor(cfg, v.ISession, c)
			if err != nil {
				discardTunnels(c)
				return nil, err
			}
			is := &virtual.ISessionPlan{Tunnels: tp, Profile: v.ISession}
			if v.Pool != "" {
				local := *plan // local fallback: the same virtual on its own pool
				is.Local = &local
			}
			plan.Pool, plan.HashKey = c.pools[v.ISessionEndpoints], poolHashKey(cfg, v.ISessionEndpoints)
			plan.ISession = is
		}
		key := listenerKey(v.Type, dest)
		if v.Type == "dsr" {
			// A new interface is a new forwarder, not a plan swap.
			key += "|" + v.Interface
		}
		c.plans[key] = plan
	}
	return c, nil
}

func poolHashKey(cfg *config.Config, name string) virtual.HashKey {
	if p := cfg.Pools[name]; p != nil {
		return hashKey(p.HashKey)
	}
	return virtual.HashKey{}
}

func intOr(p *int, d int) int {
	if p == nil {
		return d
	}
	return *p
}

// durOrZero maps "indefinite" to 0 (never reaped).
func durOrZero(d config.Duration) time.Duration {
	if d == config.Indefinite {
		return 0
	}
	return d.D()
}

func poolConfig(name string, pc *config.Pool) (pool.Config, error) {
	p := pool.Config{
		Name:             name,
		Method:           pc.LBMethod,
		MinActiveMembers: pc.MinActiveMembers,
		SlowRamp:         pc.SlowRampTime.D(),
		Monitored:        len(pc.Monitors) > 0,
	}
	if pc.Passive != nil {
		p.Passive = pool.PassiveConfig{
			Enabled:  pc.Passive.Enabled == nil || *pc.Passive.Enabled,
			Failures: pc.Passive.Failures,
			Interval: pc.Passive.FailureInterval.D(),
			Retry:    pc.Passive.RetryTime.D(),
		}
	}
	for i, m := range pc.Members {
		ap, err := netip.ParseAddrPort(m.Address)
		if err != nil {
			return p, fmt.Errorf("members[%d].address: %w", i, err)
		}
		st, err := pool.ParseState(m.State)
		if err != nil {
			return p, fmt.Errorf("members[%d].state: %w", i, err)
		}
		p.Members = append(p.Members, pool.MemberConfig{
			Addr:      netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
			Ratio:     max(m.Ratio, 1),
			ConnLimit: m.ConnectionLimit,
			Priority:  m.Priority,
			State:     st,
		})
	}
	return p, nil
}

func monitorSpec(name string, m *config.Monitor) (monitor.Spec, error) {
	if m == nil {
		return monitor.Spec{}, fmt.Errorf("monitor %q does not exist", name)
	}
	s := monitor.Spec{
		Name:        name,
		Type:        m.Type,
		Interval:    m.Interval.D(),
		UpInterval:  m.UpInterval.D(),
		Timeout:     m.Timeout.D(),
		TimeUntilUp: m.TimeUntilUp.D(),
		Send:        m.Send,
		Status:      m.Status,
		Reverse:     m.ReverseMatch,
		Destination: m.Destination,
		ServerName:  m.ServerName,
	}
	if m.Receive != "" {
		re, err := regexp.Compile(m.Receive)
		if err != nil {
			return s, fmt.Errorf("receive: %w", err)
		}
		s.Receive = re
	}
	return s, nil
}

// hashKey compiles a pool's hash_key (persist owns the grammar; config
// checked it) into the proxy's form.
func hashKey(s string) virtual.HashKey {
	k, err := persist.ParseKey(s)
	if err != nil {
		return virtual.HashKey{}
	}
	kinds := map[persist.KeyKind]virtual.HashKeyKind{
		persist.KeySourceAddr: virtual.HashSourceAddr,
		persist.KeyURI:        virtual.HashURI,
		persist.KeyHeader:     virtual.HashHeader,
		persist.KeyQuery:      virtual.HashQuery,
		persist.KeyCookie:     virtual.HashCookie,
	}
	return virtual.HashKey{Kind: kinds[k.Kind], Name: k.Name}
}

func snat(s string, cfg *config.Config) (virtual.SNAT, error) {
	switch s {
	case "", "automap":
		return virtual.SNAT{Mode: virtual.SNATAutomap}, nil
	case "none":
		return virtual.SNAT{Mode: virtual.SNATNone}, nil
	}
	sp := cfg.SNATPools[s]
	if sp == nil {
		return virtual.SNAT{}, fmt.Errorf("SNAT pool %q does not exist", s)
	}
	out := virtual.SNAT{Mode: virtual.SNATPool}
	for _, a := range sp.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return out, err
		}
		out.Addresses = append(out.Addresses, ip.Unmap())
	}
	return out, nil
}

// secretLen is the size of a generated cookie_insert secret.
const secretLen = 32

// newSecret reads a cookie secret from r (crypto/rand.Reader). It fails
// rather than return a short or predictable secret.
func newSecret(r io.Reader) ([]byte, error) {
	s := make([]byte, secretLen)
	if _, err := io.ReadFull(r, s); err != nil {
		return nil, fmt.Errorf("cannot generate a cookie secret (set secret in the profile): %w", err)
	}
	return s, nil
}

// clientTLS builds the client-ssl side: a default certificate plus SNI
// certificates matched by exact name, then by wildcard.
func clientTLS(p *config.ClientSSLProfile) (*tls.Config, error) {
	if p == nil {
		return nil, fmt.Errorf("profile does not exist")
	}
	minVersion, err := ssl.ParseVersion(p.MinVersion)
	if err != nil {
		return nil, err
	}
	def, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		return nil, fmt.Errorf("cert %s / key %s: %w", p.Cert, p.Key, err)
	}
	byName := map[string]*tls.Certificate{}
	for i, s := range p.SNI {
		cert, err := tls.LoadX509KeyPair(s.Cert, s.Key)
		if err != nil {
			return nil, fmt.Errorf("sni[%d]: cert %s / key %s: %w", i, s.Cert, s.Key, err)
		}
		names := s.ServerNames
		if len(names) == 0 {
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("sni[%d]: %w", i, err)
			}
			names = leaf.DNSNames
		}
		for _, n := range names {
			byName[strings.ToLower(n)] = &cert
		}
	}
	cfg := &tls.Config{
		MinVersion:   minVersion,
		Certificates: []tls.Certificate{def},
		NextProtos:   p.ALPN,
	}
	if len(byName) > 0 {
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
			if c, ok := byName[name]; ok {
				return c, nil
			}
			if i := strings.IndexByte(name, '.'); i > 0 {
				if c, ok := byName["*"+name[i:]]; ok {
					return c, nil
				}
			}
			return &def, nil
		}
	}
	return cfg, nil
}

// serverTLS builds the server-ssl side (re-encryption to members).
func serverTLS(p *config.ServerSSLProfile) (*tls.Config, error) {
	if p == nil {
		return nil, fmt.Errorf("profile does not exist")
	}
	minVersion, err := ssl.ParseVersion(p.MinVersion)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:         minVersion,
		ServerName:         p.ServerName,
		InsecureSkipVerify: !p.Verify, // F5 server-ssl does not verify by default
		ClientSessionCache: tls.NewLRUClientSessionCache(256),
	}
	if p.CA != "" {
		pem, err := os.ReadFile(p.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate found", p.CA)
		}
		cfg.RootCAs = roots
	}
	if p.Cert != "" {
		cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("cert %s / key %s: %w", p.Cert, p.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
