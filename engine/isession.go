package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/isession"
	"github.com/fulcrum-adc/fulcrum/isession/codec"
	"github.com/fulcrum-adc/fulcrum/profile/tcp"
	"github.com/fulcrum-adc/fulcrum/virtual"
)

// iSession in the engine: the remote end's tunnel pools (one per iSession
// profile used by virtuals, kept across reloads while its settings do not
// change) and the data-center end's terminator with its listener.

type isessionState struct {
	pools map[string]*tunnelPool // by profile name
	term  *isession.Terminator
	ln    net.Listener
	lnKey string
	cfg   atomic.Pointer[config.Config] // what the terminator resolves targets against
}

type tunnelPool struct {
	key  string
	pool *isession.Pool
}

// isessionTLS builds the tunnel TLS configuration from the isession
// section: this device's certificate; a peer's certificate must chain to
// the CA (no host name check: peers are reached by address, trust is the
// CA's).
func isessionTLS(is *config.ISession) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(is.Cert, is.Key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(is.CA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", is.CA)
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	return &tls.Config{
		Certificates:       []tls.Certificate{pair},
		ClientCAs:          roots,
		InsecureSkipVerify: true, // the chain is checked by VerifyConnection, without a host name
		VerifyConnection:   verify,
	}, nil
}

// isessionSettings turns a profile into tunnel settings.
func isessionSettings(cfg *config.Config, name string, tc *tls.Config) (*isession.Settings, error) {
	p := cfg.Profiles.ISession[name]
	if p == nil {
		return nil, fmt.Errorf("isession profile %q does not exist", name)
	}
	s := &isession.Settings{
		TLS: tc, Device: cfg.Local.Device,
		DeflateLevel: p.DeflateLevel, ZstdLevel: p.ZstdLevel,
		Dedup: p.Dedup == nil || *p.Dedup, DedupCache: int64(p.DedupCache),
		PortTransparency: p.PortTransparency == nil || *p.PortTransparency,
		InitialWindow:    int(p.InitialWindow), MaxWindow: int(p.MaxWindow), MaxStreams: p.MaxStreams,
	}
	switch p.Compression {
	case "none":
	case "adaptive":
		s.Adaptive = true
		for _, n := range p.Codecs {
			c, err := codec.ParseCodec(n)
			if err != nil {
				return nil, err
			}
			s.Codecs = append(s.Codecs, c)
		}
	default:
		c, err := codec.ParseCodec(p.Compression)
		if err != nil {
			return nil, err
		}
		s.Codecs = []codec.Codec{c}
	}
	return s, nil
}

func reuseOf(p *config.ISessionProfile) isession.Reuse {
	r := isession.Reuse{Off: p.Reuse != nil && !*p.Reuse, Connections: p.Connections}
	if p.IdleTimeout > 0 {
		r.IdleTimeout = p.IdleTimeout.D()
	}
	if p.MaxAge > 0 {
		r.MaxAge = p.MaxAge.D()
	}
	return r
}

// dialer returns a dial function applying the tunnel's TCP profile.
func dialer(prof *tcp.Profile) func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
		d := net.Dialer{}
		if prof != nil {
			d.Control = prof.DialControl
		}
		c, err := d.DialContext(ctx, "tcp", a.String())
		if err == nil && prof != nil {
			if tc, ok := c.(*net.TCPConn); ok {
				prof.ApplyConn(tc, tcp.Serverside)
			}
		}
		return c, err
	}
}

