package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Job is one monitored member: its identity, where to report, which
// monitors to run and how to combine them.
type Job struct {
	Key    string // stable identity, e.g. "web/127.0.0.1:8081"
	Target Target
	Specs  []Spec
	MinUp  int // 0 = all monitors must be up; N = at least N (F5 "min N of")
}

// ProbeStatus is the state of one monitor of one job.
type ProbeStatus struct {
	Monitor string        `json:"monitor"`
	Up      bool          `json:"up"`
	Checked bool          `json:"checked"` // at least one result
	Reason  string        `json:"reason"`  // last result explained: "connect: connection refused", "status 500 not in [200]", ...
	LastRun time.Time     `json:"last_run"`
	Latency time.Duration `json:"latency_ns"`
}

// Manager runs the probes of a set of jobs. The zero value is not usable;
// call NewManager.
type Manager struct {
	log *slog.Logger

	mu     sync.Mutex
	jobs   map[string]*job
	closed bool
}

// NewManager returns a Manager with no jobs. A nil log discards logs.
func NewManager(log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{log: log, jobs: make(map[string]*job)}
}

// Set reconciles the running probes with jobs: jobs whose Key, Target and
// Specs (and MinUp) are unchanged keep running with their state; others are
// started; missing ones are stopped. Stopped jobs have finished, and will
// never call SetHealth again, by the time Set returns. Safe to call
// repeatedly (reload). When two jobs share a Key the last one wins. Jobs
// without specs are tracked (Status returns an empty slice) but never call
// SetHealth: a member without monitors is the pool's business.
func (m *Manager) Set(jobs []Job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		m.log.Warn("monitor manager is closed; ignoring new jobs", "jobs", len(jobs))
		return
	}
	want := make(map[string]Job, len(jobs))
	for _, j := range jobs {
		if _, dup := want[j.Key]; dup {
			m.log.Warn("duplicate monitor job key; the last one wins", "key", j.Key)
		}
		want[j.Key] = j
	}
	var stopping []*job
	for key, old := range m.jobs {
		if nj, ok := want[key]; !ok || !old.same(nj) {
			old.stop()
			stopping = append(stopping, old)
			delete(m.jobs, key)
		}
	}
	for _, old := range stopping {
		old.wg.Wait()
	}
	for key, nj := range want {
		if _, kept := m.jobs[key]; kept {
			continue
		}
		if nj.Target == nil {
			m.log.Warn("monitor job without a target; skipped", "key", key)
			continue
		}
		m.jobs[key] = m.start(nj)
	}
}

// Status returns the state of each monitor of the job with that key, in
// the order of its Specs; nil if the key is unknown.
func (m *Manager) Status(key string) []ProbeStatus {
	m.mu.Lock()
	j := m.jobs[key]
	m.mu.Unlock()
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]ProbeStatus, len(j.specs))
	for i := range j.specs {
		s := &j.states[i]
		out[i] = ProbeStatus{
			Monitor: j.specs[i].displayName(),
			Up:      s.up,
			Checked: s.checked,
			Reason:  s.reason,
			LastRun: s.lastRun,
			Latency: s.latency,
		}
	}
	return out
}

// Close stops every probe goroutine and waits for them. Set after Close
// does nothing.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, j := range m.jobs {
		j.stop()
	}
	for _, j := range m.jobs {
		j.wg.Wait()
	}
	clear(m.jobs)
}

func (s *Spec) displayName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Type
}

// job is one Job at run time.
type job struct {
	key    string
	target Target
	specs  []Spec
	minUp  int
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards everything below, and serializes SetHealth
	states  []monState
	stopped bool
	decided bool // the aggregate has been reported at least once
	up      bool // the aggregate last reported
}

func (m *Manager) start(nj Job) *job {
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{
		key:    nj.Key,
		target: nj.Target,
		specs:  append([]Spec(nil), nj.Specs...),
		minUp:  nj.MinUp,
		log:    m.log,
		cancel: cancel,
		states: make([]monState, len(nj.Specs)),
	}
	for i := range j.specs {
		j.wg.Add(1)
		go j.run(ctx, i)
	}
	return j
}

