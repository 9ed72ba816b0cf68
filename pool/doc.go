// Package pool owns server pools: their members, the members' administrative
// state, health and passive-failure state, connection accounting and
// statistics, and the load-balancing methods that choose a member for a new
// connection. F5 equivalent: an LTM pool and its pool members (ltm pool, with
// load-balancing-mode, min-active-members, slow-ramp-time, member ratio,
// connection-limit, priority-group and session/state) plus the inband
// (passive) monitor.
//
// It does not own active health checking (package monitor calls
// Member.SetHealth), persistence (package persist decides *which* member a
// returning client belongs to and uses Member.PersistOK and Member.Acquire),
// dialing, SNAT or configuration parsing (package config compiles a Config).
// It must not import any of those packages.
//
// # Member availability
//
// Three independent inputs decide whether a member may take traffic:
//
//   - State, set by configuration or at run time by the API:
//     Enabled, Disabled (F5 "disabled": only persisted clients and existing
//     connections) or ForcedOffline (nothing new at all).
//   - Health, reported by the monitor manager: unchecked (no monitors, or no
//     result yet: counts as up, F5 "unknown"/blue), up or down.
//   - Passive failure: Failures consecutive ReportFailure calls within
//     Interval mark the member down for Retry. After Retry the member is
//     tried again half-open: a single failure re-arms the full Retry period,
//     a success closes the circuit. A monitor "up" result does not cut a
//     passive-down period short. The end of a passive-down period is noticed
//     lazily (by the next Pick, Available, Stats or ReportFailure), so the
//     "passive retry" log line may appear a little after Retry elapsed on an
//     idle pool; the behaviour is exact, only the log timing is lazy.
//
// Available reports whether a member may take a new load-balanced
// connection; PersistOK whether it may take a persisted client.
//
// # Load-balancing methods
//
// Every method chooses only among Available members of the active priority
// groups that are below their connection limit, and Pick reserves the slot
// (Acquire) before returning, so a limit is never overshot even under
// concurrent picks from several pools or plans that share a member.
//
//   - round-robin: plain rotation; ratio is ignored.
//   - ratio: smooth weighted round-robin (the nginx algorithm), which
//     interleaves members instead of sending bursts.
//   - least-connections: lowest (active+1)/weight, the HAProxy leastconn
//     key, so an idle member always wins and ratios are honoured; ties
//     rotate.
//   - fastest: lowest latency EWMA × (active+1) / weight. A member without
//     samples is tried first, but only while it has no connection in flight
//     (one probe at a time instead of a burst); while its first request is
//     still running it is scored with the mean latency of the sampled
//     members.
//   - consistent-hash: Maglev (lookup table of 65537 entries) weighted by
//     ratio, keyed by Hint.Key hashed with xxhash. The table is built over
//     members sorted by address, so every device with the same member set
//     builds the same table whatever the configuration order. A member at
//     its connection limit is skipped by walking the table forward. Without
//     a key it degrades to round-robin.
//   - power-of-two: two members drawn at random weighted by ratio; the one
//     with the lower (active+1)/weight wins.
//
// # Priority group activation
//
// With MinActiveMembers > 0 only the highest priority group is used until
// fewer than MinActiveMembers of the groups selected so far can take a new
// connection; then the next lower group is added, and so on. A member at
// its connection limit does not count, so a full high-priority group spills
// over into the next group. With MinActiveMembers = 0 all members are used
// together whatever their priority.
//
// # Slow ramp
//
// For SlowRamp after a member becomes available again (monitor down→up,
// passive recovery, or state changed to Enabled) its effective weight is
// ratio × elapsed/SlowRamp, never less than 10% of its ratio (Envoy's
// min_weight_percent default) so the member still sees traffic. It applies
// to ratio, least-connections, fastest and power-of-two; round-robin and
// consistent-hash ignore weights. A member's first health result (unchecked
// → up) does not ramp, like HAProxy's slowstart which is not applied at
// start-up.
//
// # Reload
//
// New(cfg, prev, log) keeps the *Member of every address present in both
// configurations, with its connection count, statistics, health and
// run-time state, so in-flight connections of the old plan and new picks of
// the new plan share one connection count and one connection limit. Each
// Pool uses the ratios and priorities of its own configuration; the member's
// connection limit is always the newest.
//
// # Concurrency
//
// All methods are safe for concurrent use. Pick takes a per-pool mutex and
// does not allocate; statistics and connection counts are atomics.
package pool
