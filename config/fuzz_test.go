package config

import (
	"errors"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that it always
// returns either a complete configuration or at least one explained problem.
// Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(poolWeb + vsWeb))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Parse returned %T %v, want non-empty Errors", err, err)
			}
			for _, e := range errs {
				if e.Msg == "" {
					t.Fatalf("problem without a message: %+v", e)
				}
			}
			if c != nil {
				t.Fatal("Parse returned both a configuration and errors")
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a configuration nor an error")
		}
		// Defaults must leave nothing for the engine to check for nil.
		for name, p := range c.Pools {
			if p.Passive == nil || p.Passive.Enabled == nil || len(p.Members) == 0 {
				t.Fatalf("pool %s incomplete: %+v", name, p)
			}
		}
		for name, v := range c.Virtuals {
			if v.Enabled == nil || v.IdleTimeout == 0 || v.ConnectTimeout == 0 || v.SNAT == "" {
				t.Fatalf("virtual %s incomplete: %+v", name, v)
			}
		}
		for name, p := range c.Profiles.Persistence {
			if p.PrefixV4 == nil || p.PrefixV6 == nil || p.HTTPOnly == nil {
				t.Fatalf("persistence profile %s incomplete: %+v", name, p)
			}
		}
	})
}
