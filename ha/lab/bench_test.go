package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The failover benchmark: kill -9 of the active device, measured from the
// kill to the first client connection the other device answers, for Fulcrum
// and keepalived (VRRPv3, unicast on the same LAN path) in the same
// namespaces and the same run; then a quiet-period check under load (no
// false failover while the active device's cores are saturated). Opt-in:
//
//	FULCRUM_HA_BENCH=1 go test -run 'Bench' -v -timeout 30m ./ha/lab/
//
// FULCRUM_HA_BENCH_OUT=FILE also writes the table as Markdown.

func benchEnabled(t *testing.T) {
	t.Helper()
	if os.Getenv("FULCRUM_HA_BENCH") == "" {
		t.Skip("failover benchmark: set FULCRUM_HA_BENCH=1 (about 5 minutes, needs keepalived)")
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("failover benchmark: keepalived is not installed (apt-get install keepalived)")
	}
}

// keepalivedConf is a VRRPv3 instance for device n with advert interval
// advert, unicast to the other device on the LAN, holding the VIP.
func (l *lab) keepalivedConf(n string, advert time.Duration) string {
	other := map[string]string{"a": "b", "b": "a"}[n]
	prio := map[string]int{"a": 200, "b": 100}[n]
	path := filepath.Join(l.dir, "keepalived-"+n+".conf")
	conf := fmt.Sprintf(`global_defs {
  router_id %s
  vrrp_version 3
  script_user root
  enable_script_security
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int %g
  unicast_src_ip %s
  unicast_peer {
    %s
  }
  virtual_ipaddress {
    %s/24 dev eth0
  }
}
`, n, prio, advert.Seconds(), lanAddr[n], lanAddr[other], vip)
	must(l.t, os.WriteFile(path, []byte(conf), 0o600))
	return path
}

// startKeepalived runs keepalived (VRRP only, in the foreground) for
// device n, with a name server on 0.0.0.0:80 standing in for the service.
func (l *lab) startKeepalived(n string, advert time.Duration) {
	t := l.t
	d := l.devs[n]
	ln, err := d.ns.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", vipPort))
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go serveName(ln, n)
	conf := l.keepalivedConf(n, advert)
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	must(t, err)
	d.cmd = d.ns.Command(context.Background(), "keepalived", "-n", "-l", "-D", "-P", "-f", conf,
		"-p", filepath.Join(l.dir, "ka-"+n+".pid"), "-r", filepath.Join(l.dir, "ka-vrrp-"+n+".pid"))
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, d.cmd.Start())
	logf.Close()
	d.waited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(d.cmd, d.waited)
	l.started = append(l.started, d)
}

type contender struct {
	name     string
	keepaliv time.Duration // keepalived advert interval; 0: Fulcrum
	fulcrum  settings
	runs     int
}

func (c contender) String() string {
	if c.keepaliv > 0 {
		return fmt.Sprintf("keepalived VRRPv3 advert_int %gs", c.keepaliv.Seconds())
	}
	return fmt.Sprintf("Fulcrum interval %s dead_time %s", c.fulcrum.interval, c.fulcrum.deadTime)
}

// oneKill builds a fresh lab, starts the contender on both devices, waits
// for a to serve, kills a with SIGKILL (its whole process group) and
// returns the time to the first connection b answered and how many probes
// in between got no answer or a's.
func oneKill(t *testing.T, prefix string, c contender) (took time.Duration, failed int, ok bool) {
	var res struct {
		took   time.Duration
		failed int
		ok     bool
	}
	t.Run(prefix, func(t *testing.T) {
		l := newLab(t, prefix, c.fulcrum, "")
		if c.keepaliv > 0 {
			l.startKeepalived("a", c.keepaliv)
			time.Sleep(50 * time.Millisecond)
			l.startKeepalived("b", c.keepaliv)
		} else {
			l.start("a")
			l.start("b")
		}
		p := l.startProber()
		l.waitActive(p, "a", 15*time.Second)
		time.Sleep(300 * time.Millisecond) // settled: b has heard a for a while
		killed := time.Now()
		l.signal("a", syscall.SIGKILL)
		at, found := p.first("b", killed, 20*time.Second)
		if !found {
			t.Errorf("%s: b never answered after the kill", c)
			return
		}
		res.took, res.ok = at.Sub(killed), true
		got := p.between(killed, at)
		res.failed = got[""] + got["a"]
	})
	return res.took, res.failed, res.ok
}