// tunnelPoolFor returns the pool of profile name for the configuration
// being compiled: the running one if its settings are the same, else a
// new one (recorded in c so Apply can commit or discard it).
func (e *Engine) tunnelPoolFor(cfg *config.Config, name string, c *compiled) (*isession.Pool, error) {
	if tp := c.tunnels[name]; tp != nil {
		return tp.pool, nil
	}
	p := cfg.Profiles.ISession[name]
	key := profileKey(p) + fmt.Sprintf("|%s|%s|%s|%s", cfg.ISession.Cert, cfg.ISession.Key, cfg.ISession.CA, fileStamp(cfg.ISession.Cert, cfg.ISession.Key, cfg.ISession.CA))
	if old := e.isession.pools[name]; old != nil && old.key == key {
		c.tunnels[name] = old
		return old.pool, nil
	}
	tc, err := isessionTLS(&cfg.ISession)
	if err != nil {
		return nil, fmt.Errorf("isession: %w", err)
	}
	s, err := isessionSettings(cfg, name, tc)
	if err != nil {
		return nil, fmt.Errorf("profiles.isession.%s: %w", name, err)
	}
	pool := isession.NewPool(s, reuseOf(p), dialer(cfg.TCP[p.TunnelTCP]), e.log.With("isession_profile", name))
	c.tunnels[name] = &tunnelPool{key: key, pool: pool}
	c.newTunnels = append(c.newTunnels, pool)
	return pool, nil
}

// profileKey is a profile's settings as a string that is equal exactly
// when the settings are (pointer fields by value, not by address), so a
// reload that changes nothing keeps the tunnels.
func profileKey(p *config.ISessionProfile) string {
	v := *p
	v.Dedup, v.PortTransparency, v.Reuse, v.DataEncryption = nil, nil, nil, nil
	return fmt.Sprintf("%+v|%v", v, derefBools(p))
}

func derefBools(p *config.ISessionProfile) [4]string {
	f := func(b *bool) string {
		if b == nil {
			return "default"
		}
		return fmt.Sprint(*b)
	}
	return [4]string{f(p.Dedup), f(p.PortTransparency), f(p.Reuse), f(p.DataEncryption)}
}

// fileStamp changes when any of the files changes.
func fileStamp(paths ...string) string {
	var s string
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}

// commitTunnels makes c's tunnel pools the running ones and closes those
// no longer used.
func (e *Engine) commitTunnels(c *compiled) {
	for name, tp := range e.isession.pools {
		if c.tunnels[name] != tp {
			tp.pool.Close()
		}
	}
	e.isession.pools = c.tunnels
}

// discardTunnels closes the pools a failed Apply created.
func discardTunnels(c *compiled) {
	for _, p := range c.newTunnels {
		p.Close()
	}
}

// prepareTerminator opens the data-center end's listener when the
// configuration adds or moves it; commit makes it serve.
func (e *Engine) prepareTerminator(cfg *config.Config) (commit, discard func(), err error) {
	is := &cfg.ISession
	key := ""
	if is.Listen != "" {
		key = fmt.Sprintf("%s|%s|%d|%d|%s|%s|%s|%s", is.Listen, is.Profile, is.MaxTunnels, is.DedupMemory, is.Cert, is.Key, is.CA, fileStamp(is.Cert, is.Key, is.CA))
		if p := cfg.Profiles.ISession[is.Profile]; p != nil {
			key += "|" + profileKey(p)
		}
	}
	st := &e.isession
	if key == st.lnKey {
		return func() { st.cfg.Store(cfg) }, func() {}, nil
	}
	var ln net.Listener
	var term *isession.Terminator
	if key != "" {
		tc, err := isessionTLS(is)
		if err != nil {
			return nil, nil, fmt.Errorf("isession: %w", err)
		}
		s, err := isessionSettings(cfg, is.Profile, tc)
		if err != nil {
			return nil, nil, fmt.Errorf("profiles.isession.%s: %w", is.Profile, err)
		}
		prof := cfg.TCP[cfg.Profiles.ISession[is.Profile].TunnelTCP]
		lc := net.ListenConfig{}
		if prof != nil {
			lc.Control = prof.ListenControl
		}
		// A moved listener on the same address: close the old one first.
		if st.ln != nil && st.ln.Addr().String() == is.Listen {
			st.ln.Close()
			st.ln = nil
		}
		ln, err = lc.Listen(context.Background(), "tcp", is.Listen)
		if err != nil {
			return nil, nil, fmt.Errorf("isession.listen %s: %w", is.Listen, err)
		}
		term = isession.NewTerminator(s, isession.TerminatorOptions{MaxTunnels: is.MaxTunnels, DedupMemory: int64(is.DedupMemory)},
			e.resolveTarget, dialer(nil), e.log.With("isession", "listener"))
	}
	return func() {
			st.cfg.Store(cfg)
			if st.ln != nil {
				st.ln.Close()
			}
			if st.term != nil {
				go st.term.Close()
			}
			st.ln, st.term, st.lnKey = ln, term, key
			if term != nil {
				e.log.Info("iSession listener up", "address", ln.Addr().String(), "profile", is.Profile)
				go term.Serve(ln)
			}
		}, func() {
			if ln != nil {
				ln.Close()
			}
		}, nil
}

