package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/engine"
	"github.com/fulcrum-adc/fulcrum/isession"
	"github.com/fulcrum-adc/fulcrum/isession/mux"
)

func TestShowISessions(t *testing.T) {
	t.Parallel()
	tu := isession.Stats{Peer: "dc", Remote: "198.51.100.10:7443", Outcome: "compression [zstd] adaptive, dedup x cache 256 MiB, port transparency on",
		Age: 90 * time.Second, Mux: mux.Stats{StreamsOpen: 3, StreamsOpened: 40, RawOut: 1000, WireOut: 250, RawIn: 5 << 20, WireIn: 1 << 20},
		TCPRTT: 100 * time.Millisecond, DeliveryRate: 5_000_000}
	tu.DedupOut.Chunks, tu.DedupOut.Refs, tu.DedupIn.CacheBytes = 10, 7, 64<<20
	st := engine.ISessionStats{Pools: map[string]isession.PoolStats{"wan": {Dials: 2, DialFailures: 1, Tunnels: []isession.Stats{tu}}},
		Listener: &isession.TerminatorStats{Accepted: 4, Refused: 1, Streams: 9, NoTarget: 2}}
	// Through JSON, as the CLI gets it from the API.
	b, _ := json.Marshal(st)
	var got engine.ISessionStats
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c := &apiCLI{stdout: &out, stderr: &out, now: time.Now}
	if code := c.showISessions(&got, "table"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"remote", "wan", "dc", "198.51.100.10:7443", "0.25", "7/10", "64 MiB", "100ms", "40.0 Mbit/s",
		"port transparency on", "profile wan: 2 tunnel setups, 1 failed", "listener: 4 tunnels accepted, 1 refused; 9 streams, 2 without a target"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	c.showISessions(&engine.ISessionStats{}, "table")
	if !strings.Contains(out.String(), "no iSession profile in use") {
		t.Errorf("empty: %s", out.String())
	}
}