// same reports whether nj describes exactly the running job.
func (j *job) same(nj Job) bool {
	if j.key != nj.Key || j.minUp != nj.MinUp || len(j.specs) != len(nj.Specs) || !sameTarget(j.target, nj.Target) {
		return false
	}
	for i := range j.specs {
		if !equalSpec(j.specs[i], nj.Specs[i]) {
			return false
		}
	}
	return true
}

// sameTarget compares two targets without panicking on a non-comparable
// dynamic type (which then counts as different).
func sameTarget(a, b Target) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb || !ta.Comparable() {
		return false
	}
	return a == b
}

// stop cancels the probes; from now on the job never calls SetHealth.
func (j *job) stop() {
	j.mu.Lock()
	j.stopped = true
	j.mu.Unlock()
	j.cancel()
}

// run is the probe loop of monitor i.
func (j *job) run(ctx context.Context, i int) {
	defer j.wg.Done()
	spec := &j.specs[i]

	// Spread the first probes (HAProxy spread-checks).
	var first time.Duration
	if spread := min(spec.interval()/2, time.Second); spread > 0 {
		first = rand.N(spread)
	}
	probe := time.NewTimer(first)
	defer probe.Stop()
	expire := time.NewTimer(0)
	expire.Stop()
	defer expire.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			j.expire(i, time.Now())
		case <-probe.C:
			start := time.Now()
			err := Check(ctx, *spec, j.target.Addr())
			end := time.Now()
			if ctx.Err() != nil {
				return // stopped mid-probe: the result means nothing
			}
			next, downAt, pending := j.record(i, err, start, end)
			probe.Reset(time.Until(start.Add(next)))
			if pending {
				expire.Reset(time.Until(downAt))
			} else {
				expire.Stop()
			}
		}
	}
}

// record applies one result and returns the delay to the next attempt
// (from start) and, when the monitor is up but failing, when it goes down.
func (j *job) record(i int, err error, start, end time.Time) (next time.Duration, downAt time.Time, pending bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, spec := &j.states[i], &j.specs[i]
	if j.stopped {
		return spec.interval(), time.Time{}, false
	}
	if s.observe(spec, err, start, end) {
		j.update()
	}
	downAt, pending = s.downAt(spec)
	return s.nextDelay(spec), downAt, pending
}

func (j *job) expire(i int, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.stopped && j.states[i].expire(&j.specs[i], now) {
		j.update()
	}
}

// update recomputes the aggregate and reports a decision or a change.
// Called with j.mu held.
func (j *job) update() {
	if j.stopped {
		return
	}
	need := j.minUp
	if need <= 0 {
		need = len(j.specs)
	}
	nUp, nUnchecked := 0, 0
	for i := range j.states {
		switch {
		case !j.states[i].checked:
			nUnchecked++
		case j.states[i].up:
			nUp++
		}
	}
	up := nUp >= need
	if !j.decided {
		// Wait until the monitors still unchecked cannot change the outcome.
		if !up && nUp+nUnchecked >= need {
			return
		}
	} else if up == j.up {
		return
	}
	j.decided, j.up = true, up
	reason := j.reason(up, nUp, need)
	if up {
		j.log.Info("monitor status changed", "key", j.key, "up", true, "reason", reason)
	} else {
		j.log.Warn("monitor status changed", "key", j.key, "up", false, "reason", reason)
	}
	j.target.SetHealth(up, reason)
}

// reason explains the aggregate: "monitor http_200: status 500 not in [200]".
func (j *job) reason(up bool, nUp, need int) string {
	n := len(j.specs)
	if up {
		if n == 1 {
			return "monitor " + j.specs[0].displayName() + ": up"
		}
		var names []string
		for i := range j.specs {
			if j.states[i].up {
				names = append(names, j.specs[i].displayName())
			}
		}
		return fmt.Sprintf("%d of %d monitors up (need %d): %s", nUp, n, need, strings.Join(names, ", "))
	}
	var parts []string
	for i := range j.specs {
		s := &j.states[i]
		switch {
		case s.up:
		case !s.checked:
			parts = append(parts, "monitor "+j.specs[i].displayName()+": not checked yet")
		default:
			parts = append(parts, "monitor "+j.specs[i].displayName()+": "+s.reason)
		}
	}
	r := strings.Join(parts, "; ")
	if n > 1 && need < n {
		r += fmt.Sprintf(" (%d of %d monitors up, need %d)", nUp, n, need)
	}
	return r
}