type summary struct {
	c      contender
	times  []time.Duration
	failed []int
}

func (s *summary) stats() (min, med, max time.Duration) {
	ts := slices.Clone(s.times)
	slices.Sort(ts)
	if len(ts) == 0 {
		return
	}
	return ts[0], ts[len(ts)/2], ts[len(ts)-1]
}

var contenders = []contender{
	{name: "fulcrum-default", fulcrum: settings{100 * time.Millisecond, 3 * time.Second}, runs: 3},
	{name: "fulcrum-tuned", fulcrum: settings{10 * time.Millisecond, 50 * time.Millisecond}, runs: 10},
	{name: "keepalived-1s", keepaliv: time.Second, fulcrum: ciSettings, runs: 3},
	{name: "keepalived-100ms", keepaliv: 100 * time.Millisecond, fulcrum: ciSettings, runs: 5},
	{name: "keepalived-20ms", keepaliv: 20 * time.Millisecond, fulcrum: ciSettings, runs: 10},
}

func TestBenchFailoverKill(t *testing.T) {
	benchEnabled(t)
	var sums []*summary
	for ci, c := range contenders {
		s := &summary{c: c}
		for i := 0; i < c.runs; i++ {
			took, failed, ok := oneKill(t, fmt.Sprintf("b%d%d", ci, i), c)
			if ok {
				s.times = append(s.times, took)
				s.failed = append(s.failed, failed)
			}
		}
		sums = append(sums, s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| kill -9 of the active | runs | min | median | max | probes unanswered (median) |\n|---|---|---|---|---|---|\n")
	for _, s := range sums {
		lo, med, hi := s.stats()
		f := slices.Clone(s.failed)
		slices.Sort(f)
		fm := 0
		if len(f) > 0 {
			fm = f[len(f)/2]
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d |\n", s.c, len(s.times), ms(lo), ms(med), ms(hi), fm)
	}
	t.Logf("probes every %s, connect+answer timeout %s\n%s", probeEvery, probeTimeout, b.String())
	writeOut(t, b.String())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }

func writeOut(t *testing.T, s string) {
	if out := os.Getenv("FULCRUM_HA_BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		must(t, err)
		fmt.Fprintf(f, "\n%s\n%s", time.Now().UTC().Format(time.RFC3339), s)
		f.Close()
	}
}

// hog starts n busy loops in namespace ns (processes of their own, at the
// default priority) and returns a stop function.
func hog(t *testing.T, l *lab, dev string, n int) func() {
	var cmds []*exec.Cmd
	for i := 0; i < n; i++ {
		c := l.devs[dev].ns.Command(context.Background(), "sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		must(t, c.Start())
		cmds = append(cmds, c)
	}
	return func() {
		for _, c := range cmds {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			c.Wait()
		}
	}
}

// flood opens connections to the VIP from the client as fast as workers
// goroutines can until ctx ends; it returns how many completed.
func flood(ctx context.Context, l *lab, workers int) *atomic.Int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	addr := fmt.Sprintf("%s:%d", vip, vipPort)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for ctx.Err() == nil {
				dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				c, err := l.client.Dial(dctx, &net.Dialer{}, "tcp", addr)
				cancel()
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(200 * time.Millisecond))
				io.ReadAtLeast(c, buf, 2)
				c.Close()
				n.Add(1)
			}
		}()
	}
	go func() { <-ctx.Done(); wg.Wait() }()
	return &n
}

// gcCount reads go_gc_duration_seconds_count from device n's metrics.
func (l *lab) gcCount(n string) int64 {
	resp, err := l.devs[n].api.Get("http://127.0.0.1:9090/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_duration_seconds_count "); ok {
			var x int64
			fmt.Sscan(v, &x)
			return x
		}
	}
	return -1
}

