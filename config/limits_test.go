package config

import (
	"strings"
	"testing"
)

// The persistence table is grown by clients: it always has a bound, and an
// operator cannot write it away.
func TestPersistenceRecordsLimit(t *testing.T) {
	cfg, err := Parse([]byte(poolWeb+vsWeb), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Limits.PersistenceRecords; got != DefaultPersistenceRecords {
		t.Errorf("default persistence_records %d, want %d", got, DefaultPersistenceRecords)
	}
	cfg, err = Parse([]byte(poolWeb+vsWeb+"limits:\n  persistence_records: 500\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Limits.PersistenceRecords; got != 500 {
		t.Errorf("persistence_records: 500 gave %d", got)
	}
	for _, v := range []string{"0", "-1", "100000001"} {
		src := poolWeb + vsWeb + "limits:\n  persistence_records: " + v + "  #<-\n"
		errs := parseErrors(t, src)
		if len(errs) != 1 || errs[0].Path != "limits.persistence_records" || errs[0].Line != markedLine(t, src) ||
			!strings.Contains(errs[0].Msg, "needs a bound") {
			t.Errorf("persistence_records: %s: %v", v, errs)
		}
	}
}
