package monitor

import (
	"errors"
	"testing"
	"time"
)

// TestStateMachine drives monState with a fake clock: each step is a probe
// result (or a timer expiry) at a time offset, followed by the expected
// up/checked state.
func TestStateMachine(t *testing.T) {
	t.Parallel()
	fail := errors.New("connect: connection refused")
	type step struct {
		at      time.Duration
		result  error
		expire  bool // a timer expiry instead of a probe result
		up      bool
		changed bool
	}
	tests := []struct {
		name  string
		spec  Spec
		steps []step
	}{
		{
			name: "first success is up at once",
			spec: Spec{Interval: 5 * time.Second, Timeout: 16 * time.Second},
			steps: []step{
				{at: 0, up: true, changed: true},
				{at: 5 * time.Second, up: true},
			},
		},
		{
			name: "first failure is down at once",
			spec: Spec{Interval: 5 * time.Second, Timeout: 16 * time.Second},
			steps: []step{
				{at: 0, result: fail, up: false, changed: true},
				{at: 5 * time.Second, up: true, changed: true},
			},
		},
		{
			// F5 defaults: interval 5s, timeout 16s. Probes at 5, 10, 15 fail
			// and the member stays up; the failure at 20s (>= 16s after the
			// last success) marks it down.
			name: "up goes down only after timeout since last success",
			spec: Spec{Interval: 5 * time.Second, Timeout: 16 * time.Second},
			steps: []step{
				{at: 0, up: true, changed: true},
				{at: 5 * time.Second, result: fail, up: true},
				{at: 10 * time.Second, result: fail, up: true},
				{at: 15 * time.Second, result: fail, up: true},
				{at: 20 * time.Second, result: fail, up: false, changed: true},
				{at: 25 * time.Second, result: fail, up: false},
			},
		},
		{
			name: "timer marks down exactly at timeout",
			spec: Spec{Interval: 5 * time.Second, Timeout: 16 * time.Second},
			steps: []step{
				{at: 0, up: true, changed: true},
				{at: 5 * time.Second, result: fail, up: true},
				{at: 15 * time.Second, result: fail, up: true},
				{at: 15999 * time.Millisecond, expire: true, up: true},
				{at: 16 * time.Second, expire: true, up: false, changed: true},
			},
		},
		{
			name: "a success in between restarts the timeout",
			spec: Spec{Interval: 5 * time.Second, Timeout: 16 * time.Second},
			steps: []step{
				{at: 0, up: true, changed: true},
				{at: 5 * time.Second, result: fail, up: true},
				{at: 10 * time.Second, up: true},
				{at: 15 * time.Second, result: fail, up: true},
				{at: 20 * time.Second, result: fail, up: true},
				{at: 25 * time.Second, result: fail, up: true}, // 15s since the success at 10s
				{at: 30 * time.Second, result: fail, up: false, changed: true},
			},
		},
		{
			name: "timer does not fire while the last probe succeeded",
			spec: Spec{Interval: 5 * time.Second, Timeout: 16 * time.Second, UpInterval: 30 * time.Second},
			steps: []step{
				{at: 0, up: true, changed: true},
				{at: 30 * time.Second, up: true},
				{at: 59 * time.Second, expire: true, up: true},
			},
		},
		{
			name: "time-until-up holds the first success down",
			spec: Spec{Interval: time.Second, Timeout: 4 * time.Second, TimeUntilUp: 3 * time.Second},
			steps: []step{
				{at: 0, up: false, changed: true}, // first result: decided (down, waiting)
				{at: 1 * time.Second, up: false},
				{at: 2 * time.Second, up: false},
				{at: 3 * time.Second, up: true, changed: true},
			},
		},
		{
			name: "a failure restarts time-until-up",
			spec: Spec{Interval: time.Second, Timeout: 4 * time.Second, TimeUntilUp: 3 * time.Second},
			steps: []step{
				{at: 0, result: fail, up: false, changed: true},
				{at: 1 * time.Second, up: false},
				{at: 2 * time.Second, up: false},
				{at: 3 * time.Second, result: fail, up: false},
				{at: 4 * time.Second, up: false},
				{at: 6 * time.Second, up: false},
				{at: 7 * time.Second, up: true, changed: true},
			},
		},
		{
			name: "up-interval longer than timeout: one failure is enough",
			spec: Spec{Interval: time.Second, Timeout: 4 * time.Second, UpInterval: 10 * time.Second},
			steps: []step{
				{at: 0, up: true, changed: true},
				{at: 10 * time.Second, result: fail, up: false, changed: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			var s monState
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				var changed bool
				if st.expire {
					changed = s.expire(&tt.spec, now)
				} else {
					changed = s.observe(&tt.spec, st.result, now, now)
				}
				if s.up != st.up || changed != st.changed || !s.checked {
					t.Fatalf("step %d (t=%v): up=%v changed=%v checked=%v, want up=%v changed=%v checked=true (reason %q)",
						i, st.at, s.up, changed, s.checked, st.up, st.changed, s.reason)
				}
			}
		})
	}
}

func TestStateReasonsAndDelays(t *testing.T) {
	t.Parallel()
	spec := Spec{Interval: time.Second, UpInterval: 10 * time.Second, Timeout: 4 * time.Second, TimeUntilUp: 2 * time.Second}
	t0 := time.Now()
	var s monState
	s.observe(&spec, nil, t0, t0.Add(5*time.Millisecond))
	if s.up || s.reason != "succeeding for 0s, time-until-up is 2s" {
		t.Fatalf("after first success: up=%v reason=%q", s.up, s.reason)
	}
	if s.latency != 5*time.Millisecond || !s.lastRun.Equal(t0) {
		t.Errorf("latency %v lastRun %v", s.latency, s.lastRun)
	}
	if d := s.nextDelay(&spec); d != time.Second {
		t.Errorf("next delay while down = %v, want interval 1s", d)
	}
	s.observe(&spec, nil, t0.Add(2*time.Second), t0.Add(2*time.Second+5*time.Millisecond))
	if !s.up || s.reason != "ok" {
		t.Fatalf("after time-until-up: up=%v reason=%q", s.up, s.reason)
	}
	if d := s.nextDelay(&spec); d != 10*time.Second {
		t.Errorf("next delay while up = %v, want up-interval 10s", d)
	}
	if _, pending := s.downAt(&spec); pending {
		t.Error("downAt pending while the last probe succeeded")
	}
	s.observe(&spec, errors.New("status 500 not in [200]"), t0.Add(3*time.Second), t0.Add(3*time.Second))
	if !s.up || s.reason != "status 500 not in [200]" {
		t.Fatalf("after one failure: up=%v reason=%q", s.up, s.reason)
	}
	if d := s.nextDelay(&spec); d != time.Second {
		t.Errorf("next delay after a failure = %v, want interval 1s", d)
	}
	at, pending := s.downAt(&spec)
	if want := t0.Add(2*time.Second + 5*time.Millisecond + 4*time.Second); !pending || !at.Equal(want) {
		t.Errorf("downAt = %v %v, want %v", at, pending, want)
	}
}
