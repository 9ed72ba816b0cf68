package units

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time span written as a Go duration ("5s", "1m30s", "250ms"),
// a bare integer meaning seconds, or "indefinite" (stored as -1).
type Duration time.Duration

// Indefinite is the stored value of "indefinite".
const Indefinite = Duration(-1)

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	if d == Indefinite {
		return "indefinite"
	}
	return time.Duration(d).String()
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ParseDuration parses the forms Duration accepts.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "indefinite" {
		return Indefinite, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		if n > int64(1<<63-1)/int64(time.Second) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write 5s, 250ms, 2m, or indefinite)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(v), nil
}

// Size is a byte count written as an integer or with a unit: B, KiB, MiB, GiB, KB, MB, GB.
type Size int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*s = v
	return nil
}

// ParseSize parses the forms Size accepts.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult = u.mult
			num = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (write 32768, 64KiB or 1MiB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return Size(n * mult), nil
}

// Rate is a data rate in bytes per second. It is written as a bare integer
// (bytes per second), with a byte unit per second ("B/s", "KB/s", "MB/s",
// "GB/s", "KiB/s", "MiB/s", "GiB/s") or with a bit unit ("bps", "Kbps",
// "Mbps", "Gbps", also written "kbit", "Mbit", "Gbit"; decimal, as network
// rates are). Bit rates are rounded down to whole bytes.
type Rate int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r Rate) MarshalYAML() (any, error) { return int64(r), nil }

// ParseRate parses the forms Rate accepts.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64 // bits per unit when bits, else bytes per unit
		bits   bool
	}{
		{"KiB/s", 1 << 10, false}, {"MiB/s", 1 << 20, false}, {"GiB/s", 1 << 30, false},
		{"KB/s", 1000, false}, {"MB/s", 1000_000, false}, {"GB/s", 1000_000_000, false}, {"B/s", 1, false},
		{"Kbps", 1000, true}, {"kbps", 1000, true}, {"Mbps", 1000_000, true}, {"Gbps", 1000_000_000, true}, {"bps", 1, true},
		{"kbit", 1000, true}, {"Kbit", 1000, true}, {"Mbit", 1000_000, true}, {"Gbit", 1000_000_000, true}, {"bit", 1, true},
	}
	mult, bits, num := int64(1), false, s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			mult, bits = u.mult, u.bits
			num = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a rate (write 12500000 for bytes per second, 100Mbps, 1Gbit or 10MB/s)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("rate %q is too large", s)
	}
	v := n * mult
	if bits {
		v /= 8
	}
	return Rate(v), nil
}
