package config

import "github.com/fulcrum-adc/fulcrum/internal/units"

// The value types live in internal/units so that packages config imports
// (profile/tcp) share them; these names keep config's API unchanged.

// Duration is a time span written as a Go duration ("5s", "1m30s", "250ms"),
// a bare integer meaning seconds, or "indefinite" (stored as -1).
type Duration = units.Duration

// Size is a byte count written as an integer or with a unit: B, KiB, MiB, GiB, KB, MB, GB.
type Size = units.Size

// Indefinite is the stored value of "indefinite".
const Indefinite = units.Indefinite

// ParseDuration parses the forms Duration accepts.
func ParseDuration(s string) (Duration, error) { return units.ParseDuration(s) }

// ParseSize parses the forms Size accepts.
func ParseSize(s string) (Size, error) { return units.ParseSize(s) }
