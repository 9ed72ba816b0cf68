package monitor

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Target is what a monitor checks and reports to. *pool.Member satisfies it.
type Target interface {
	Addr() netip.AddrPort
	SetHealth(up bool, reason string)
}

// Monitor types.
const (
	TypeTCP   = "tcp"
	TypeHTTP  = "http"
	TypeHTTPS = "https"
	TypeUDP   = "udp"
)

// F5 defaults, applied when the corresponding Spec field is zero.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 16 * time.Second
	// MinAttemptTimeout is the floor for one probe attempt's deadline.
	MinAttemptTimeout = 100 * time.Millisecond
	// MaxResponse is how much of a response is read and matched.
	MaxResponse = 64 << 10
)

// Spec is one monitor as configured.
type Spec struct {
	Name        string
	Type        string        // "tcp" | "http" | "https" | "udp"
	Interval    time.Duration // probe frequency (F5 interval, default 5s)
	UpInterval  time.Duration // probe frequency while the member is up; 0 = Interval (F5 up-interval)
	Timeout     time.Duration // member is marked down when no probe succeeded for this long (F5 timeout, default 16s)
	TimeUntilUp time.Duration // successes must continue this long before the member is marked up (F5 time-until-up)
	// Send is, for tcp/udp, the payload; for http/https, the whole raw
	// request. Empty for http/https means
	// "GET / HTTP/1.0\r\nHost: HOST\r\nConnection: close\r\n\r\n", where
	// HOST is ServerName or the destination address. A configured Send is
	// written byte for byte, never rewritten.
	Send string
	// Receive is matched, for tcp/udp, against the bytes received; for
	// http/https, against the whole response (status line, headers and
	// body, first 64 KiB). nil = any response.
	Receive     *regexp.Regexp
	Status      []int  // http/https: accepted status codes; empty = any
	Reverse     bool   // F5 reverse: a Receive match means DOWN
	Destination string // "" or "*:*" = member address; "*:PORT" = member IP, that port; "IP:PORT" = fixed alias
	ServerName  string // https SNI
}

// interval returns Interval with its default applied.
func (s *Spec) interval() time.Duration {
	if s.Interval > 0 {
		return s.Interval
	}
	return DefaultInterval
}

// timeout returns Timeout with its default applied.
func (s *Spec) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

// AttemptTimeout is the deadline of one probe attempt: min(Timeout,
// Interval), at least MinAttemptTimeout. Bounding an attempt by the interval
// keeps at most one attempt of a monitor in flight.
func (s Spec) AttemptTimeout() time.Duration {
	d := min(s.timeout(), s.interval())
	return max(d, MinAttemptTimeout)
}

// Validate reports the first problem that would make the spec unusable. The
// config package gives file:line errors of its own; this is the backstop
// that keeps Check honest when called directly.
func (s Spec) Validate() error {
	switch s.Type {
	case TypeTCP, TypeHTTP, TypeHTTPS, TypeUDP:
	case "":
		return errors.New("monitor type is empty (want tcp, http, https or udp)")
	default:
		return fmt.Errorf("unknown monitor type %q (want tcp, http, https or udp)", s.Type)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", s.Interval}, {"up_interval", s.UpInterval}, {"timeout", s.Timeout}, {"time_until_up", s.TimeUntilUp}} {
		if d.v < 0 {
			return fmt.Errorf("%s %v is negative", d.name, d.v)
		}
	}
	if s.Reverse && s.Receive == nil {
		return errors.New("reverse needs a receive pattern: reverse marks the member down when the receive pattern matches")
	}
	if len(s.Status) > 0 && s.Type != TypeHTTP && s.Type != TypeHTTPS {
		return fmt.Errorf("status codes apply only to http and https monitors, not %s", s.Type)
	}
	for _, c := range s.Status {
		if c < 100 || c > 599 {
			return fmt.Errorf("status code %d is outside 100..599", c)
		}
	}
	if _, err := ParseDestination(s.Destination); err != nil {
		return err
	}
	return nil
}

