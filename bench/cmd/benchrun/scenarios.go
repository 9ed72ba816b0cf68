package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os/exec"
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
}

var (
	mRPS   = bench.Metric{Key: "rps", Label: "Requests/s", Unit: "req/s"}
	mConns = bench.Metric{Key: "rps", Label: "Connections/s", Unit: "conn/s"}
	mP50   = bench.Metric{Key: "p50_us", Label: "p50", Unit: "µs", LowerIsBetter: true}
	mP99   = bench.Metric{Key: "p99_us", Label: "p99", Unit: "µs", LowerIsBetter: true}
	mCPU   = bench.Metric{Key: "cpu_pct", Label: "Proxy CPU", Unit: "%"}
	mGbps  = bench.Metric{Key: "gbps", Label: "Throughput", Unit: "Gbit/s"}
)

var httpTargets = []string{bench.Direct, bench.Fulcrum, bench.HAProxy, bench.Nginx, bench.Caddy}

func scenarios(o options) []scenario {
	c := o.connections
	d := o.duration
	return []scenario{
		{Scenario: bench.Scenario{ID: "http-keepalive", Title: "1. HTTP keep-alive, small body",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency, GET / (100-byte body), keep-alive on both sides.", c, d),
			Metrics: []bench.Metric{mRPS, mP50, mP99, mCPU}},
			targets: httpTargets, measure: wrkMeasure("http", "/", false, c)},
		{Scenario: bench.Scenario{ID: "http-1mib", Title: "1b. HTTP keep-alive, 1 MiB body",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency, GET /1m (1 MiB file, sendfile at the backend).", c/4, d),
			Metrics: []bench.Metric{mGbps, mRPS, mP99, mCPU}},
			targets: httpTargets, measure: wrkMeasure("http", "/1m", false, c/4)},
		{Scenario: bench.Scenario{ID: "http-close", Title: "2. New connections per second (HTTP, Connection: close)",
			How:     fmt.Sprintf("wrk -t1 -c%d -d%s --latency -H 'Connection: close', GET /: one request per client connection (server-side connections may be reused, as each proxy does by default).", c, d),
			Metrics: []bench.Metric{mConns, mP50, mP99, mCPU}},
			targets: httpTargets, measure: wrkMeasure("http", "/", true, c)},
		{Scenario: bench.Scenario{ID: "tcp-throughput", Title: "3. L4 TCP throughput",
			How:     fmt.Sprintf("iperf3 -c -t %s -O 1 -J, one stream, client → proxy → iperf3 server. Fulcrum: a `tcp` virtual; HAProxy `mode tcp` without and with splice; nginx `stream`.", secs(d)),
			Metrics: []bench.Metric{mGbps, {Key: "retrans", Label: "Retransmits", Unit: ""}, mCPU}},
			targets: []string{bench.Direct, bench.Fulcrum, bench.HAProxy, bench.HAProxySplice, bench.Nginx, bench.Caddy},
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
			Metrics: []bench.Metric{mRPS, mP50, mP99, mCPU}},
			targets: httpTargets, measure: wrkMeasure("https", "/", false, c)},
		{Scenario: bench.Scenario{ID: "tls-handshake", Title: "5b. TLS handshakes per second (Connection: close)",
			How:     ("As 5 with -H 'Connection: close': one full TLS handshake per request (wrk does not resume sessions)."),
			Metrics: []bench.Metric{{Key: "rps", Label: "Handshakes/s", Unit: "conn/s"}, mP50, mP99, mCPU}},
			targets: httpTargets, measure: wrkMeasure("https", "/", true, c)},
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
				if len(o.targets) > 0 && !o.targets[t] {
					continue
				}
				row := &bench.Row{Target: t}
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
	if why := e.unavailable[target]; why != "" {
		return why
	}
	if target == bench.HAProxySplice && e.unavailable[bench.HAProxy] != "" {
		return e.unavailable[bench.HAProxy]
	}
	return ""
}

