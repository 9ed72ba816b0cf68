package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/bench"
)

// scenario is one measurement kind. measure runs it once against target and
// returns the round's values, notes worth reporting, or an error.
type scenario struct {
	bench.Scenario
	targets []string
	measure func(ctx context.Context, e *env, target string) (bench.Round, []string, error)
	// row, when set, fills in a row's reference targets (scaling scenario).
	row func(target string) bench.Row
}

var (
	mRPS   = bench.Metric{Key: "rps", Label: "Requests/s", Unit: "req/s"}
	mConns = bench.Metric{Key: "rps", Label: "Connections/s", Unit: "conn/s"}
	mP50   = bench.Metric{Key: "p50_us", Label: "p50", Unit: "µs", LowerIsBetter: true}
	mP99   = bench.Metric{Key: "p99_us", Label: "p99", Unit: "µs", LowerIsBetter: true}
	mCPU   = bench.Metric{Key: "cpu_pct", Label: "Proxy CPU", Unit: "%"}
	mGbps  = bench.Metric{Key: "gbps", Label: "Throughput", Unit: "Gbit/s"}
	// CPU time of the proxy's processes (utime+stime of the process tree
	// over the measurement) per request wrk completed, or per MiB moved.
	mCPUReq  = bench.Metric{Key: "cpu_us_req", Label: "CPU per request", Unit: "µs", LowerIsBetter: true, VsHAProxy: true}
	mCPUConn = bench.Metric{Key: "cpu_us_req", Label: "CPU per connection", Unit: "µs", LowerIsBetter: true, VsHAProxy: true}
	mCPUMiB  = bench.Metric{Key: "cpu_us_mib", Label: "CPU per MiB", Unit: "µs", LowerIsBetter: true, VsHAProxy: true}
	// The whole machine's busy time (/proc/stat, softirq included) per MiB:
	// the only figure that counts kernel work charged to no process.
	mMachineMiB = bench.Metric{Key: "machine_us_mib", Label: "Machine CPU per MiB", Unit: "µs", LowerIsBetter: true}
	mLoadCPU    = bench.Metric{Key: "load_cpu_pct", Label: "wrk CPU", Unit: "%"}
	mBackCPU    = bench.Metric{Key: "backend_cpu_pct", Label: "Backend CPU", Unit: "%"}
	mMachine    = bench.Metric{Key: "machine_pct", Label: "Machine busy", Unit: "%"}
	mOther      = bench.Metric{Key: "other_pct", Label: "Unattributed", Unit: "%"}
)

const cpuFootnote = "CPU per request (per MiB) = utime+stime of the proxy's process tree over the measurement (/proc/PID/stat, 10 ms ticks) ÷ requests wrk completed (MiB delivered); " +
	"its ratio to HAProxy is the column *vs HAProxy* (lower is better). Direct has no proxy, so no figure."

var httpTargets = []string{bench.Direct, bench.Fulcrum, bench.HAProxy, bench.Nginx, bench.Caddy}

// scalingProxies are the proxies the scaling scenario runs on 1 and more cores.
var scalingProxies = []string{bench.Fulcrum, bench.HAProxy}

// scalingTarget names a proxy on n cores in the scaling scenario.
func scalingTarget(proxy string, n int) string { return fmt.Sprintf("%s-%dcpu", proxy, n) }