// Destination is a parsed monitor destination (F5 "alias address/port").
// A zero Addr means "the member's IP"; a zero Port means "the member's port".
type Destination struct {
	Addr netip.Addr
	Port uint16
}

// DestinationError is a monitor destination that does not parse. Msg
// quotes it and says what to write; config adds the file and line.
type DestinationError struct {
	Dest string // as written
	Msg  string
}

func (e *DestinationError) Error() string { return e.Msg }

func destErr(s, format string, args ...any) error {
	return &DestinationError{Dest: s, Msg: fmt.Sprintf(format, args...)}
}

// ParseDestination parses a monitor destination (this package owns the
// grammar; config validates with it):
//
//	"" or "*:*"   the member's address and port
//	"*:PORT"      the member's IP, that port
//	"IP:PORT"     a fixed alias address and port ("[v6]:PORT" for IPv6)
//	"IP:*"        a fixed alias address, the member's port
func ParseDestination(s string) (Destination, error) {
	if s == "" || s == "*:*" {
		return Destination{}, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Destination{}, destErr(s, "destination %q is not valid: write *:* (the member), *:PORT, IP:PORT or IP:*", s)
	}
	host, port := s[:i], s[i+1:]
	var d Destination
	switch host {
	case "*":
	default:
		h := host
		bracketed := strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")
		if bracketed {
			h = h[1 : len(h)-1]
		} else if strings.Contains(h, ":") {
			return Destination{}, destErr(s, "destination %q: write an IPv6 address in brackets, like \"[::1]:80\"", s)
		}
		a, err := netip.ParseAddr(h)
		if err != nil || bracketed && !a.Is6() {
			return Destination{}, destErr(s, "destination %q: %q is not an IP address or \"*\"", s, host)
		}
		if a.Zone() != "" {
			return Destination{}, destErr(s, "destination %q: zoned addresses are not supported", s)
		}
		if a.IsUnspecified() {
			return Destination{}, destErr(s, "destination %q: %s is the unspecified address: write *:* (the member), *:PORT or IP:PORT", s, a)
		}
		d.Addr = a.Unmap()
	}
	if port != "*" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return Destination{}, destErr(s, "destination %q: the port must be * or a number from 1 to 65535", s)
		}
		d.Port = uint16(p)
	}
	return d, nil
}

// Resolve returns the address to probe for a member at member.
func (d Destination) Resolve(member netip.AddrPort) netip.AddrPort {
	a, p := member.Addr(), member.Port()
	if d.Addr.IsValid() {
		a = d.Addr
	}
	if d.Port != 0 {
		p = d.Port
	}
	return netip.AddrPortFrom(a, p)
}

// String formats d in the syntax ParseDestination accepts.
func (d Destination) String() string {
	host, port := "*", "*"
	if d.Addr.IsValid() {
		host = d.Addr.String()
		if d.Addr.Is6() {
			host = "[" + host + "]"
		}
	}
	if d.Port != 0 {
		port = strconv.Itoa(int(d.Port))
	}
	return host + ":" + port
}

// ResolveDestination applies a destination string to a member address.
func ResolveDestination(dest string, member netip.AddrPort) (netip.AddrPort, error) {
	d, err := ParseDestination(dest)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return d.Resolve(member), nil
}

// equalSpec reports whether two specs configure the same probe. Regexps are
// compared by their source text.
func equalSpec(a, b Spec) bool {
	if a.Name != b.Name || a.Type != b.Type || a.Interval != b.Interval ||
		a.UpInterval != b.UpInterval || a.Timeout != b.Timeout ||
		a.TimeUntilUp != b.TimeUntilUp || a.Send != b.Send || a.Reverse != b.Reverse ||
		a.Destination != b.Destination || a.ServerName != b.ServerName {
		return false
	}
	if (a.Receive == nil) != (b.Receive == nil) {
		return false
	}
	if a.Receive != nil && a.Receive.String() != b.Receive.String() {
		return false
	}
	if len(a.Status) != len(b.Status) {
		return false
	}
	for i := range a.Status {
		if a.Status[i] != b.Status[i] {
			return false
		}
	}
	return true
}
