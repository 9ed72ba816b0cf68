package config

import (
	"crypto/x509"
	"fmt"
	"os"
	"slices"
)

// iSession: the schema of the tunnel between two Fulcrum sites (F5: the
// iSession profile of WAN optimization, its endpoints and listener), its
// defaults and its checks. The isession package runs it; docs/isession.md
// explains it.

// ISessionProfile is one set of tunnel settings (F5: wom profile
// isession). The remote end's virtual and the data-center end's listener
// each name one; a tunnel uses only what both enable.
type ISessionProfile struct {
	// Compression: adaptive (default: per block among Codecs, from the
	// measured link rate) | none | deflate | zstd | s2 (F5 compression,
	// adaptive-compression).
	Compression string `yaml:"compression"`
	// Codecs are adaptive compression's candidates, in order of preference
	// (default [zstd, s2, deflate]; F5 compression-codecs).
	Codecs       []string `yaml:"codecs"`
	DeflateLevel int      `yaml:"deflate_level"` // 1..9, default 1 (F5 deflate-compression-level)
	ZstdLevel    int      `yaml:"zstd_level"`    // 1..4, default 1
	// Dedup enables symmetric de-duplication (default true; F5
	// deduplication); DedupCache is the chunk cache per direction of each
	// tunnel connection (default 256MiB).
	Dedup      *bool `yaml:"dedup"`
	DedupCache Size  `yaml:"dedup_cache"`
	// PortTransparency keeps the inner connection's destination port
	// (default true; F5 port-transparency).
	PortTransparency *bool `yaml:"port_transparency"`
	// Reuse keeps tunnel connections for later client connections
	// (default true; F5 reuse-connection), closing one idle for
	// IdleTimeout (default 10m; indefinite: never) and giving no new
	// streams to one older than MaxAge (default indefinite: no limit).
	Reuse       *bool    `yaml:"reuse"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	MaxAge      Duration `yaml:"max_age"`
	// Connections is how many tunnel connections to keep per endpoint
	// (default 1).
	Connections int `yaml:"connections"`
	// Per-stream flow-control windows: initial (default 256KiB) and the
	// most auto-tuning may grow one to (default 64MiB). Windows count raw
	// bytes, so they must cover the raw rate, not the link's: 1 Gbit/s ×
	// 20 ms is 2.5 MB of wire, but de-duplicated data arriving at 3 GB/s
	// over the same path needs 60 MB.
	InitialWindow Size `yaml:"initial_window"`
	MaxWindow     Size `yaml:"max_window"`
	MaxStreams    int  `yaml:"max_streams"` // streams per tunnel connection (default 1024)
	// TargetVirtual is where the data-center end sends each inner
	// connection: match_all (default; F5 virtual-match-all: the local
	// virtual whose destination is the connection's, else the original
	// destination itself), none (always the original destination), or a
	// virtual's name.
	TargetVirtual string `yaml:"target_virtual"`
	// TunnelTCP is the TCP profile of the tunnel connection on the WAN
	// (default tcp-wan-optimized).
	TunnelTCP string `yaml:"tunnel_tcp"`
	// DataEncryption: tunnels are always TLS 1.3; false is refused.
	DataEncryption *bool `yaml:"data_encryption"`
}

// ISession is this device's iSession identity and its data-center end.
type ISession struct {
	// Cert and Key are this device's certificate for tunnels; CA holds the
	// certificates peers' certificates must chain to (mutual TLS).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
	// Listen is the data-center end's tunnel address (F5: the local
	// endpoint's tunnel port); empty: this device terminates no tunnels.
	Listen string `yaml:"listen"`
	// Profile is the listener's iSession profile (default: the built-in
	// "isession").
	Profile string `yaml:"profile"`
	// MaxTunnels bounds the tunnel connections the listener holds (default 256).
	MaxTunnels int `yaml:"max_tunnels"`
	// DedupMemory bounds the de-duplication caches of all the listener's
	// tunnel connections together (default 4 × the profile's dedup_cache).
	DedupMemory Size `yaml:"dedup_memory"`
}

// BuiltinISession is the name of the built-in iSession profile (F5: isession).
const BuiltinISession = "isession"

// The iSession defaults.
const (
	DefaultDedupCache    = 256 << 20
	DefaultISessionIdle  = 600 // seconds: F5's first release fixed reuse at 10 minutes
	DefaultInitialWindow = 256 << 10
	DefaultMaxWindow     = 64 << 20
)

// ISessionCodecs are the codec names a profile may list.
func ISessionCodecs() []string { return []string{"zstd", "s2", "deflate"} }

func (v *validator) isession() {
	c := v.cfg
	if c.Profiles.ISession == nil {
		c.Profiles.ISession = map[string]*ISessionProfile{}
	}
	if c.Profiles.ISession[BuiltinISession] == nil {
		c.Profiles.ISession[BuiltinISession] = &ISessionProfile{}
	}
	for _, name := range sortedKeys(c.Profiles.ISession) {
		p := c.Profiles.ISession[name]
		path := "profiles.isession." + name
		if p.Compression == "" {
			p.Compression = "adaptive"
		}
		v.oneOf(path+".compression", "compression", p.Compression, "adaptive", "none", "deflate", "zstd", "s2")
		if len(p.Codecs) == 0 {
			p.Codecs = ISessionCodecs()
		}
		for i, k := range p.Codecs {
			switch {
			case k == "bzip2" || k == "lzo":
				v.errorf(fmt.Sprintf("%s.codecs[%d]", path, i), "codec %s is not offered (no maintained pure-Go %s); use zstd, s2 or deflate", k, k)
			case !slices.Contains(ISessionCodecs(), k):
				v.errorf(fmt.Sprintf("%s.codecs[%d]", path, i), "unknown codec %q (want zstd, s2 or deflate)", k)
			case slices.Index(p.Codecs, k) != i:
				v.errorf(fmt.Sprintf("%s.codecs[%d]", path, i), "codec %s listed twice", k)
			}
		}
		if p.DeflateLevel == 0 {
			p.DeflateLevel = 1
		}
		if p.DeflateLevel < 1 || p.DeflateLevel > 9 {
			v.errorf(path+".deflate_level", "deflate_level must be 1 to 9")
		}
		if p.ZstdLevel == 0 {
			p.ZstdLevel = 1
		}
		if p.ZstdLevel < 1 || p.ZstdLevel > 4 {
			v.errorf(path+".zstd_level", "zstd_level must be 1 (fastest) to 4 (best compression)")
		}
		if p.DedupCache == 0 {
			p.DedupCache = DefaultDedupCache
		}
		if p.DedupCache < 1<<20 || p.DedupCache > 64<<30 {
			v.errorf(path+".dedup_cache", "dedup_cache must be 1MiB to 64GiB")
		}
		if v.cfg.Line(path+".idle_timeout") == 0 {
			p.IdleTimeout = Duration(DefaultISessionIdle * 1e9)
		}
		if v.cfg.Line(path+".max_age") == 0 {
			p.MaxAge = Indefinite
		}
		v.positive(path+".idle_timeout", "idle_timeout", p.IdleTimeout, true)
		v.positive(path+".max_age", "max_age", p.MaxAge, true)
		if p.Connections == 0 {
			p.Connections = 1
		}
		if p.Connections < 1 || p.Connections > 16 {
			v.errorf(path+".connections", "connections must be 1 to 16")
		}
		if p.InitialWindow == 0 {
			p.InitialWindow = DefaultInitialWindow
		}
		if p.MaxWindow == 0 {
			p.MaxWindow = max(DefaultMaxWindow, p.InitialWindow)
		}
		if p.InitialWindow < 16<<10 || p.InitialWindow > 256<<20 {
			v.errorf(path+".initial_window", "initial_window must be 16KiB to 256MiB")
		}
		if p.MaxWindow < p.InitialWindow || p.MaxWindow > 256<<20 {
			v.errorf(path+".max_window", "max_window must be at least initial_window and at most 256MiB")
		}
		if p.MaxStreams == 0 {
			p.MaxStreams = 1024
		}
		if p.MaxStreams < 1 || p.MaxStreams > 65536 {
			v.errorf(path+".max_streams", "max_streams must be 1 to 65536")
		}
		switch p.TargetVirtual {
		case "":
			p.TargetVirtual = "match_all"
		case "match_all", "none":
		case "host_match_all", "host_match_no_isession", "host-match-all", "host-match-no-isession":
			v.errorf(path+".target_virtual", "%s is not built: it matches F5 host (self IP/route) objects Fulcrum does not model; use match_all, none or a virtual's name", p.TargetVirtual)
		default:
			if vs := c.Virtuals[p.TargetVirtual]; vs == nil {
				v.errorf(path+".target_virtual", "virtual %q does not exist (want match_all, none or a virtual's name)", p.TargetVirtual)
			} else if vs.Type != "tcp" && vs.Type != "http" && vs.Type != "fastl4" {
				v.errorf(path+".target_virtual", "virtual %q is %s: an inner connection is TCP", p.TargetVirtual, vs.Type)
			}
		}
		if p.TunnelTCP == "" {
			p.TunnelTCP = "tcp-wan-optimized"
		}
		if c.TCP != nil && c.TCP[p.TunnelTCP] == nil {
			v.errorf(path+".tunnel_tcp", "TCP profile %q does not exist", p.TunnelTCP)
		}
		if p.DataEncryption != nil && !*p.DataEncryption {
			v.errorf(path+".data_encryption", "iSession tunnels are always encrypted (TLS 1.3 with mutual certificates): data_encryption cannot be false")
		}
	}

	is := &c.ISession
	used := is.Listen != ""
	for _, name := range sortedKeys(c.Virtuals) {
		vs := c.Virtuals[name]
		path := "virtuals." + name
		if vs.ISession == "" {
			if vs.ISessionEndpoints != "" {
				v.errorf(path+".isession_endpoints", "isession_endpoints needs isession (the profile)")
			}
			continue
		}
		used = true
		refCheck(v, path+".isession", "isession profile", vs.ISession, c.Profiles.ISession)
		if vs.Type != "tcp" {
			v.errorf(path+".isession", "iSession is built for tcp virtuals only (this one is %s)", vs.Type)
		}
		if vs.ISessionEndpoints == "" {
			v.errorf(path+".isession_endpoints", "isession_endpoints is required: the pool of remote sites' iSession listener addresses")
		} else {
			refCheck(v, path+".isession_endpoints", "pool", vs.ISessionEndpoints, c.Pools)
		}
		for _, k := range []struct{ key, val string }{{"client_ssl", vs.ClientSSL}, {"server_ssl", vs.ServerSSL},
			{"persistence", vs.Persistence}, {"fallback_persistence", vs.FallbackPersistence}} {
			if k.val != "" {
				v.errorf(path+"."+k.key, "%s is not built together with isession yet", k.key)
			}
		}
		if vs.Mirror {
			v.errorf(path+".mirror", "connections through an iSession tunnel cannot be mirrored (the tunnel's TLS state cannot be exported)")
		}
	}
	if !used {
		return
	}
	if is.Profile == "" {
		is.Profile = BuiltinISession
	}
	refCheck(v, "isession.profile", "isession profile", is.Profile, c.Profiles.ISession)
	if is.Listen != "" {
		if _, err := ParseDestination(is.Listen); err != nil {
			v.errorf("isession.listen", "%v", err)
		}
	}
	if is.MaxTunnels == 0 {
		is.MaxTunnels = 256
	}
	if is.MaxTunnels < 1 {
		v.errorf("isession.max_tunnels", "max_tunnels must be at least 1")
	}
	if p := c.Profiles.ISession[is.Profile]; p != nil && is.DedupMemory == 0 {
		is.DedupMemory = 4 * p.DedupCache
	}
	if is.DedupMemory < 0 {
		v.errorf("isession.dedup_memory", "dedup_memory cannot be negative")
	}
	switch {
	case is.Cert == "" || is.Key == "":
		v.errorf("isession", "iSession needs this device's certificate: isession.cert and isession.key (PEM files)")
	default:
		v.loadPair("isession", is.Cert, is.Key)
	}
	if is.CA == "" {
		v.errorf("isession.ca", "isession.ca is required: the CA certificates peers' certificates must chain to (tunnels use mutual TLS)")
	} else if b, err := os.ReadFile(is.CA); err != nil {
		v.errorf("isession.ca", "%v", err)
	} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
		v.errorf("isession.ca", "%s holds no PEM certificate", is.CA)
	}
}