func scenarios(o options) []scenario {
	c := o.connections
	d := o.duration
	var scaleTargets []string
	scale := map[string][2]any{} // target → proxy, cores
	for _, n := range o.cores {
		for _, p := range scalingProxies {
			t := scalingTarget(p, n)
			scaleTargets = append(scaleTargets, t)
			scale[t] = [2]any{p, n}
		}
	}
	return []scenario{
		{Scenario: bench.Scenario{ID: "http-keepalive", Title: "1. HTTP keep-alive, small body",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency, GET / (100-byte body), keep-alive on both sides.", c, d),
			Metrics: []bench.Metric{mRPS, mP50, mP99, mCPU, mCPUReq}, Footnote: cpuFootnote},
			targets: httpTargets, measure: wrkMeasure("http", "/", false, c)},
		{Scenario: bench.Scenario{ID: "http-1mib", Title: "1b. HTTP keep-alive, 1 MiB body",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency, GET /1m (1 MiB file, sendfile at the backend).", c/4, d),
			Metrics: []bench.Metric{mGbps, mRPS, mP99, mCPU, mCPUMiB}, Footnote: cpuFootnote},
			targets: httpTargets, measure: wrkMeasure("http", "/1m", false, c/4)},
		{Scenario: bench.Scenario{ID: "http-close", Title: "2. New connections per second (HTTP, Connection: close)",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency -H 'Connection: close', GET /: one request per client connection (server-side connections may be reused, as each proxy does by default).", c, d),
			Metrics: []bench.Metric{mConns, mP50, mP99, mCPU, mCPUConn}, Footnote: cpuFootnote},
			targets: httpTargets, measure: wrkMeasure("http", "/", true, c)},
		{Scenario: bench.Scenario{ID: "tcp-throughput", Title: "3. L4 TCP throughput",
			How: fmt.Sprintf("iperf3 -c -t %s -O 1 -J, one stream, client → proxy → iperf3 server. Fulcrum: a `tcp` virtual (default profile) and a `fastl4` virtual (kernel relay); "+
				"HAProxy `mode tcp` without and with splice; nginx `stream`.", secs(d)),
			Metrics: []bench.Metric{mGbps, {Key: "retrans", Label: "Retransmits", Unit: ""}, mCPU, mCPUMiB, mMachineMiB},
			Footnote: cpuFootnote + " *Machine CPU per MiB* is every CPU's busy time (/proc/stat: user, system, irq, softirq; load generator and iperf3 server included) per MiB: " +
				"a kernel relay (splice, the `fastl4` sockmap) does much of its work in softirq and kernel-thread context charged to no process, so compare it there. It also counts any other work on the machine: trust it only from a quiet machine (the JSON's other_pct is the share charged to none of proxy, iperf3 client and server)."},
			targets: []string{bench.Direct, bench.Fulcrum, bench.FulcrumFastL4, bench.HAProxy, bench.HAProxySplice, bench.Nginx, bench.Caddy},
			measure: iperfMeasure},
		{Scenario: bench.Scenario{ID: "idle-memory", Title: "4. Memory per idle client connection",
			How: fmt.Sprintf("A fresh instance of each proxy serves one request, then %d client connections are opened to its HTTP listener and send nothing (an HTTP virtual / frontend waiting for a request head). "+
				"Figure = (VmRSS after − VmRSS before) / connections, summed over the proxy's processes, read 2 s after the last connection opened; Accepted = sockets the proxy gained.", o.idleConns),
			Metrics: []bench.Metric{{Key: "bytes_per_conn", Label: "RSS per connection", Unit: "B", LowerIsBetter: true},
				{Key: "rss_delta_mib", Label: "RSS delta", Unit: "MiB", LowerIsBetter: true},
				{Key: "accepted", Label: "Accepted", Unit: ""}}},
			targets: []string{bench.Direct, bench.Fulcrum, bench.HAProxy, bench.Nginx, bench.Caddy},
			measure: memoryMeasure},
		{Scenario: bench.Scenario{ID: "tls-keepalive", Title: "5. TLS termination, keep-alive (ECDSA P-256)",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency over HTTPS (TLS 1.3, ECDSA P-256 certificate made for the run), GET /, keep-alive; the proxy talks plain HTTP to the backend. Direct = nginx backend terminating TLS itself.", c, d),
			Metrics: []bench.Metric{mRPS, mP50, mP99, mCPU, mCPUReq}, Footnote: cpuFootnote},
			targets: httpTargets, measure: wrkMeasure("https", "/", false, c)},
		{Scenario: bench.Scenario{ID: "tls-handshake", Title: "5b. TLS handshakes per second (Connection: close)",
			How:     ("As 5 with -H 'Connection: close': one full TLS handshake per request (wrk does not resume sessions)."),
			Metrics: []bench.Metric{{Key: "rps", Label: "Handshakes/s", Unit: "conn/s"}, mP50, mP99, mCPU, mCPUConn}, Footnote: cpuFootnote},
			targets: httpTargets, measure: wrkMeasure("https", "/", true, c)},
		{Scenario: bench.Scenario{ID: "http-scaling", Title: "6. Multi-core scaling, HTTP keep-alive",
			How: fmt.Sprintf("As 1 (wrk -t1 -c%d -d%s, GET /), against a fresh instance of the proxy on N cores: Fulcrum with GOMAXPROCS=N, HAProxy with nbthread N, "+
				"the proxy pinned (taskset) to the machine's last N CPUs; wrk and the nginx backend stay on CPU %s. "+
				"With as many proxy cores as the machine has, the proxy shares its cores with the load generator and the backend: "+
				"the wrk, backend and machine columns show how much of the machine each took (100 %% = one core; the machine has %d).", c, d, o.loadCPU, runtime.NumCPU()),
			Metrics: []bench.Metric{mRPS, mP99, mCPU, mCPUReq, mLoadCPU, mBackCPU, mMachine, mOther},
			Footnote: cpuFootnote + " *vs HAProxy* compares with HAProxy on the same number of cores; *vs fewest cores* with the same proxy on the first core count of -cores. " +
				"*Machine busy* is all CPUs' busy time (/proc/stat) in % of one CPU; *Unattributed* is the part of it charged to none of proxy, wrk and backend: softirq, kernel threads, and any other work on the machine (a high figure means the run was disturbed)."},
			targets: scaleTargets,
			measure: func(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
				pc := scale[target]
				return scalingMeasure(ctx, e, pc[0].(string), pc[1].(int), c)
			},
			row: func(target string) bench.Row {
				pc := scale[target]
				r := bench.Row{Target: target, Ref: scalingTarget(bench.HAProxy, pc[1].(int))}
				if len(o.cores) > 0 && pc[1].(int) != o.cores[0] {
					r.ScaleFrom = scalingTarget(pc[0].(string), o.cores[0])
				}
				return r
			}},
		{Scenario: bench.Scenario{ID: "wan", Title: "7. WAN: 8 MiB over 100 ms RTT, 1 % loss, 50 Mbit/s",
			How: "engine's BenchmarkTCPProfilesOverWAN, one round per round here: a client in a network namespace fetches 8 MiB across the WAN emulator (internal/testnet; the delay line and tc tbf) " +
				"directly from a server in the far namespace (Linux buffer autotuning) and through a Fulcrum tcp virtual there (member on loopback) with the clientside profile `tcp`, `tcp-wan-optimized` or all-`auto` buffers; " +
				"every sender uses the namespace's default congestion control (see Notes). Time from connect to the last byte.",
			Metrics: []bench.Metric{{Key: "mbps", Label: "Goodput", Unit: "Mbit/s"}, {Key: "seconds", Label: "Time for 8 MiB", Unit: "s", LowerIsBetter: true}}},
			targets: wanTargets(), measure: wanMeasure},
	}
}