// resolveTarget is the data-center end's target-virtual policy.
func (e *Engine) resolveTarget(t isession.Target) (netip.AddrPort, string, bool) {
	cfg := e.isession.cfg.Load()
	if cfg == nil {
		return netip.AddrPort{}, "", false
	}
	p := cfg.Profiles.ISession[cfg.ISession.Profile]
	local := func(name string) (netip.AddrPort, string, bool) {
		v := cfg.Virtuals[name]
		d, err := config.ParseDestination(v.Destination)
		if err != nil {
			return netip.AddrPort{}, "", false
		}
		if d.Addr().IsUnspecified() { // listening on every address: reach it on loopback
			lo := netip.IPv6Loopback()
			if d.Addr().Is4() {
				lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			d = netip.AddrPortFrom(lo, d.Port())
		}
		return d, "virtual " + name, true
	}
	switch p.TargetVirtual {
	case "none":
	case "match_all":
		names := cfg.VirtualNames()
		slices.Sort(names)
		// A virtual on the exact address first, then one listening on
		// every address of the family (0.0.0.0 or ::).
		for _, wildcard := range []bool{false, true} {
			for _, name := range names {
				v := cfg.Virtuals[name]
				if (v.Enabled != nil && !*v.Enabled) || v.ISession != "" || (v.Type != "tcp" && v.Type != "http" && v.Type != "fastl4") {
					continue
				}
				d, err := config.ParseDestination(v.Destination)
				if err != nil || (t.Dst.Port() != 0 && d.Port() != t.Dst.Port()) {
					continue
				}
				da, ta := d.Addr().Unmap(), t.Dst.Addr().Unmap()
				if (!wildcard && da == ta) || (wildcard && da.IsUnspecified() && da.Is4() == ta.Is4()) {
					return local(name)
				}
			}
		}
	default:
		return local(p.TargetVirtual)
	}
	if t.Dst.Port() == 0 {
		return netip.AddrPort{}, "", false // no port to go to
	}
	return t.Dst, "original destination", true
}

// ISessionStats is what `fulcrum show isessions` and the API report.
type ISessionStats struct {
	Pools    map[string]isession.PoolStats `json:"pools"`              // remote end, by profile
	Listener *isession.TerminatorStats     `json:"listener,omitempty"` // data-center end
}

// ISessions returns the tunnels' statistics.
func (e *Engine) ISessions() ISessionStats {
	e.mu.Lock()
	pools := make(map[string]*tunnelPool, len(e.isession.pools))
	for k, v := range e.isession.pools {
		pools[k] = v
	}
	term := e.isession.term
	e.mu.Unlock()
	out := ISessionStats{Pools: map[string]isession.PoolStats{}}
	for name, tp := range pools {
		out.Pools[name] = tp.pool.Stats()
	}
	if term != nil {
		s := term.Stats()
		out.Listener = &s
	}
	return out
}

// closeISession ends every tunnel (engine shutdown).
func (e *Engine) closeISession() {
	e.mu.Lock()
	st := &e.isession
	pools, ln, term := st.pools, st.ln, st.term
	st.pools, st.ln, st.term = nil, nil, nil
	e.mu.Unlock()
	for _, tp := range pools {
		tp.pool.Close()
	}
	if ln != nil {
		ln.Close()
	}
	if term != nil {
		term.Close()
	}
}

// registerISessionMetrics exports the tunnels: connections per fate
// (counters, per virtual), and the live tunnel connections with their
// byte counts so far (gauges: a tunnel's counts leave with it). One
// collector reads the engine once per scrape.
func (e *Engine) registerISessionMetrics() {
	e.metrics.Registry().MustRegister(&isessionCollector{e: e, metrics: isessionMetricSet()})
}

type isessionMetric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	fate func(*virtual.ISessionStats) uint64 // counters: summed over virtuals
	live func(isession.Stats) float64        // gauges: summed over live tunnels
}

