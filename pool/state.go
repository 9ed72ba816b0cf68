package pool

import (
	"fmt"
	"strings"
)

// State is a member's administrative state (F5 "session" and "state").
type State uint8

const (
	// Enabled members take new connections.
	Enabled State = iota
	// Disabled members take no new load-balanced connections; persisted
	// clients and existing connections are still honoured (F5 "disabled").
	Disabled
	// ForcedOffline members take nothing new at all, not even persisted
	// clients; existing connections run to completion (F5 "forced offline").
	ForcedOffline
)

// ParseState parses a configuration or API state word. It accepts
// "enabled", "disabled" and "forced-offline" (also "forced_offline" and
// "offline"), case-insensitively.
func ParseState(s string) (State, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "enabled":
		return Enabled, nil
	case "disabled":
		return Disabled, nil
	case "forced-offline", "forced_offline", "offline":
		return ForcedOffline, nil
	}
	return Enabled, fmt.Errorf("pool: unknown member state %q (want enabled, disabled or forced-offline)", s)
}

// String returns "enabled", "disabled" or "forced-offline".
func (s State) String() string {
	switch s {
	case Enabled:
		return "enabled"
	case Disabled:
		return "disabled"
	case ForcedOffline:
		return "forced-offline"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

func (s State) valid() bool { return s <= ForcedOffline }

// health is the monitor's verdict on a member.
type health uint32

const (
	healthUnchecked health = iota // no monitor, or no result yet: counts as up
	healthUp
	healthDown
)

func (h health) String() string {
	switch h {
	case healthUp:
		return "up"
	case healthDown:
		return "down"
	}
	return "unchecked"
}