func scenarioIDs() []string {
	var ids []string
	for _, s := range scenarios(options{connections: 64, duration: time.Second}) {
		ids = append(ids, s.ID)
	}
	return ids
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second) / time.Second)) }

// runScenarios runs every round: in each round every scenario, and in each
// scenario every target, the target order rotating from round to round so
// that no proxy always goes first (or last) after a given neighbour.
func runScenarios(ctx context.Context, o options, e *env, res *bench.Result) error {
	all := scenarios(o)
	var active []scenario
	for _, s := range all {
		if len(o.scenarios) == 0 || o.scenarios[s.ID] {
			active = append(active, s)
			sr := &bench.ScenarioResult{Scenario: s.Scenario}
			for _, t := range s.targets {
				if !o.wants(t) {
					continue
				}
				row := &bench.Row{Target: t}
				if s.row != nil {
					r := s.row(t)
					row = &r
				}
				row.Unavailable = e.whyUnavailable(s.ID, t)
				sr.Rows = append(sr.Rows, row)
			}
			res.Scenarios = append(res.Scenarios, sr)
		}
	}
	for round := 0; round < o.rounds; round++ {
		for i, s := range active {
			sr := res.Scenarios[i]
			n := len(sr.Rows)
			for j := 0; j < n; j++ {
				row := sr.Rows[(j+round)%n]
				if row.Unavailable != "" {
					continue
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				logf("round %d/%d  %-15s %-15s", round+1, o.rounds, s.ID, row.Target)
				v, notes, err := s.measure(ctx, e, row.Target)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					logf("    failed: %v", err)
					row.Failures = append(row.Failures, fmt.Sprintf("round %d failed: %v", round+1, err))
					continue
				}
				for k, x := range v {
					if math.IsNaN(x) || math.IsInf(x, 0) {
						delete(v, k) // no figure (e.g. proxy CPU for direct)
					}
				}
				logf("    %s", summary(s.Metrics, v))
				row.Rounds = append(row.Rounds, v)
				for _, n := range notes {
					row.Notes = append(row.Notes, fmt.Sprintf("round %d: %s", round+1, n))
				}
			}
		}
	}
	return nil
}