// endpoint returns the port of target for a protocol ("http", "https", "tcp")
// and the pid whose CPU time is charged to it (0 for direct).
func (e *env) endpoint(target, proto string) (port, pid int, err error) {
	if target == bench.Direct {
		switch proto {
		case "http":
			return e.base.Backend, 0, nil
		case "https":
			return e.base.BackendTLS, 0, nil
		case "tcp":
			return e.base.Iperf, 0, nil
		}
	}
	name := target
	if target == bench.HAProxySplice {
		name = bench.HAProxy
	}
	inst := e.proxies[name]
	if inst == nil {
		return 0, 0, fmt.Errorf("%s is not running", name)
	}
	if inst.p.exited() {
		return 0, 0, fmt.Errorf("%s exited: %v: %s", name, inst.p.err, inst.p.tail())
	}
	pid = inst.p.pid()
	switch {
	case proto == "http":
		return inst.ports.HTTP, pid, nil
	case proto == "https":
		return inst.ports.HTTPS, pid, nil
	case proto == "tcp" && target == bench.HAProxySplice:
		return inst.ports.TCPSplice, pid, nil
	case proto == "tcp":
		return inst.ports.TCP, pid, nil
	}
	return 0, 0, fmt.Errorf("unknown protocol %q", proto)
}

// cpuMeter measures the CPU share used by a process tree over a measurement.
type cpuMeter struct {
	pid   int
	ticks int64
	start time.Time
}

func startCPU(pid int) cpuMeter {
	if pid == 0 {
		return cpuMeter{}
	}
	return cpuMeter{pid: pid, ticks: cpuTicks(pid), start: time.Now()}
}

// pct is the CPU used since start, in percent of one CPU (NaN for direct).
func (m cpuMeter) pct() float64 {
	if m.pid == 0 {
		return math.NaN()
	}
	el := time.Since(m.start).Seconds()
	return float64(cpuTicks(m.pid)-m.ticks) / 100 / el * 100
}

func wrkMeasure(proto, path string, closeConn bool, conns int) func(context.Context, *env, string) (bench.Round, []string, error) {
	return func(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
		port, pid, err := e.endpoint(target, proto)
		if err != nil {
			return nil, nil, err
		}
		url := fmt.Sprintf("%s://127.0.0.1:%d%s", proto, port, path)
		args := []string{"-t1", fmt.Sprintf("-c%d", conns), "--latency"}
		if closeConn {
			args = append(args, "-H", "Connection: close")
		}
		// Warm-up (connections, caches, Go heap), not recorded.
		if _, err := runWrk(ctx, e, append(args, "-d"+secs(e.o.warmup)+"s", url)); err != nil {
			return nil, nil, fmt.Errorf("warm-up: %w", err)
		}
		cpu := startCPU(pid)
		r, err := runWrk(ctx, e, append(args, "-d"+secs(e.o.duration)+"s", url))
		if err != nil {
			return nil, nil, err
		}
		v := bench.Round{"rps": r.RPS, "p50_us": r.P50US, "p99_us": r.P99US, "cpu_pct": cpu.pct(),
			"gbps": r.TransferBytes * 8 / 1e9}
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
}

func runWrk(ctx context.Context, e *env, args []string) (bench.WrkReport, error) {
	argv := append([]string{e.bins["wrk"]}, args...)
	if e.o.loadCPU != "" {
		argv = append([]string{"taskset", "-c", e.o.loadCPU}, argv...)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return bench.WrkReport{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return bench.ParseWrk(string(out))
}

func iperfMeasure(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
	port, pid, err := e.endpoint(target, "tcp")
	if err != nil {
		return nil, nil, err
	}
	argv := []string{e.bins["iperf3"], "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", secs(e.o.duration), "-O", "1", "-J"}
	if e.o.loadCPU != "" {
		argv = append([]string{"taskset", "-c", e.o.loadCPU}, argv...)
	}
	cpu := startCPU(pid)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
	pct := cpu.pct()
	r, perr := bench.ParseIperf3(out)
	if perr != nil {
		if err != nil {
			return nil, nil, fmt.Errorf("%v (%v)", perr, err)
		}
		return nil, nil, perr
	}
	return bench.Round{"gbps": r.ReceivedBitsPerSec / 1e9, "retrans": float64(r.Retransmits), "cpu_pct": pct}, nil, nil
}

// memoryMeasure starts a fresh instance of the proxy, opens e.o.idleConns
// idle connections to its HTTP listener and reports the RSS they cost.
func memoryMeasure(ctx context.Context, e *env, target string) (bench.Round, []string, error) {
	var kind *proxyKind
	for i := range proxyKinds {
		if proxyKinds[i].name == target {
			kind = &proxyKinds[i]
		}
	}
	if kind == nil {
		return nil, nil, fmt.Errorf("no proxy %q", target)
	}
	inst, err := e.startInstance(ctx, *kind, "mem-"+strconv.FormatInt(time.Now().UnixNano(), 36))
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
