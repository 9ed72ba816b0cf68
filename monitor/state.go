package monitor

import (
	"fmt"
	"time"
)

// monState is one monitor's F5 state machine for one job. It is pure (the
// caller supplies the clock) so the timing rules are unit-tested without
// sleeping.
type monState struct {
	checked     bool
	up          bool
	lastOK      bool      // the most recent result was a success
	lastSuccess time.Time // time of the most recent success
	okSince     time.Time // start of the current run of successes; zero after a failure
	reason      string
	lastRun     time.Time
	latency     time.Duration
}

// observe records the result of an attempt that started at start and
// finished at end. It returns whether the monitor's up/down state changed.
func (s *monState) observe(spec *Spec, err error, start, end time.Time) bool {
	wasUp, wasChecked := s.up, s.checked
	s.lastRun, s.latency = start, end.Sub(start)
	if err == nil {
		s.lastOK, s.lastSuccess = true, end
		if s.okSince.IsZero() {
			s.okSince = end
		}
		if !s.up {
			if held := end.Sub(s.okSince); held >= spec.TimeUntilUp {
				s.up = true
			} else {
				s.reason = fmt.Sprintf("succeeding for %v, time-until-up is %v", held.Round(time.Millisecond), spec.TimeUntilUp)
			}
		}
		if s.up {
			s.reason = "ok"
		}
	} else {
		s.lastOK, s.okSince = false, time.Time{}
		s.reason = err.Error()
		if s.up && end.Sub(s.lastSuccess) >= spec.timeout() {
			s.up = false
		}
	}
	s.checked = true
	return s.up != wasUp || !wasChecked
}

// downAt reports when an up monitor whose last probe failed will be marked
// down unless a probe succeeds first.
func (s *monState) downAt(spec *Spec) (time.Time, bool) {
	if !s.up || s.lastOK {
		return time.Time{}, false
	}
	return s.lastSuccess.Add(spec.timeout()), true
}

// expire marks the monitor down when Timeout has elapsed since its last
// success and the latest probe failed. It returns whether the state changed.
func (s *monState) expire(spec *Spec, now time.Time) bool {
	at, ok := s.downAt(spec)
	if !ok || now.Before(at) {
		return false
	}
	s.up = false
	return true
}

// nextDelay is the time from the start of the last attempt to the next one:
// UpInterval while up and succeeding, Interval otherwise (so an up monitor
// that just failed is re-probed at Interval, usually the shorter of the two,
// and its mark-down is confirmed quickly).
func (s *monState) nextDelay(spec *Spec) time.Duration {
	if s.up && s.lastOK && spec.UpInterval > 0 {
		return spec.UpInterval
	}
	return spec.interval()
}