func summary(ms []bench.Metric, v bench.Round) string {
	var parts []string
	for _, m := range ms {
		x, ok := v[m.Key]
		if !ok {
			x = math.NaN()
		}
		parts = append(parts, m.Label+" "+bench.FormatValue(x, m.Unit))
	}
	return strings.Join(parts, ", ")
}

// whyUnavailable says why target has no figure in scenario id ("" = it has).
func (e *env) whyUnavailable(id, target string) string {
	switch {
	case id == "tcp-throughput" && e.bins["iperf3"] == "":
		return "iperf3 is not installed"
	case id == "tcp-throughput" && target == bench.Caddy:
		return "Caddy has no TCP proxy without the caddy-l4 plugin, which Debian's caddy does not include"
	case id == "tcp-throughput" && target == bench.Nginx && e.unavailable[bench.Nginx+"/l4"] != "":
		return e.unavailable[bench.Nginx+"/l4"]
	case id == "idle-memory" && target == bench.Direct:
		return "no proxy in the path"
	}
	if id == "wan" {
		return e.wanUnavailable()
	}
	if id == "http-scaling" {
		for _, p := range scalingProxies {
			for _, n := range e.o.cores {
				if target != scalingTarget(p, n) {
					continue
				}
				if n > runtime.NumCPU() {
					return fmt.Sprintf("this machine has %d CPUs", runtime.NumCPU())
				}
				if why := e.unavailable[p]; why != "" {
					return why
				}
				if k := e.kind(p); k == nil {
					return "no proxy " + p
				}
			}
		}
		return ""
	}
	if why := e.unavailable[target]; why != "" {
		return why
	}
	if (target == bench.HAProxySplice || target == bench.FulcrumFastL4) && e.unavailable[baseOf(target)] != "" {
		return e.unavailable[baseOf(target)]
	}
	return ""
}

// baseOf is the proxy process that serves target.
func baseOf(target string) string {
	switch target {
	case bench.HAProxySplice:
		return bench.HAProxy
	case bench.FulcrumFastL4:
		return bench.Fulcrum
	}
	return target
}