// TestBenchNoFalseFailoverUnderLoad: the tuned settings of both, for
// quiet seconds each, with the active device's namespace running four busy
// loops (two per core of this machine) and the client flooding the virtual
// server with connections; Fulcrum also runs with GOGC=5 so it collects
// garbage all the time. A false failover is b taking the group (Fulcrum)
// or entering MASTER state (keepalived) while a is alive.
func TestBenchNoFalseFailoverUnderLoad(t *testing.T) {
	benchEnabled(t)
	quiet := 30 * time.Second
	var b strings.Builder
	fmt.Fprintf(&b, "| under load (%s, 4 busy loops + connection flood on the active) | false failovers | connections served | GC cycles on the active |\n|---|---|---|---|\n", quiet)
	for i, c := range []contender{contenders[1], contenders[4]} {
		t.Run(fmt.Sprintf("load%d", i), func(t *testing.T) {
			l := newLab(t, fmt.Sprintf("bl%d", i), c.fulcrum, "")
			if c.keepaliv > 0 {
				l.startKeepalived("a", c.keepaliv)
				time.Sleep(50 * time.Millisecond)
				l.startKeepalived("b", c.keepaliv)
			} else {
				t.Setenv("GOGC", "5")
				l.start("a")
				os.Unsetenv("GOGC")
				l.start("b")
			}
			p := l.startProber()
			l.waitActive(p, "a", 15*time.Second)
			time.Sleep(300 * time.Millisecond)
			gc0 := int64(0)
			if c.keepaliv == 0 {
				gc0 = l.gcCount("a")
			}
			stop := hog(t, l, "a", 4)
			ctx, cancel := context.WithTimeout(context.Background(), quiet)
			n := flood(ctx, l, 8)
			from := time.Now()
			<-ctx.Done()
			cancel()
			stop()
			got := p.between(from, time.Now())
			falseFO := 0
			gc := "n/a"
			if c.keepaliv > 0 {
				falseFO = strings.Count(l.log("b"), "Entering MASTER STATE")
			} else {
				falseFO = int(l.group("b").Failovers)
				gc = fmt.Sprint(l.gcCount("a") - gc0)
			}
			if got["b"] > 0 && falseFO == 0 {
				falseFO = 1 // b answered: it took over at least once
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %s |\n", c, falseFO, n.Load(), gc)
		})
	}
	t.Logf("\n%s", b.String())
	writeOut(t, b.String())
}

// runLoad runs the load generator in the client namespace against the VIP.
func (l *lab) runLoad(d time.Duration, workers int) (loadResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := l.client.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadgenEnv+"="+fmt.Sprintf("%s:%d", vip, vipPort),
		"LOADGEN_DURATION="+d.String(), fmt.Sprintf("LOADGEN_WORKERS=%d", workers))
	out, err := cmd.Output()
	var r loadResult
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	return r, err
}

// TestBenchMirroringCost: new connections per second through the active
// device when each one makes a new source-address record, with the
// profile mirrored and not, alternating rounds in one run; the mirror lag
// sampled every 50 ms during the mirrored rounds.
func TestBenchMirroringCost(t *testing.T) {
	benchEnabled(t)
	const rounds, dur, workers = 3, 10 * time.Second, 16
	rate := map[persistMode][]float64{}
	var maxLag, lagSamples, lagSum uint64
	var drain []time.Duration
	for r := 0; r < rounds; r++ {
		for _, mode := range []persistMode{persistLocal, persistMirrored} {
			t.Run(fmt.Sprintf("r%d-m%d", r, mode), func(t *testing.T) {
				l := newLabWith(t, fmt.Sprintf("bm%d%d", r, mode), ciSettings, "", mode)
				l.start("a")
				l.start("b")
				p := l.startProber()
				l.waitActive(p, "a", 5*time.Second)
				p.stop()
				stop := make(chan struct{})
				var wg sync.WaitGroup
				if mode == persistMirrored {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tk := time.NewTicker(50 * time.Millisecond)
						defer tk.Stop()
						for {
							select {
							case <-stop:
								return
							case <-tk.C:
							}
							if s, err := l.mirrorStatus("a"); err == nil {
								maxLag = max(maxLag, s.Lag)
								lagSum += s.Lag
								lagSamples++
							}
						}
					}()
				}
				res, err := l.runLoad(dur, workers)
				close(stop)
				wg.Wait()
				must(t, err)
				rate[mode] = append(rate[mode], float64(res.Connections)/res.Seconds)
				if mode == persistMirrored {
					ended := time.Now()
					if eventually(30*time.Second, func() bool {
						sa, e1 := l.mirrorStatus("a")
						sb, e2 := l.mirrorStatus("b")
						return e1 == nil && e2 == nil && sa.Lag == 0 && sb.Received >= res.Connections
					}) {
						drain = append(drain, time.Since(ended))
					} else {
						t.Errorf("the peer did not receive every record within 30s of the load's end")
					}
				}
				if res.Failed > 0 {
					t.Logf("%d of %d connections failed, e.g. %q", res.Failed, res.Failed+res.Connections, res.Errors)
				}
				if g := l.group("b"); g.Failovers > 0 {
					t.Logf("b took the group over %d times during the load: %+v", g.Failovers, g)
				}
			})
		}
	}
	med := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		if len(s) == 0 {
			return 0
		}
		return s[len(s)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| new connections/s, each a new source-address record (%d workers, %s × %d rounds) | median | rounds |\n|---|---|---|\n", workers, dur, rounds)
	fmt.Fprintf(&b, "| persistence, not mirrored | %.0f | %v |\n", med(rate[persistLocal]), roundAll(rate[persistLocal]))
	fmt.Fprintf(&b, "| persistence mirrored to the peer | %.0f | %v |\n", med(rate[persistMirrored]), roundAll(rate[persistMirrored]))
	mean := 0.0
	if lagSamples > 0 {
		mean = float64(lagSum) / float64(lagSamples)
	}
	fmt.Fprintf(&b, "\nmirrored / not mirrored: %.2f; mirror lag during load: mean %.1f, max %d messages (sampled every 50 ms); peer caught up %v after the load ended\n",
		med(rate[persistMirrored])/med(rate[persistLocal]), mean, maxLag, drain)
	t.Logf("\n%s", b.String())
	writeOut(t, b.String())
}

