package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/fulcrum-adc/fulcrum/bench"
)

// The wan scenario runs engine's BenchmarkTCPProfilesOverWAN (compiled by
// bench/run with go test -c): 8 MiB fetched across the WAN emulator
// (100 ms RTT, 1 % loss, 50 Mbit/s, network namespaces) directly and
// through a tcp virtual with three clientside profiles. One invocation
// measures every variant, interleaved, so the first target of a round runs
// it and the others of that round take their figure from the same run.

// wanVariants maps the scenario's targets to the benchmark's metric names.
var wanVariants = []struct{ target, metric string }{
	{bench.Direct, "direct-s"},
	{"fulcrum-tcp", "tcp-s"},
	{"fulcrum-tcp-wan-optimized", "tcp-wan-optimized-s"},
	{"fulcrum-auto", "auto-s"},
}

func wanTargets() []string {
	var t []string
	for _, v := range wanVariants {
		t = append(t, v.target)
	}
	return t
}

// wanRun is the latest invocation's figures and which targets have read them.
type wanRun struct {
	secs  map[string]float64 // metric → seconds
	taken map[string]bool
	notes []string
}

const wanBytes = 8 << 20

func wanMeasure(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
	if e.wan == nil || e.wan.taken[target] {
		secs, notes, err := runWANBench(ctx, e)
		if err != nil {
			e.wan = nil
			return nil, nil, err
		}
		e.wan = &wanRun{secs: secs, taken: map[string]bool{}, notes: notes}
	}
	e.wan.taken[target] = true
	for _, v := range wanVariants {
		if v.target != target {
			continue
		}
		s, ok := e.wan.secs[v.metric]
		if !ok {
			return nil, nil, fmt.Errorf("the benchmark reported no %s", v.metric)
		}
		var notes []string
		if target == bench.Direct {
			notes = e.wan.notes
		}
		return bench.Round{"mbps": wanBytes * 8 / s / 1e6, "seconds": s}, notes, nil
	}
	return nil, nil, fmt.Errorf("no WAN variant %q", target)
}

// runWANBench runs the compiled engine benchmark once (one round of every
// variant) and returns its metrics and the congestion control it reported.
func runWANBench(ctx context.Context, e *env) (map[string]float64, []string, error) {
	cmd := exec.CommandContext(ctx, e.o.wanTest, "-test.run", "^$", "-test.bench", "^BenchmarkTCPProfilesOverWAN$", "-test.benchtime", "1x")
	cmd.Env = append(os.Environ(), "FULCRUM_WAN_ROUNDS=1")
	cmd.Dir = e.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v: %s", e.o.wanTest, err, lastLines(string(out), 5))
	}
	secs, err := bench.ParseGoBench(string(out), "BenchmarkTCPProfilesOverWAN")
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	for _, l := range strings.Split(string(out), "\n") {
		if i := strings.Index(l, "congestion control of every sender"); i >= 0 {
			notes = append(notes, strings.TrimSpace(l[i:]))
		}
	}
	return secs, notes, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// wanUnavailable says why the wan scenario cannot run here ("" = it can).
func (e *env) wanUnavailable() string {
	switch {
	case os.Geteuid() != 0:
		return "needs root (network namespaces, tc)"
	case e.o.wanTest == "":
		return "no engine test binary (-wan-test; bench/run builds it)"
	}
	return ""
}