// endpoint returns the port of target for a protocol ("http", "https", "tcp"),
// the pid whose CPU time is charged to it (0 for direct), and the pid of the
// backend behind it.
func (e *env) endpoint(target, proto string) (port, pid, backend int, err error) {
	backend = e.backend.pid()
	if proto == "tcp" {
		backend = e.iperf.pid()
	}
	if target == bench.Direct {
		switch proto {
		case "http":
			return e.base.Backend, 0, backend, nil
		case "https":
			return e.base.BackendTLS, 0, backend, nil
		case "tcp":
			return e.base.Iperf, 0, backend, nil
		}
	}
	name := baseOf(target)
	inst := e.proxies[name]
	if inst == nil {
		return 0, 0, 0, fmt.Errorf("%s is not running", name)
	}
	if inst.p.exited() {
		return 0, 0, 0, fmt.Errorf("%s exited: %v: %s", name, inst.p.err, inst.p.tail())
	}
	pid = inst.p.pid()
	switch {
	case proto == "http":
		return inst.ports.HTTP, pid, backend, nil
	case proto == "https":
		return inst.ports.HTTPS, pid, backend, nil
	case proto == "tcp" && target == bench.HAProxySplice:
		return inst.ports.TCPSplice, pid, backend, nil
	case proto == "tcp" && target == bench.FulcrumFastL4:
		return inst.ports.TCPFast, pid, backend, nil
	case proto == "tcp":
		return inst.ports.TCP, pid, backend, nil
	}
	return 0, 0, 0, fmt.Errorf("unknown protocol %q", proto)
}

// meter measures, over one measurement, the CPU time of the proxy's process
// tree, of the backend's, and of the whole machine.
type meter struct {
	start           time.Time
	proxyPID, bePID int
	proxy, be       int64
	stat            map[string]cpuStat
}

// usage is what a meter measured, in seconds.
type usage struct {
	wall, proxy, backend, machine float64 // proxy is NaN without a proxy
}

// ticks per second in /proc/PID/stat and /proc/stat (USER_HZ).
const userHZ = 100

func startMeter(proxyPID, backendPID int) *meter {
	m := &meter{proxyPID: proxyPID, bePID: backendPID, stat: readCPUStat(), start: time.Now()}
	if proxyPID != 0 {
		m.proxy = cpuTicks(proxyPID)
	}
	if backendPID != 0 {
		m.be = cpuTicks(backendPID)
	}
	return m
}

func (m *meter) stop() usage {
	u := usage{wall: time.Since(m.start).Seconds(), proxy: math.NaN(), backend: math.NaN()}
	if m.proxyPID != 0 {
		u.proxy = float64(cpuTicks(m.proxyPID)-m.proxy) / userHZ
	}
	if m.bePID != 0 {
		u.backend = float64(cpuTicks(m.bePID)-m.be) / userHZ
	}
	u.machine = float64(readCPUStat()["all"].busy-m.stat["all"].busy) / userHZ
	return u
}

// round turns a measurement's CPU usage into the round's figures: shares in
// percent of one CPU, and CPU µs per unit of work (requests, or MiB).
func (u usage) round(v bench.Round, loadCPU float64, perKey string, units float64) {
	v["cpu_pct"] = u.proxy / u.wall * 100
	v["backend_cpu_pct"] = u.backend / u.wall * 100
	v["load_cpu_pct"] = loadCPU / u.wall * 100
	v["machine_pct"] = u.machine / u.wall * 100
	// Machine time charged to none of the three: softirq and kernel
	// threads, and whatever else runs on the machine.
	v["other_pct"] = (u.machine - nz(u.proxy) - nz(loadCPU) - nz(u.backend)) / u.wall * 100
	if units > 0 {
		v["cpu_us_"+perKey] = u.proxy * 1e6 / units
		v["machine_us_"+perKey] = u.machine * 1e6 / units
	}
}

// nz is x, or 0 for NaN (no such process).
func nz(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}

func wrkMeasure(proto, path string, closeConn bool, conns int) func(context.Context, *env, string) (bench.Round, []string, error) {
	return func(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
		port, pid, backend, err := e.endpoint(target, proto)
		if err != nil {
			return nil, nil, err
		}
		url := fmt.Sprintf("%s://127.0.0.1:%d%s", proto, port, path)
		return wrkRound(ctx, e, url, closeConn, conns, pid, backend)
	}
}

