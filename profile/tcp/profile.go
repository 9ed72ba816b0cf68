package tcp

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/units"
)

// Names of the built-in profiles.
const (
	BuiltinTCP    = "tcp"
	BuiltinLAN    = "tcp-lan-optimized"
	BuiltinWAN    = "tcp-wan-optimized"
	BuiltinMobile = "tcp-mobile-optimized"
	// BuiltinProgressive is what a virtual that names no profile gets (F5's
	// later default, f5-tcp-progressive, plays the same part): the reference
	// timers of tcp with every buffer sized from the measured path, so a
	// user who writes no profile is not capped at 64 KB in flight.
	BuiltinProgressive = "tcp-progressive"
)

// Limits enforced by Resolve. docs/tcp-profiles.md explains each.
const (
	MinBuffer        = 4 << 10  // send_buffer, receive_window, proxy buffers, ceiling: below this Linux rounds up (SOCK_MIN_SNDBUF) and TCP stalls
	MaxBuffer        = 64 << 20 // above this one connection holds more than a 10 Gbit/s × 50 ms path needs
	MinCeiling       = 64 << 10 // auto_buffer_ceiling: auto never goes below the non-scaled window
	MaxSynRetrans    = 127      // MAX_TCP_SYNCNT
	MaxKeepAlive     = 32767 * time.Second
	MaxLinger2       = 120 * time.Second // TCP_FIN_TIMEOUT_MAX: TCP_LINGER2 is capped there
	MinRTOFloor      = 10 * time.Millisecond
	MinRTOCeiling    = 200 * time.Millisecond // TCP_RTO_MIN_US accepts at most TCP_RTO_MIN (200 ms)
	MaxUserTimeout   = time.Duration(1<<31-1) * time.Millisecond
	MinMSS, MaxMSS   = 88, 65495 // TCP_MIN_MSS; 65535 - 40 header bytes
	MaxInitWindow    = 1024      // init_cwnd / init_rwnd segments
	RuleGap          = 32 << 10  // rule 3: proxy_buffer_high - proxy_buffer_low below this flaps
	KeepAliveProbes  = 9         // TCP_KEEPCNT: unanswered probes before the kernel drops the connection
	DeferAcceptLimit = 10 * time.Second
	DefaultCeiling   = 8 << 20
)

// Profile is a fully resolved profile: inheritance is applied and every field
// holds a value. The data path (package virtual) reads the timers, the proxy
// buffer limits and the flags that need user-space work; ListenControl,
// DialControl and ApplyConn apply the rest to sockets.
//
// Proxy buffers follow F5: a side's profile limits the data buffered in
// Fulcrum on its way *to* that side (the clientside profile's
// ProxyBufferHigh/Low govern bytes read from the server and not yet written
// to the client). When the buffer reaches High, Fulcrum stops reading from
// the other side (its receive window closes); it reads again once the buffer
// has drained below Low.
type Profile struct {
	Name string

	IdleTimeout       time.Duration // 0 = indefinite
	KeepAliveInterval time.Duration // 0 = off
	FinWaitTimeout    time.Duration // FIN_WAIT_1 + CLOSING (user-space timer after we send FIN); 0 = none
	FinWait2Timeout   time.Duration // TCP_LINGER2 (and the user-space timer on half-closed sockets); 0 = kernel default
	CloseWaitTimeout  time.Duration // after the peer's FIN, how long we wait for our side to finish; 0 = none
	TimeWaitTimeout   time.Duration // informational: Linux holds TIME_WAIT for 60 s
	TimeWaitRecycle   bool
	ResetOnTimeout    bool
	ZeroWindowTimeout time.Duration // 0 = off
	SynMaxRetrans     int
	MinRTO            time.Duration // 0 = kernel default
	UserTimeout       time.Duration // 0 = kernel default

	SendBuffer, ReceiveWindow         int  // bytes; 0 with Auto* = auto
	AutoSendBuffer, AutoReceiveWindow bool // sized by AutoTune
	AutoBufferCeiling                 int  // upper bound for auto sizing
	ProxyBufferHigh, ProxyBufferLow   int  // bytes; 0 with AutoProxyBuffer = auto
	AutoProxyBuffer                   bool // sized by AutoProxyBuffer

	Nagle, DelayedACK, AckOnPush, DeferredAccept, SlowStartAfterIdle bool
	CongestionControl                                                string // "" = system default
	InitCwnd, InitRwnd                                               int    // segments; 0 = kernel default (per route only)
	MSS                                                              int    // 0 = kernel default
	ProxyMSS                                                         bool   // serverside: use the clientside's negotiated MSS
	NotSentLowat                                                     int    // 0 = off
	PacingRate                                                       int64  // bytes/s, 0 = off

	SACK, DSACK, Timestamps, WindowScaling, ECN, LimitedTransmit bool
	IPToS, IPv6TClass                                            int // -1 = leave
	LinkQoS                                                      int // SO_PRIORITY, -1 = leave

	// Explicit holds the YAML keys written by the operator in this profile or
	// one of its user-defined ancestors. Notices compares system-wide settings
	// with the host only for these, so the built-ins (whose system-wide values
	// describe a default Linux host) stay quiet.
	Explicit map[string]bool
}