func isessionMetricSet() []isessionMetric {
	return []isessionMetric{
		{desc: prometheus.NewDesc("fulcrum_isession_tunneled_connections_total", "Client connections sent through an iSession tunnel.", nil, nil),
			kind: prometheus.CounterValue, fate: func(s *virtual.ISessionStats) uint64 { return s.Tunneled.Load() }},
		{desc: prometheus.NewDesc("fulcrum_isession_local_fallback_total", "Client connections of iSession virtuals served from the local pool because no tunnel could be set up.", nil, nil),
			kind: prometheus.CounterValue, fate: func(s *virtual.ISessionStats) uint64 { return s.LocalFallback.Load() }},
		{desc: prometheus.NewDesc("fulcrum_isession_refused_total", "Client connections of iSession virtuals refused: no tunnel and no local pool.", nil, nil),
			kind: prometheus.CounterValue, fate: func(s *virtual.ISessionStats) uint64 { return s.Refused.Load() }},
		{desc: prometheus.NewDesc("fulcrum_isession_tunnels", "iSession tunnel connections up (both ends).", nil, nil),
			kind: prometheus.GaugeValue, live: func(isession.Stats) float64 { return 1 }},
		{desc: prometheus.NewDesc("fulcrum_isession_streams_open", "Inner connections open in iSession tunnels.", nil, nil),
			kind: prometheus.GaugeValue, live: func(t isession.Stats) float64 { return float64(t.Mux.StreamsOpen) }},
		{desc: prometheus.NewDesc("fulcrum_isession_live_raw_bytes_sent", "Bytes sent into the live tunnel connections before optimization.", nil, nil),
			kind: prometheus.GaugeValue, live: func(t isession.Stats) float64 { return float64(t.Mux.RawOut) }},
		{desc: prometheus.NewDesc("fulcrum_isession_live_wire_bytes_sent", "Bytes the live tunnel connections sent after optimization (before TLS).", nil, nil),
			kind: prometheus.GaugeValue, live: func(t isession.Stats) float64 { return float64(t.Mux.WireOut) }},
		{desc: prometheus.NewDesc("fulcrum_isession_live_dedup_refs_sent", "Chunks the live tunnel connections sent as de-duplication references.", nil, nil),
			kind: prometheus.GaugeValue, live: func(t isession.Stats) float64 { return float64(t.DedupOut.Refs) }},
	}
}

type isessionCollector struct {
	e       *Engine
	metrics []isessionMetric
}

func (c *isessionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

func (c *isessionCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.ISessions()
	var tunnels []isession.Stats
	for _, p := range st.Pools {
		tunnels = append(tunnels, p.Tunnels...)
	}
	if st.Listener != nil {
		tunnels = append(tunnels, st.Listener.Tunnels...)
	}
	c.e.mu.Lock()
	vs := make([]*virtual.Stats, 0, len(c.e.vstats))
	for _, v := range c.e.vstats {
		vs = append(vs, v)
	}
	c.e.mu.Unlock()
	for _, m := range c.metrics {
		var v float64
		for _, s := range vs {
			if m.fate != nil {
				v += float64(m.fate(&s.ISession))
			}
		}
		for _, t := range tunnels {
			if m.live != nil {
				v += m.live(t)
			}
		}
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, v)
	}
}
