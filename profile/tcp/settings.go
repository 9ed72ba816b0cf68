package tcp

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fulcrum-adc/fulcrum/internal/units"
)

// BufferSize is a byte size that may also be written "auto" (stored as
// Auto): the size then follows the measured bandwidth-delay product of each
// connection, within auto_buffer_ceiling.
type BufferSize int64

// Auto is the stored value of "auto".
const Auto = BufferSize(-1)

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *BufferSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBufferSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b BufferSize) MarshalYAML() (any, error) {
	if b == Auto {
		return "auto", nil
	}
	return int64(b), nil
}

// ParseBufferSize parses a size ("65535", "64KiB") or "auto".
func ParseBufferSize(s string) (BufferSize, error) {
	if strings.TrimSpace(s) == "auto" {
		return Auto, nil
	}
	v, err := units.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size or auto (write 65535, 64KiB, 1MiB or auto)", s)
	}
	return BufferSize(v), nil
}

// Settings is what an operator writes for one profile under profiles.tcp; a
// nil field inherits from the parent. docs/tcp-profiles.md documents every
// key: what it does, the Linux mechanism, the built-in defaults and the F5
// name.
type Settings struct {
	// Parent names the profile this one inherits from (default "tcp").
	Parent string `yaml:"parent"`

	// Timers.
	IdleTimeout       *units.Duration `yaml:"idle_timeout"`        // duration or indefinite
	KeepAliveInterval *units.Duration `yaml:"keepalive_interval"`  // 0 = off
	FinWaitTimeout    *units.Duration `yaml:"fin_wait_timeout"`    // FIN_WAIT_1 + CLOSING; indefinite = no timer
	FinWait2Timeout   *units.Duration `yaml:"fin_wait_2_timeout"`  // TCP_LINGER2; indefinite = kernel default
	CloseWaitTimeout  *units.Duration `yaml:"close_wait_timeout"`  // indefinite = no timer
	TimeWaitTimeout   *units.Duration `yaml:"time_wait_timeout"`   // Linux: fixed 60 s (notice)
	TimeWaitRecycle   *bool           `yaml:"time_wait_recycle"`   // Linux: net.ipv4.tcp_tw_reuse (notice)
	ResetOnTimeout    *bool           `yaml:"reset_on_timeout"`    // idle expiry sends RST
	ZeroWindowTimeout *units.Duration `yaml:"zero_window_timeout"` // 0 or indefinite = off
	SynMaxRetrans     *int            `yaml:"syn_max_retrans"`     // TCP_SYNCNT
	MinRTO            *units.Duration `yaml:"min_rto"`             // TCP_RTO_MIN_US; 0 = kernel default
	UserTimeout       *units.Duration `yaml:"user_timeout"`        // TCP_USER_TIMEOUT; 0 = kernel default

	// Memory.
	SendBuffer        *BufferSize `yaml:"send_buffer"`         // SO_SNDBUF, or auto
	ReceiveWindow     *BufferSize `yaml:"receive_window"`      // SO_RCVBUF + TCP_WINDOW_CLAMP, or auto
	ProxyBufferHigh   *BufferSize `yaml:"proxy_buffer_high"`   // or auto (with proxy_buffer_low: auto)
	ProxyBufferLow    *BufferSize `yaml:"proxy_buffer_low"`    // or auto
	AutoBufferCeiling *units.Size `yaml:"auto_buffer_ceiling"` // upper bound for every auto size

	// Behaviour.
	Nagle              *bool       `yaml:"nagle"`                 // false = TCP_NODELAY
	DelayedACK         *bool       `yaml:"delayed_ack"`           // false = TCP_QUICKACK + TCP_DELACK_MAX_US
	AckOnPush          *bool       `yaml:"ack_on_push"`           // data path re-arms TCP_QUICKACK at burst ends
	DeferredAccept     *bool       `yaml:"deferred_accept"`       // TCP_DEFER_ACCEPT
	CongestionControl  *string     `yaml:"congestion_control"`    // TCP_CONGESTION; "" = system default
	InitCwnd           *int        `yaml:"init_cwnd"`             // per route only (notice)
	InitRwnd           *int        `yaml:"init_rwnd"`             // per route only (notice)
	MSS                *int        `yaml:"mss"`                   // TCP_MAXSEG; 0 = kernel
	ProxyMSS           *bool       `yaml:"proxy_mss"`             // serverside uses the client's MSS
	SlowStartAfterIdle *bool       `yaml:"slow_start_after_idle"` // system-wide (notice)
	NotSentLowat       *units.Size `yaml:"notsent_lowat"`         // TCP_NOTSENT_LOWAT; 0 = off
	PacingRate         *units.Rate `yaml:"pacing_rate"`           // SO_MAX_PACING_RATE; 0 = off

	// Negotiated options and marking.
	SACK            *bool `yaml:"selective_acks"`   // system-wide (notice)
	DSACK           *bool `yaml:"dsack"`            // system-wide (notice)
	Timestamps      *bool `yaml:"timestamps"`       // system-wide (notice)
	WindowScaling   *bool `yaml:"window_scaling"`   // system-wide (notice)
	ECN             *bool `yaml:"ecn"`              // system-wide or per route (notice)
	LimitedTransmit *bool `yaml:"limited_transmit"` // always on in Linux (notice)
	IPToS           *int  `yaml:"ip_tos"`           // IP_TOS; -1 = leave
	IPv6TClass      *int  `yaml:"ipv6_tclass"`      // IPV6_TCLASS; -1 = leave
	LinkQoS         *int  `yaml:"link_qos"`         // SO_PRIORITY; -1 = leave
}

// Duration is units.Duration, for callers that build Settings in Go.
type Duration = units.Duration

func sizeP(n int64) *units.Size { s := units.Size(n); return &s }
func rateP(n int64) *units.Rate { r := units.Rate(n); return &r }