func base() *Profile {
	return &Profile{
		Name:              BuiltinTCP,
		IdleTimeout:       300 * time.Second,
		KeepAliveInterval: 1800 * time.Second,
		FinWaitTimeout:    5 * time.Second,
		FinWait2Timeout:   MaxLinger2,
		CloseWaitTimeout:  5 * time.Second,
		TimeWaitTimeout:   60 * time.Second,
		TimeWaitRecycle:   true,
		ResetOnTimeout:    true,
		ZeroWindowTimeout: 20 * time.Second,
		SynMaxRetrans:     3,
		SendBuffer:        65535,
		ReceiveWindow:     65535,
		AutoBufferCeiling: DefaultCeiling,
		ProxyBufferHigh:   131072,
		ProxyBufferLow:    65536,
		DelayedACK:        true,

		SlowStartAfterIdle: true,
		SACK:               true,
		DSACK:              true,
		Timestamps:         true,
		WindowScaling:      true,
		LimitedTransmit:    true,
		IPToS:              -1,
		IPv6TClass:         -1,
		LinkQoS:            -1,
		Explicit:           map[string]bool{},
	}
}

// Builtins returns fresh copies of the built-in profiles: tcp,
// tcp-lan-optimized, tcp-wan-optimized, tcp-mobile-optimized and
// tcp-progressive.
// docs/tcp-profiles.md gives and justifies every value.
func Builtins() map[string]*Profile {
	tcp := base()

	lan := base()
	lan.Name = BuiltinLAN
	lan.ProxyBufferLow = 98304 // reference
	lan.AckOnPush = true       // reference

	wan := base()
	wan.Name = BuiltinWAN
	wan.ProxyBufferLow = 131072 // reference: low = high
	wan.Nagle = true            // coalesce small writes on a slow path

	mob := base()
	mob.Name = BuiltinMobile
	mob.SendBuffer, mob.AutoSendBuffer = 0, true
	mob.ReceiveWindow, mob.AutoReceiveWindow = 0, true
	mob.ProxyBufferHigh, mob.ProxyBufferLow, mob.AutoProxyBuffer = 0, 0, true
	mob.AutoBufferCeiling = 4 << 20
	mob.AckOnPush = true
	mob.NotSentLowat = 128 << 10

	prog := base()
	prog.Name = BuiltinProgressive
	prog.SendBuffer, prog.AutoSendBuffer = 0, true
	prog.ReceiveWindow, prog.AutoReceiveWindow = 0, true
	prog.ProxyBufferHigh, prog.ProxyBufferLow, prog.AutoProxyBuffer = 0, 0, true

	return map[string]*Profile{tcp.Name: tcp, lan.Name: lan, wan.Name: wan, mob.Name: mob, prog.Name: prog}
}

// IsBuiltin reports whether name is a built-in profile.
func IsBuiltin(name string) bool {
	switch name {
	case BuiltinTCP, BuiltinLAN, BuiltinWAN, BuiltinMobile, BuiltinProgressive:
		return true
	}
	return false
}

// Error is one problem with a user profile: Key is the YAML key it concerns
// ("" for the profile as a whole).
type Error struct {
	Profile, Key, Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("profiles.tcp.%s: %s", e.Profile, e.Msg)
	}
	return fmt.Sprintf("profiles.tcp.%s.%s: %s", e.Profile, e.Key, e.Msg)
}