// wrkRound warms up, then measures url with wrk, charging CPU time to the
// process trees of pid (the proxy, 0 for none) and backend.
func wrkRound(ctx context.Context, e *env, url string, closeConn bool, conns, pid, backend int) (bench.Round, []string, error) {
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), "--latency"}
	if closeConn {
		args = append(args, "-H", "Connection: close")
	}
	// Warm-up (connections, caches, Go heap), not recorded.
	if _, _, err := runWrk(ctx, e, append(args, "-d"+secs(e.o.warmup)+"s", url)); err != nil {
		return nil, nil, fmt.Errorf("warm-up: %w", err)
	}
	m := startMeter(pid, backend)
	r, wrkCPU, err := runWrk(ctx, e, append(args, "-d"+secs(e.o.duration)+"s", url))
	u := m.stop()
	if err != nil {
		return nil, nil, err
	}
	v := bench.Round{"rps": r.RPS, "p50_us": r.P50US, "p99_us": r.P99US, "gbps": r.TransferBytes * 8 / 1e9}
	perKey, units := "req", float64(r.Requests)
	if strings.HasSuffix(url, "/1m") {
		// Bytes wrk received (headers included) over its measured time.
		perKey, units = "mib", r.TransferBytes*r.Seconds/(1<<20)
	}
	u.round(v, wrkCPU, perKey, units)
	var notes []string
	if n := r.Errors(); n > 0 {
		note := fmt.Sprintf("%d errors (connect %d, write %d, timeout %d, non-2xx %d)", n, r.ErrConnect, r.ErrWrite, r.ErrTimeout, r.Non2xx3xx)
		if float64(n) > 0.01*float64(r.Requests) {
			return nil, nil, errors.New(note + " — over 1% of requests, figure discarded")
		}
		notes = append(notes, note)
	}
	if r.Requests == 0 {
		return nil, nil, errors.New("no request completed")
	}
	return v, notes, nil
}

// runWrk runs wrk on the load CPUs; it returns the report and wrk's own CPU
// time in seconds.
func runWrk(ctx context.Context, e *env, args []string) (bench.WrkReport, float64, error) {
	argv := append([]string{e.bins["wrk"]}, args...)
	if e.o.loadCPU != "" {
		argv = append([]string{"taskset", "-c", e.o.loadCPU}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return bench.WrkReport{}, 0, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(string(out)))
	}
	r, err := bench.ParseWrk(string(out))
	return r, processCPU(cmd), err
}

