package main

import (
	"runtime"
	"strconv"
	"testing"
)

func TestFastL4Reason(t *testing.T) {
	t.Parallel()
	msg := `fulcrum exited before listening on 127.0.0.1:1: exit status 1: /tmp/x/fulcrum.yaml:42: virtuals.vs_fastl4.type: type "fastl4" is not valid: use one of tcp, udp, http | 1 problem(s) found`
	want := `virtuals.vs_fastl4.type: type "fastl4" is not valid: use one of tcp, udp, http`
	if got := fastL4Reason(msg); got != want {
		t.Errorf("fastL4Reason = %q, want %q", got, want)
	}
	if got := fastL4Reason("boom"); got != "boom" {
		t.Errorf("fastL4Reason(boom) = %q", got)
	}
}

func TestWants(t *testing.T) {
	t.Parallel()
	o := options{targets: set("fulcrum,haproxy-2cpu")}
	for target, want := range map[string]bool{"fulcrum": true, "fulcrum-1cpu": true, "haproxy-2cpu": true, "haproxy-1cpu": false, "haproxy": false, "fulcrum-fastl4": false} {
		if got := o.wants(target); got != want {
			t.Errorf("wants(%q) = %v, want %v", target, got, want)
		}
	}
	if !(options{}).wants("anything") {
		t.Error("no -targets selects nothing")
	}
}

func TestLastCPUs(t *testing.T) {
	t.Parallel()
	n := runtime.NumCPU()
	if got := lastCPUs(1); got != strconv.Itoa(n-1) && n > 1 {
		t.Errorf("lastCPUs(1) = %q on %d CPUs", got, n)
	}
	if got := lastCPUs(n); got != "0-"+strconv.Itoa(n-1) {
		t.Errorf("lastCPUs(%d) = %q", n, got)
	}
}