func roundAll(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

// failoverEvent makes device a give up tg1; it returns when it acted.
type failoverEvent struct {
	name string
	do   func(t *testing.T, l *lab)
}

var failoverEvents = []failoverEvent{
	{"kill -9 of the active", func(t *testing.T, l *lab) { l.signal("a", syscall.SIGKILL) }},
	{"SIGSTOP of the active", func(t *testing.T, l *lab) { l.signal("a", syscall.SIGSTOP) }},
	{"every HA path cut (a's LAN port and the direct link)", func(t *testing.T, l *lab) {
		setLink(t, l.devs["a"].ns, "ha1", false)
		setLink(t, l.lan, "pa", false)
	}},
	{"operator: fulcrum failover tg1 (run on the active)", func(t *testing.T, l *lab) {
		go l.failover("a", "b")
	}},
	{"SIGTERM of the active (hand-over)", func(t *testing.T, l *lab) { l.signal("a", syscall.SIGTERM) }},
}

// TestBenchFailoverEvents: Fulcrum's tuned setting, every way a traffic
// group leaves the active device, repeated: when b decided (its API's
// last change) and when the client's first connection reached b, after
// the event.
func TestBenchFailoverEvents(t *testing.T) {
	benchEnabled(t)
	const runs = 5
	tuned := contenders[1].fulcrum
	var b strings.Builder
	fmt.Fprintf(&b, "| Fulcrum `interval: %s`, `dead_time: %s`, %d runs each | b decided (median, max) | first request served by b (median, max) | probes unanswered (median) |\n|---|---|---|---|\n",
		tuned.interval, tuned.deadTime, runs)
	for ei, ev := range failoverEvents {
		var decided, served []time.Duration
		var failed []int
		for r := 0; r < runs; r++ {
			t.Run(fmt.Sprintf("e%d-%d", ei, r), func(t *testing.T) {
				l := newLab(t, fmt.Sprintf("be%d%d", ei, r), tuned, "")
				l.start("a")
				l.start("b")
				p := l.startProber()
				l.waitActive(p, "a", 15*time.Second)
				time.Sleep(300 * time.Millisecond)
				t0 := time.Now()
				ev.do(t, l)
				at, ok := p.first("b", t0, 10*time.Second)
				if !ok {
					t.Errorf("%s: b never served", ev.name)
					return
				}
				served = append(served, at.Sub(t0))
				if g := l.group("b"); !g.Changed.IsZero() {
					decided = append(decided, g.Changed.Sub(t0))
				}
				got := p.between(t0, at)
				failed = append(failed, got[""]+got["a"])
			})
		}
		med := func(ds []time.Duration) (time.Duration, time.Duration) {
			s := slices.Clone(ds)
			slices.Sort(s)
			if len(s) == 0 {
				return 0, 0
			}
			return s[len(s)/2], s[len(s)-1]
		}
		dm, dx := med(decided)
		sm, sx := med(served)
		f := slices.Clone(failed)
		slices.Sort(f)
		fm := 0
		if len(f) > 0 {
			fm = f[len(f)/2]
		}
		fmt.Fprintf(&b, "| %s | %s, %s | %s, %s | %d |\n", ev.name, ms(dm), ms(dx), ms(sm), ms(sx), fm)
	}
	t.Logf("\n%s", b.String())
	writeOut(t, b.String())
}