// processCPU is the user+system time of a finished command (taskset execs
// the program, so it is the program's own), in seconds.
func processCPU(cmd *exec.Cmd) float64 {
	if cmd.ProcessState == nil {
		return math.NaN()
	}
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

func iperfMeasure(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
	port, pid, backend, err := e.endpoint(target, "tcp")
	if err != nil {
		return nil, nil, err
	}
	argv := []string{e.bins["iperf3"], "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", secs(e.o.duration), "-O", "1", "-J"}
	if e.o.loadCPU != "" {
		argv = append([]string{"taskset", "-c", e.o.loadCPU}, argv...)
	}
	m := startMeter(pid, backend)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.Output()
	u := m.stop()
	r, perr := bench.ParseIperf3(out)
	if perr != nil {
		if err != nil {
			return nil, nil, fmt.Errorf("%v (%v)", perr, err)
		}
		return nil, nil, perr
	}
	v := bench.Round{"gbps": r.ReceivedBitsPerSec / 1e9, "retrans": float64(r.Retransmits)}
	// The meter spans the whole iperf3 run (connection, the omitted first
	// second, the measured seconds): MiB over that time at the measured rate.
	u.round(v, processCPU(cmd), "mib", r.ReceivedBitsPerSec/8/(1<<20)*u.wall)
	return v, nil, nil
}

// scalingMeasure starts a fresh instance of proxy on the machine's last
// cores CPUs with that many threads, and measures it as http-keepalive.
func scalingMeasure(ctx context.Context, e *env, proxy string, cores, conns int) (bench.Round, []string, error) {
	k := e.kind(proxy)
	if k == nil {
		return nil, nil, fmt.Errorf("no proxy %q", proxy)
	}
	inst, err := e.startInstance(ctx, *k, fmt.Sprintf("scale%d-%s", cores, strconv.FormatInt(time.Now().UnixNano(), 36)),
		instOpts{cpu: scalingCPUs(e, cores), threads: cores})
	if err != nil {
		return nil, nil, err
	}
	defer inst.p.stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/", inst.ports.HTTP)
	return wrkRound(ctx, e, url, false, conns, inst.p.pid(), e.backend.pid())
}

// scalingCPUs is where a proxy on n cores runs: on one core, the proxy CPU
// of every other scenario; on more, the machine's last n CPUs.
func scalingCPUs(e *env, n int) string {
	if n == 1 && e.o.proxyCPU != "" {
		return e.o.proxyCPU
	}
	return lastCPUs(n)
}

// lastCPUs is the CPU list of the machine's last n CPUs ("1", "0-1").
func lastCPUs(n int) string {
	m := runtime.NumCPU()
	if n >= m {
		return fmt.Sprintf("0-%d", m-1)
	}
	if n == 1 {
		return strconv.Itoa(m - 1)
	}
	return fmt.Sprintf("%d-%d", m-n, m-1)
}

// memoryMeasure starts a fresh instance of the proxy, opens e.o.idleConns
// idle connections to its HTTP listener and reports the RSS they cost.
func memoryMeasure(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
	kind := e.kind(target)
	if kind == nil {
		return nil, nil, fmt.Errorf("no proxy %q", target)
	}
	inst, err := e.startInstance(ctx, *kind, "mem-"+strconv.FormatInt(time.Now().UnixNano(), 36), instOpts{})
	if err != nil {
		return nil, nil, err
	}
	defer inst.p.stop()
	if err := oneRequest(inst.ports.HTTP); err != nil {
		return nil, nil, fmt.Errorf("warm-up request: %w", err)
	}
	time.Sleep(time.Second)
	pid := inst.p.pid()
	before, err := rssBytes(pid)
	if err != nil {
		return nil, nil, err
	}
	sockBefore := socketCount(pid)

	conns, err := openIdle(ctx, addr(inst.ports.HTTP), e.o.idleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return nil, nil, err
	}
	// Let the proxy accept everything in its backlog; read while the
	// connections are younger than every proxy's request-head timeout (10 s).
	time.Sleep(2 * time.Second)
	after, err := rssBytes(pid)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w (exited? %s)", target, err, inst.p.tail())
	}
	accepted := socketCount(pid) - sockBefore
	n := float64(len(conns))
	v := bench.Round{"bytes_per_conn": float64(after-before) / n, "rss_delta_mib": float64(after-before) / (1 << 20), "accepted": float64(accepted)}
	var notes []string
	if float64(accepted) < 0.98*n {
		notes = append(notes, fmt.Sprintf("the proxy held only %d of %d connections", accepted, len(conns)))
	}
	return v, notes, nil
}

// oneRequest sends one HTTP/1.1 request and reads the response head.
func oneRequest(port int) error {
	c, err := net.DialTimeout("tcp", addr(port), 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(line, " 200 ") {
		return fmt.Errorf("answer %q", strings.TrimSpace(line))
	}
	return nil
}

// openIdle opens n TCP connections to a, 64 at a time, and sends nothing.
func openIdle(ctx context.Context, a string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	d := net.Dialer{Timeout: 10 * time.Second}
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := d.DialContext(ctx, "tcp", a)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					continue
				}
				conns[i] = c
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	var out []net.Conn
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, firstErr
}