// Errors is every problem Resolve found, in profile then key order.
type Errors []*Error

func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, x := range e {
		s[i] = x.Error()
	}
	return strings.Join(s, "\n")
}

// Resolve applies inheritance over the user profiles (each inherits from its
// parent, "tcp" when none is named) and returns every profile, built-ins
// included. A user profile may not reuse a built-in name (as on F5). It
// reports every problem at once as Errors: unknown parents, cycles, values out
// of range and inconsistent combinations. The congestion-control name is not
// checked here (it depends on the host): see CheckCongestionControl.
func Resolve(user map[string]*Settings) (map[string]*Profile, error) {
	out := Builtins()
	var errs Errors
	add := func(name, key, format string, args ...any) {
		errs = append(errs, &Error{name, key, fmt.Sprintf(format, args...)})
	}
	names := slices.Sorted(maps.Keys(user))
	bad := map[string]bool{} // profiles whose own values are already reported
	for _, name := range names {
		if IsBuiltin(name) {
			add(name, "", "%q is a built-in profile and cannot be redefined: give yours another name and write parent: %s", name, name)
			continue
		}
		if user[name] == nil {
			user[name] = &Settings{}
		}
		ce := check(name, user[name])
		if len(ce) > 0 {
			bad[name] = true
		}
		errs = append(errs, ce...)
	}

	state := map[string]int{} // 1 = resolving, 2 = done
	var resolve func(name string, chain []string) *Profile
	resolve = func(name string, chain []string) *Profile {
		if p, ok := out[name]; ok && state[name] != 1 {
			return p
		}
		s, ok := user[name]
		if !ok || IsBuiltin(name) {
			return nil
		}
		if state[name] == 1 {
			i := slices.Index(chain, name)
			add(name, "parent", "inheritance cycle: %s", strings.Join(append(slices.Clone(chain[i:]), name), " → "))
			return nil
		}
		state[name] = 1
		parent := s.Parent
		if parent == "" {
			parent = BuiltinTCP
		}
		var pp *Profile
		if parent == name {
			add(name, "parent", "a profile cannot be its own parent")
		} else if _, known := user[parent]; !known && !IsBuiltin(parent) {
			all := slices.Sorted(maps.Keys(out))
			for _, n := range names {
				if !IsBuiltin(n) {
					all = append(all, n)
				}
			}
			add(name, "parent", "parent %q does not exist (profiles: %s)", parent, strings.Join(all, ", "))
		} else {
			pp = resolve(parent, append(chain, name))
		}
		state[name] = 2
		if pp == nil {
			pp = base() // keep checking the rest of this profile
		}
		p := pp.clone()
		p.Name = name
		s.applyTo(p)
		out[name] = p
		return p
	}
	for _, name := range names {
		if !IsBuiltin(name) {
			resolve(name, nil)
		}
	}
	for _, name := range names {
		if p, ok := out[name]; ok && !IsBuiltin(name) && !bad[name] {
			errs = append(errs, crossCheck(name, user[name], p)...)
		}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

func (p *Profile) clone() *Profile {
	q := *p
	q.Explicit = maps.Clone(p.Explicit)
	if q.Explicit == nil {
		q.Explicit = map[string]bool{}
	}
	return &q
}

// applyTo writes the non-nil settings over p and records them as explicit.
func (s *Settings) applyTo(p *Profile) {
	set := func(key string) { p.Explicit[key] = true }
	dur := func(key string, d *units.Duration, dst *time.Duration) {
		if d != nil {
			set(key)
			if *d == units.Indefinite {
				*dst = 0
			} else {
				*dst = d.D()
			}
		}
	}
	boolean := func(key string, b *bool, dst *bool) {
		if b != nil {
			set(key)
			*dst = *b
		}
	}
	integer := func(key string, v *int, dst *int) {
		if v != nil {
			set(key)
			*dst = *v
		}
	}
	buf := func(key string, b *BufferSize, dst *int, auto *bool) {
		if b != nil {
			set(key)
			*auto = *b == Auto
			*dst = 0
			if *b != Auto {
				*dst = int(*b)
			}
		}
	}
	dur("idle_timeout", s.IdleTimeout, &p.IdleTimeout)
	dur("keepalive_interval", s.KeepAliveInterval, &p.KeepAliveInterval)
	dur("fin_wait_timeout", s.FinWaitTimeout, &p.FinWaitTimeout)
	dur("fin_wait_2_timeout", s.FinWait2Timeout, &p.FinWait2Timeout)
	dur("close_wait_timeout", s.CloseWaitTimeout, &p.CloseWaitTimeout)
	dur("time_wait_timeout", s.TimeWaitTimeout, &p.TimeWaitTimeout)
	boolean("time_wait_recycle", s.TimeWaitRecycle, &p.TimeWaitRecycle)
	boolean("reset_on_timeout", s.ResetOnTimeout, &p.ResetOnTimeout)
	dur("zero_window_timeout", s.ZeroWindowTimeout, &p.ZeroWindowTimeout)
	integer("syn_max_retrans", s.SynMaxRetrans, &p.SynMaxRetrans)
	dur("min_rto", s.MinRTO, &p.MinRTO)
	dur("user_timeout", s.UserTimeout, &p.UserTimeout)
	buf("send_buffer", s.SendBuffer, &p.SendBuffer, &p.AutoSendBuffer)
	buf("receive_window", s.ReceiveWindow, &p.ReceiveWindow, &p.AutoReceiveWindow)
	var autoHigh, autoLow bool = p.AutoProxyBuffer, p.AutoProxyBuffer
	buf("proxy_buffer_high", s.ProxyBufferHigh, &p.ProxyBufferHigh, &autoHigh)
	buf("proxy_buffer_low", s.ProxyBufferLow, &p.ProxyBufferLow, &autoLow)
	switch {
	case s.ProxyBufferHigh != nil && s.ProxyBufferLow != nil:
		p.AutoProxyBuffer = autoHigh && autoLow
	case s.ProxyBufferHigh != nil:
		p.AutoProxyBuffer = autoHigh
	case s.ProxyBufferLow != nil:
		p.AutoProxyBuffer = autoLow
	}
	if s.AutoBufferCeiling != nil {
		set("auto_buffer_ceiling")
		p.AutoBufferCeiling = int(*s.AutoBufferCeiling)
	}
	boolean("nagle", s.Nagle, &p.Nagle)
	boolean("delayed_ack", s.DelayedACK, &p.DelayedACK)
	boolean("ack_on_push", s.AckOnPush, &p.AckOnPush)
	boolean("deferred_accept", s.DeferredAccept, &p.DeferredAccept)
	if s.CongestionControl != nil {
		set("congestion_control")
		p.CongestionControl = *s.CongestionControl
	}
	integer("init_cwnd", s.InitCwnd, &p.InitCwnd)
	integer("init_rwnd", s.InitRwnd, &p.InitRwnd)
	integer("mss", s.MSS, &p.MSS)
	boolean("proxy_mss", s.ProxyMSS, &p.ProxyMSS)
	boolean("slow_start_after_idle", s.SlowStartAfterIdle, &p.SlowStartAfterIdle)
	if s.NotSentLowat != nil {
		set("notsent_lowat")
		p.NotSentLowat = int(*s.NotSentLowat)
	}
	if s.PacingRate != nil {
		set("pacing_rate")
		p.PacingRate = int64(*s.PacingRate)
	}
	boolean("selective_acks", s.SACK, &p.SACK)
	boolean("dsack", s.DSACK, &p.DSACK)
	boolean("timestamps", s.Timestamps, &p.Timestamps)
	boolean("window_scaling", s.WindowScaling, &p.WindowScaling)
	boolean("ecn", s.ECN, &p.ECN)
	boolean("limited_transmit", s.LimitedTransmit, &p.LimitedTransmit)
	integer("ip_tos", s.IPToS, &p.IPToS)
	integer("ipv6_tclass", s.IPv6TClass, &p.IPv6TClass)
	integer("link_qos", s.LinkQoS, &p.LinkQoS)
}

// check validates the values written in one profile, each on its own.
func check(name string, s *Settings) Errors {
	var errs Errors
	add := func(key, format string, args ...any) {
		errs = append(errs, &Error{name, key, fmt.Sprintf(format, args...)})
	}
	finite := func(key string, d *units.Duration) bool {
		if d != nil && *d == units.Indefinite {
			add(key, "%s cannot be indefinite", key)
			return false
		}
		return d != nil
	}
	if d := s.IdleTimeout; d != nil && *d != units.Indefinite && d.D() < time.Second {
		add("idle_timeout", "idle_timeout must be at least 1s (write indefinite for no limit)")
	}
	if d := s.KeepAliveInterval; finite("keepalive_interval", d) && *d != 0 && (d.D() < time.Second || d.D() > MaxKeepAlive || d.D()%time.Second != 0) {
		add("keepalive_interval", "keepalive_interval must be 0 (off) or whole seconds from 1s to %s (TCP_KEEPIDLE/TCP_KEEPINTVL)", MaxKeepAlive)
	}
	for _, k := range []struct {
		key string
		d   *units.Duration
	}{{"fin_wait_timeout", s.FinWaitTimeout}, {"close_wait_timeout", s.CloseWaitTimeout}} {
		if k.d != nil && *k.d != units.Indefinite && k.d.D() < 100*time.Millisecond {
			add(k.key, "%s must be at least 100ms (write indefinite for no timer)", k.key)
		}
	}
	if d := s.FinWait2Timeout; d != nil && *d != units.Indefinite && (d.D() < time.Second || d.D() > MaxLinger2 || d.D()%time.Second != 0) {
		add("fin_wait_2_timeout", "fin_wait_2_timeout must be whole seconds from 1s to %s (Linux caps TCP_LINGER2 at 120 s), or indefinite for the kernel's net.ipv4.tcp_fin_timeout", MaxLinger2)
	}
	if d := s.TimeWaitTimeout; finite("time_wait_timeout", d) && d.D() <= 0 {
		add("time_wait_timeout", "time_wait_timeout must be longer than 0")
	}
	if v := s.SynMaxRetrans; v != nil && (*v < 1 || *v > MaxSynRetrans) {
		add("syn_max_retrans", "syn_max_retrans %d is out of range: use 1 to %d (TCP_SYNCNT)", *v, MaxSynRetrans)
	}
	if d := s.MinRTO; finite("min_rto", d) && *d != 0 && (d.D() < MinRTOFloor || d.D() > MinRTOCeiling) {
		add("min_rto", "min_rto %s is out of range: use 0 (kernel default) or %s to %s; Linux's per-socket TCP_RTO_MIN_US cannot raise the minimum above the kernel's 200 ms (a larger floor needs a per-route rto_min, which Fulcrum does not change)", d.D(), MinRTOFloor, MinRTOCeiling)
	}
	if d := s.UserTimeout; finite("user_timeout", d) && *d != 0 && (d.D() < time.Millisecond || d.D() > MaxUserTimeout) {
		add("user_timeout", "user_timeout must be 0 (kernel default) or from 1ms to %s", MaxUserTimeout)
	}
	if d := s.ZeroWindowTimeout; d != nil && *d != units.Indefinite && *d != 0 && d.D() < time.Second {
		add("zero_window_timeout", "zero_window_timeout must be 0 or indefinite (off), or at least 1s")
	}
	for _, k := range []struct {
		key string
		b   *BufferSize
	}{{"send_buffer", s.SendBuffer}, {"receive_window", s.ReceiveWindow}, {"proxy_buffer_high", s.ProxyBufferHigh}, {"proxy_buffer_low", s.ProxyBufferLow}} {
		if k.b != nil && *k.b != Auto && (*k.b < MinBuffer || *k.b > MaxBuffer) {
			add(k.key, "%s %d is out of range: use %s to %s, or auto", k.key, *k.b, sizeStr(MinBuffer), sizeStr(MaxBuffer))
		}
	}
	if c := s.AutoBufferCeiling; c != nil && (*c < MinCeiling || *c > MaxBuffer) {
		add("auto_buffer_ceiling", "auto_buffer_ceiling %d is out of range: use %s to %s", *c, sizeStr(MinCeiling), sizeStr(MaxBuffer))
	}
	if c := s.CongestionControl; c != nil && *c != "" && !validCCName(*c) {
		add("congestion_control", "%q is not a congestion-control name (letters, digits, '_' and '-', at most 15 characters)", *c)
	}
	for _, k := range []struct {
		key string
		v   *int
	}{{"init_cwnd", s.InitCwnd}, {"init_rwnd", s.InitRwnd}} {
		if k.v != nil && (*k.v < 0 || *k.v > MaxInitWindow) {
			add(k.key, "%s %d is out of range: use 0 (kernel default) to %d segments", k.key, *k.v, MaxInitWindow)
		}
	}
	if v := s.MSS; v != nil && *v != 0 && (*v < MinMSS || *v > MaxMSS) {
		add("mss", "mss %d is out of range: use 0 (kernel default) or %d to %d", *v, MinMSS, MaxMSS)
	}
	if v := s.NotSentLowat; v != nil && *v != 0 && (*v < 1024 || *v > MaxBuffer) {
		add("notsent_lowat", "notsent_lowat must be 0 (off) or from 1KiB to %s", sizeStr(MaxBuffer))
	}
	if v := s.PacingRate; v != nil && *v != 0 && *v < 1000 {
		add("pacing_rate", "pacing_rate %d bytes/s is too low: use 0 (off) or at least 1000 bytes/s (8kbit)", *v)
	}
	for _, k := range []struct {
		key string
		v   *int
	}{{"ip_tos", s.IPToS}, {"ipv6_tclass", s.IPv6TClass}} {
		switch {
		case k.v == nil || *k.v == -1:
		case *k.v < 0 || *k.v > 255:
			add(k.key, "%s %d is out of range: use -1 (leave as is) or 0 to 255 (DSCP × 4, e.g. 184 for EF)", k.key, *k.v)
		case *k.v&3 != 0:
			add(k.key, "%s %d sets the two ECN bits, which the TCP stack owns: use a multiple of 4 (DSCP × 4), e.g. %d", k.key, *k.v, *k.v&^3)
		}
	}
	if v := s.LinkQoS; v != nil && *v != -1 && (*v < 0 || *v > 7) {
		add("link_qos", "link_qos %d is out of range: use -1 (leave as is) or 0 to 7", *v)
	}
	if (s.ProxyBufferHigh != nil && *s.ProxyBufferHigh == Auto) != (s.ProxyBufferLow != nil && *s.ProxyBufferLow == Auto) &&
		s.ProxyBufferHigh != nil && s.ProxyBufferLow != nil {
		add("proxy_buffer_low", "proxy_buffer_high and proxy_buffer_low are auto together or not at all")
	}
	return errs
}

// crossCheck validates combinations on the resolved profile. A problem is
// reported on the profile that wrote one of the keys concerned, so a child
// does not repeat its parent's error.
func crossCheck(name string, s *Settings, p *Profile) Errors {
	var errs Errors
	written := func(keys ...string) string {
		if s == nil {
			return ""
		}
		for _, k := range keys {
			if p.Explicit[k] && wroteKey(s, k) {
				return k
			}
		}
		return "-"
	}
	if !p.AutoProxyBuffer && p.ProxyBufferLow > p.ProxyBufferHigh {
		if k := written("proxy_buffer_low", "proxy_buffer_high"); k != "-" {
			errs = append(errs, &Error{name, k, fmt.Sprintf("proxy_buffer_low (%d) must not be larger than proxy_buffer_high (%d)", p.ProxyBufferLow, p.ProxyBufferHigh)})
		}
	}
	if !p.AutoProxyBuffer && (p.ProxyBufferHigh == 0 || p.ProxyBufferLow == 0) {
		if k := written("proxy_buffer_low", "proxy_buffer_high"); k != "-" {
			errs = append(errs, &Error{name, k, "the parent's proxy buffers are auto: write both proxy_buffer_high and proxy_buffer_low, or neither"})
		}
	}
	if p.AutoProxyBuffer && (p.ProxyBufferHigh != 0 || p.ProxyBufferLow != 0) {
		if k := written("proxy_buffer_low", "proxy_buffer_high"); k != "-" {
			errs = append(errs, &Error{name, k, "proxy_buffer_high and proxy_buffer_low are auto together or not at all"})
		}
	}
	return errs
}

func wroteKey(s *Settings, key string) bool {
	switch key {
	case "proxy_buffer_low":
		return s.ProxyBufferLow != nil
	case "proxy_buffer_high":
		return s.ProxyBufferHigh != nil
	}
	return false
}

func validCCName(s string) bool {
	if s == "" || len(s) > 15 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func sizeStr(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d", n)
}
