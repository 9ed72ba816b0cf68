package config

import (
	"strings"
	"testing"
)

const vsUDP = `
virtuals:
  dns:
    type: udp
    destination: 127.0.0.1:5353
    pool: web
`

// A udp virtual's flow table is bounded even when the file says nothing,
// and cannot be made unbounded.
func TestUDPConnectionLimit(t *testing.T) {
	cfg, err := Parse([]byte(poolWeb+vsUDP), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Virtuals["dns"].ConnectionLimit; got != DefaultUDPConnectionLimit {
		t.Errorf("udp virtual without connection_limit: %d, want %d", got, DefaultUDPConnectionLimit)
	}
	cfg, err = Parse([]byte(poolWeb+vsUDP+"    connection_limit: 50\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Virtuals["dns"].ConnectionLimit; got != 50 {
		t.Errorf("connection_limit: 50 gave %d", got)
	}
	// tcp and http virtuals keep 0 (unlimited) by default.
	cfg, err = Parse([]byte(poolWeb+vsWeb), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Virtuals["vs"].ConnectionLimit; got != 0 {
		t.Errorf("http virtual default connection_limit %d, want 0", got)
	}

	src := poolWeb + vsUDP + "    connection_limit: 0  #<-\n"
	errs := parseErrors(t, src)
	if len(errs) != 1 || errs[0].Path != "virtuals.dns.connection_limit" || errs[0].Line != markedLine(t, src) ||
		!strings.Contains(errs[0].Msg, "must be bounded") {
		t.Fatalf("connection_limit: 0 on a udp virtual: %v", errs)
	}
}
