// Package monitor runs active health monitors against pool members and
// reports each member's aggregate health to it.
//
// F5 equivalent: LTM health monitors (tcp, http, https, udp) assigned to a
// pool with "all" or "min N of" availability, with the F5 timing model:
// interval, up-interval, timeout and time-until-up. HAProxy equivalent:
// "check" with inter/fastinter/rise/fall and spread-checks.
//
// # What it owns
//
//   - [Check]: one probe of one [Spec] against one address (tcp connect with
//     optional send/receive, raw HTTP over TCP or TLS, UDP).
//   - [Manager]: one probe goroutine per (job, spec), the per-monitor up/down
//     state machine, the per-job aggregation ("all" or "min N of"), and the
//     calls to [Target.SetHealth] when the aggregate changes.
//
// # What it must not touch
//
// It does not import the pool package: a member is reached only through the
// [Target] interface. It does not decide what "down" means for load
// balancing (that is the pool's job), never parses configuration files
// (config turns YAML into [Spec]s), and keeps no package-level state.
//
// # Timing model (F5)
//
// Each monitor of a job starts unchecked. Its first result decides at once:
// a failure marks it down; a success marks it up, or, when TimeUntilUp is
// set, starts the time-until-up clock. Afterwards:
//
//   - an up monitor goes down when Timeout has elapsed since its last
//     success. With the F5 defaults (interval 5s, timeout 16s) that is the
//     fourth consecutive failed probe, at 16s after the last success: a
//     dedicated timer fires at exactly that moment so the mark-down does not
//     wait for the next probe;
//   - a down monitor goes up once successes have continued for TimeUntilUp
//     (0 = on the first success). Any failure restarts the clock.
//
// Probes run every Interval; while the monitor is up and its last probe
// succeeded they run every UpInterval instead (when set). After a failure an
// up monitor falls back to Interval so the mark-down is confirmed quickly
// (HAProxy's fastinter). Because Timeout is counted from the last success,
// an UpInterval longer than Timeout means a single failed probe marks the
// monitor down; configuration should keep UpInterval < Timeout.
//
// Each attempt is bounded by min(Timeout, Interval), at least 100ms. The
// first probe of every monitor is delayed by a random jitter of up to
// min(Interval/2, 1s) so that many members do not get probed in lockstep
// after a start or reload (HAProxy spread-checks).
//
// A job's member is up when at least MinUp of its monitors are up (MinUp 0
// means all of them). Target.SetHealth is called once for the first
// decision, as soon as the outcome no longer depends on monitors still
// unchecked, and afterwards only when the aggregate flips. The calls for one
// job are serialized and made in order; they are made with the job's lock
// held, so SetHealth must not call back into the Manager.
//
// # Reload
//
// [Manager.Set] keeps jobs whose key, target and specs are unchanged (with
// their state, so a reload does not flap members), stops removed or changed
// jobs — once Set returns, a stopped job never calls SetHealth again — and
// starts the new ones.
package monitor
