// Command benchrun runs Fulcrum's side-by-side benchmark: it starts a backend
// (nginx, iperf3), Fulcrum, HAProxy, nginx and Caddy on loopback with the
// configurations in bench/configs, drives every scenario against every proxy
// and against the backend directly, round after round, and writes the
// Markdown report, a JSON file of every sample and a PNG chart.
//
// It is normally started by bench/run, which installs the tools and builds
// Fulcrum first:
//
//	bench/run            # 3 rounds × 10 s, writes bench/results/latest.{md,png}
//	bench/run -quick     # 1 round × 3 s, writes bench/results/quick.{md,png}
//
// Run directly: go run ./bench/cmd/benchrun -fulcrum /path/to/fulcrum [flags].
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/bench"
)

type options struct {
	quick       bool
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	connections int
	idleConns   int
	fulcrum     string
	configs     string
	out         string
	proxyCPU    string
	loadCPU     string
	scenarios   map[string]bool // empty = all
	targets     map[string]bool // empty = all
	cores       []int           // proxy core counts of the scaling scenario
	wanTest     string          // engine test binary for the wan scenario
}

// wants reports whether target was selected with -targets. A scaling row
// ("fulcrum-2cpu") is selected by its own name or by its proxy's.
func (o options) wants(target string) bool {
	if len(o.targets) == 0 || o.targets[target] {
		return true
	}
	if i := strings.LastIndexByte(target, '-'); i > 0 && strings.HasSuffix(target, "cpu") {
		return o.targets[target[:i]]
	}
	return false
}

func main() {
	var o options
	var scen, targ, cores string
	flag.BoolVar(&o.quick, "quick", false, "development mode: 1 round, 3 s per measurement, 2,000 idle connections; writes quick.md/quick.png")
	flag.IntVar(&o.rounds, "rounds", 0, "rounds (default 3, or 1 with -quick)")
	flag.DurationVar(&o.duration, "duration", 0, "length of each measurement (default 10s, or 3s with -quick)")
	flag.IntVar(&o.connections, "c", 64, "concurrent connections for the wrk scenarios")
	flag.IntVar(&o.idleConns, "idle-conns", 0, "idle client connections for the memory scenario (default 10000, or 2000 with -quick)")
	flag.StringVar(&o.fulcrum, "fulcrum", "", "path of the fulcrum binary to benchmark (required)")
	flag.StringVar(&o.configs, "configs", "bench/configs", "directory of the configuration templates")
	flag.StringVar(&o.out, "out", "bench/results", "directory for the reports")
	flag.StringVar(&o.proxyCPU, "proxy-cpu", "", "CPU list for the proxy under test (default: the last CPU)")
	flag.StringVar(&o.loadCPU, "load-cpu", "", "CPU list for the load generator and backends (default: all other CPUs)")
	flag.StringVar(&scen, "scenarios", "", "comma-separated scenario IDs to run (default all): "+strings.Join(scenarioIDs(), ","))
	flag.StringVar(&targ, "targets", "", "comma-separated targets to run (default all): direct,fulcrum,fulcrum-fastl4,haproxy,haproxy-splice,nginx,caddy; "+
		"the scaling scenario's rows (fulcrum-2cpu, …) are selected by their proxy's name too")
	flag.StringVar(&o.wanTest, "wan-test", "", "engine test binary (go test -c ./engine) for the wan scenario; bench/run builds it")
	flag.StringVar(&cores, "cores", "1,2", "proxy core counts for the http-scaling scenario (GOMAXPROCS / HAProxy nbthread), comma-separated, ascending")
	flag.Parse()
	if o.fulcrum == "" {
		fmt.Fprintln(os.Stderr, "benchrun: -fulcrum is required (bench/run builds it)")
		os.Exit(2)
	}
	if o.rounds == 0 {
		o.rounds = 3
		if o.quick {
			o.rounds = 1
		}
	}
	if o.duration == 0 {
		o.duration = 10 * time.Second
		if o.quick {
			o.duration = 3 * time.Second
		}
	}
	o.warmup = time.Second
	if o.idleConns == 0 {
		o.idleConns = 10000
		if o.quick {
			o.idleConns = 2000
		}
	}
	o.scenarios, o.targets = set(scen), set(targ)
	for _, c := range strings.Split(cores, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || (len(o.cores) > 0 && n <= o.cores[len(o.cores)-1]) {
			fmt.Fprintf(os.Stderr, "benchrun: -cores %q: want ascending core counts such as 1,2\n", cores)
			os.Exit(2)
		}
		o.cores = append(o.cores, n)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func set(csv string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(csv, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(ctx context.Context, o options) error {
	var err error
	if o.fulcrum, err = filepath.Abs(o.fulcrum); err != nil {
		return err
	}
	if o.wanTest != "" {
		if o.wanTest, err = filepath.Abs(o.wanTest); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk is needed: %w (bench/run installs it)", err)
	}
	raiseNoFile()
	var capNote string
	// HAProxy will not start unless RLIMIT_NOFILE ≥ 2 × maxconn + 2 ×
	// maxpipes (64) + its listeners: cap the idle connections (for every
	// proxy alike) to fit.
	if lim := int(noFile()); 2*(o.idleConns+50)+128+300 > lim {
		n := (lim-128-300)/2 - 50
		n -= n % 100
		capNote = fmt.Sprintf("idle connections lowered from %d to %d for every proxy: RLIMIT_NOFILE is %d here (raising it needs CAP_SYS_RESOURCE) and HAProxy needs about two descriptors per allowed connection", o.idleConns, n, lim)
		logf("%s", capNote)
		o.idleConns = n
	}
	o.proxyCPU, o.loadCPU = cpuSplit(o.proxyCPU, o.loadCPU)

	dir, err := os.MkdirTemp("", "fulcrum-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf("work directory %s; proxies on CPU %s, load generator and backends on CPU %s", dir, o.proxyCPU, o.loadCPU)

	env, err := newEnv(ctx, o, dir)
	if err != nil {
		return err
	}
	defer env.close()

	res := &bench.Result{
		Started:  time.Now().Format("2006-01-02 15:04 MST"),
		Mode:     map[bool]string{true: "quick", false: "default"}[o.quick],
		Rounds:   o.rounds,
		Duration: o.duration.String(),
		Machine:  describeMachine(o, env),
	}
	res.Notes = append(res.Notes, "load average at start: "+loadavg())
	if capNote != "" {
		res.Notes = append(res.Notes, capNote)
	}
	if err := runScenarios(ctx, o, env, res); err != nil {
		return err
	}
	res.Notes = append(res.Notes, "load average at end: "+loadavg()+" (other work on the machine shows here; it adds noise to every target alike because rounds interleave the targets)")
	res.Notes = append(res.Notes, env.notes...)
	return writeResults(o, res)
}

func writeResults(o options, res *bench.Result) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	md := []byte(res.Markdown())
	js, err := jsonIndent(res)
	if err != nil {
		return err
	}
	var names []string
	if o.quick {
		names = []string{"quick"}
	} else {
		names = []string{time.Now().Format("2006-01-02"), "latest"}
	}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(o.out, n+".md"), md, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.out, n+".json"), js, 0o644); err != nil {
			return err
		}
	}
	png := filepath.Join(o.out, names[len(names)-1]+".png")
	f, err := os.Create(png)
	if err != nil {
		return err
	}
	if err := bench.WriteChart(f, res); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Print(string(md))
	logf("wrote %s.md, .json and %s", filepath.Join(o.out, names[0]), png)
	return nil
}
