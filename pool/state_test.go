package pool

import "testing"

func TestParseState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    State
		wantErr bool
	}{
		{"enabled", Enabled, false},
		{"Enabled", Enabled, false},
		{"disabled", Disabled, false},
		{"forced-offline", ForcedOffline, false},
		{"forced_offline", ForcedOffline, false},
		{"offline", ForcedOffline, false},
		{" OFFLINE ", ForcedOffline, false},
		{"", Enabled, true},
		{"down", Enabled, true},
	}
	for _, tt := range tests {
		got, err := ParseState(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && got != tt.want) {
			t.Errorf("ParseState(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	for _, s := range []State{Enabled, Disabled, ForcedOffline} {
		back, err := ParseState(s.String())
		if err != nil || back != s {
			t.Errorf("round trip of %v gave %v, %v", s, back, err)
		}
	}
	if got := State(9).String(); got != "state(9)" {
		t.Errorf("State(9).String() = %q", got)
	}
}

func TestMemberStateAvailability(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		state         State
		health        *bool
		passiveDown   bool
		wantAvailable bool
		wantPersist   bool
		wantAvail     string
	}{
		{"enabled unchecked", Enabled, nil, false, true, true, "unknown"},
		{"enabled up", Enabled, ptr(true), false, true, true, "available"},
		{"enabled down", Enabled, ptr(false), false, false, false, "offline"},
		{"disabled", Disabled, ptr(true), false, false, true, "disabled"},
		{"disabled down", Disabled, ptr(false), false, false, false, "disabled"},
		{"forced offline", ForcedOffline, ptr(true), false, false, false, "disabled"},
		{"passively down", Enabled, ptr(true), true, false, false, "offline"},
		{"disabled and passively down", Disabled, nil, true, false, false, "disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Members: members(1), Monitored: true, Passive: PassiveConfig{Enabled: true, Failures: 1, Retry: 10}}
			cfg.Members[0].State = tt.state
			p := testPool(t, cfg, newFakeClock(), nil)
			m := p.Members()[0]
			if tt.health != nil {
				m.SetHealth(*tt.health, "test")
			}
			if tt.passiveDown {
				m.ReportFailure("test")
			}
			if got := m.Available(); got != tt.wantAvailable {
				t.Errorf("Available() = %v, want %v", got, tt.wantAvailable)
			}
			if got := m.PersistOK(); got != tt.wantPersist {
				t.Errorf("PersistOK() = %v, want %v", got, tt.wantPersist)
			}
			if got := m.Stats().Availability; got != tt.wantAvail {
				t.Errorf("Stats().Availability = %q, want %q", got, tt.wantAvail)
			}
			_, err := p.Pick(Hint{})
			if tt.wantAvailable != (err == nil) {
				t.Errorf("Pick error %v, want available=%v", err, tt.wantAvailable)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
