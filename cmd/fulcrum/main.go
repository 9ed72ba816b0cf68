// Command fulcrum is the Fulcrum application delivery controller.
//
//	fulcrum run FILE         run a configuration (also: run -c FILE)
//	fulcrum check FILE       validate a configuration and list every problem
//	fulcrum demo             run the built-in demo (two backends, one HTTP virtual)
//	fulcrum show virtuals|pools|connections|persistence [-o json]
//	fulcrum member POOL ADDR enable|disable|force-offline
//	fulcrum reload           ask the running instance to re-read its file
//	fulcrum version          version, commit, Go version, build date
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/configsync"
	"github.com/fulcrum-adc/fulcrum/engine"
	"github.com/fulcrum-adc/fulcrum/examples"
	"github.com/fulcrum-adc/fulcrum/ha"
	"github.com/fulcrum-adc/fulcrum/ha/quorum"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"github.com/fulcrum-adc/fulcrum/internal/accesslog"
	"github.com/fulcrum-adc/fulcrum/mirror"
)

// Set at build time, e.g.
//
//	go build -ldflags "-X main.version=1.2.0 -X main.commit=$(git rev-parse HEAD) -X main.date=$(date -u +%FT%TZ)"
//
// Left empty, `fulcrum version` takes the commit and its time from the
// build information the Go toolchain embeds (vcs.revision, vcs.time).
var (
	version = "dev"
	commit  = ""
	date    = ""
)

const usage = `Fulcrum: a full-proxy application delivery controller.

Usage:
  fulcrum run FILE             run a configuration (SIGHUP reloads it, SIGUSR1 reopens logs)
  fulcrum check FILE           validate a configuration; exit 1 listing every problem
  fulcrum demo                 run the built-in demo configuration
  fulcrum show virtuals|pools|connections|persistence [-o json] [-api ADDR]
  fulcrum member POOL ADDR enable|disable|force-offline
  fulcrum reload               make the running instance re-read its configuration file
  fulcrum delete connection ID | persistence KEY   reset a connection, forget a persistence record
  fulcrum show devices|traffic-groups              the device group (high availability)
  fulcrum failover TRAFFIC_GROUP [-to DEVICE]      move a traffic group to another device
  fulcrum device-trust init|add|show -dir DIR      the keys of a device group (HA channels)
  fulcrum sync to-group [-force] | from-device DEV config sync between the devices
  fulcrum version              print version, commit, Go version and build date

"fulcrum help COMMAND" or "fulcrum COMMAND -h" describes a command.
`

const runUsage = `usage: fulcrum run FILE
       fulcrum run -c FILE

Runs the configuration in FILE (YAML, see docs/configuration.md) until
SIGINT or SIGTERM, then stops taking connections and waits up to 10s for
open ones to finish.

Signals:
  SIGHUP           reopen the access log file, then re-read FILE and apply
                   it; an invalid file is refused, every problem is logged
                   and the running configuration stays in force
  SIGUSR1          reopen the access log file only (for logrotate)
  SIGINT, SIGTERM  stop

Exit status: 0 after a clean stop, 1 if FILE is invalid or the start
failed, 2 on a usage error.

Flags:
`

const checkUsage = `usage: fulcrum check FILE
       fulcrum check -c FILE

Validates the configuration in FILE without running it and lists every
problem as FILE:LINE: path: message (F5: tmsh load sys config verify).
Notices (allowed but risky settings) are printed too.

Exit status: 0 if FILE is valid, 1 if it has problems, 2 on a usage error.

Flags:
`

const demoUsage = `usage: fulcrum demo

Runs the built-in demo configuration (examples/demo.yaml): two small web
servers on 127.0.0.1:8081 and :8082, an HTTP virtual server on
127.0.0.1:8080 balancing them, and the management API, metrics and
dashboard on 127.0.0.1:9090. Stops on SIGINT or SIGTERM (Ctrl-C).
`

const versionUsage = `usage: fulcrum version

Prints the version, the commit it was built from (with "(modified)" when
the work tree had changes), the build date and the Go version.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "show":
		return runShow(args[1:], stdout, stderr)
	case "member":
		return runMember(args[1:], stdout, stderr)
	case "reload":
		return runReload(args[1:], stdout, stderr)
	case "delete":
		return runDelete(args[1:], stdout, stderr)
	case "failover":
		return runFailover(args[1:], stdout, stderr)
	case "device-trust":
		return runDeviceTrust(args[1:], stdout, stderr)
	case "sync":
		return runSync(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		return cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			// "fulcrum help run" is "fulcrum run -h".
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "fulcrum: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// cmdFlags is a command's flag set whose help goes to stdout (it was asked
// for) and whose usage errors go to stderr.
type cmdFlags struct {
	*flag.FlagSet
	usage          string
	stdout, stderr io.Writer
}

func newCmdFlags(name, usage string, stdout, stderr io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed by parse, to the right stream
	return &cmdFlags{FlagSet: fs, usage: usage, stdout: stdout, stderr: stderr}
}

func (f *cmdFlags) printUsage(w io.Writer) {
	fmt.Fprint(w, f.usage)
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(f.stderr)
}

// parse parses args, flags and positional arguments in any order. done is
// true when the command must stop with code: after -h (0) or a usage
// error (2).
func (f *cmdFlags) parse(args []string) (pos []string, code int, done bool) {
	pos, err := parseInterleaved(f.FlagSet, args)
	if errors.Is(err, flag.ErrHelp) {
		f.printUsage(f.stdout)
		return nil, 0, true
	}
	if err != nil {
		f.printUsage(f.stderr) // the flag package has printed the problem
		return nil, 2, true
	}
	return pos, 0, false
}

// fail prints a usage problem and the command's usage to stderr; exit 2.
func (f *cmdFlags) fail(format string, a ...any) int {
	fmt.Fprintf(f.stderr, "fulcrum %s: "+format+"\n\n", append([]any{f.Name()}, a...)...)
	f.printUsage(f.stderr)
	return 2
}

// configFile parses "CMD FILE" or "CMD -c FILE" (either, not two different
// files) and returns the file.
func configFile(name, usage string, args []string, stdout, stderr io.Writer) (string, int, bool) {
	f := newCmdFlags(name, usage, stdout, stderr)
	path := f.String("c", "", "configuration `FILE` (YAML); the same as the FILE argument")
	pos, code, done := f.parse(args)
	if done {
		return "", code, false
	}
	switch {
	case len(pos) > 1:
		return "", f.fail("one configuration file, got %d: %s", len(pos), strings.Join(pos, " ")), false
	case len(pos) == 1 && *path != "" && pos[0] != *path:
		return "", f.fail("two configuration files (%s and -c %s): give one", pos[0], *path), false
	case len(pos) == 1:
		*path = pos[0]
	case *path == "":
		return "", f.fail("a configuration file is required"), false
	}
	return *path, 0, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, code, ok := configFile("check", checkUsage, args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	for _, n := range cfg.Notices {
		fmt.Fprintln(stdout, "notice:", n)
	}
	fmt.Fprintf(stdout, "%s: OK (%d virtual servers, %d pools)\n", path, len(cfg.Virtuals), len(cfg.Pools))
	return 0
}

func printConfigErrors(w io.Writer, err error) {
	var ce config.Errors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintln(w, e.Error())
		}
		fmt.Fprintf(w, "%d problem(s) found\n", len(ce))
		return
	}
	fmt.Fprintln(w, err)
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	path, code, ok := configFile("run", runUsage, args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	return serve(cfg, path, stdout, stderr, nil)
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	f := newCmdFlags("version", versionUsage, stdout, stderr)
	pos, code, done := f.parse(args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return f.fail("unexpected argument %q", pos[0])
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(version, commit, date, bi))
	return 0
}

// versionText renders `fulcrum version`. Values set with -ldflags win; the
// rest come from the build information (nil when there is none).
func versionText(ver, rev, built string, bi *debug.BuildInfo) string {
	modified := false
	if bi != nil {
		if ver == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version // go install module@version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				if built == "" {
					built = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	} else if modified {
		rev += " (modified)"
	}
	if built == "" {
		built = "unknown"
	}
	return fmt.Sprintf("fulcrum %s\ncommit:     %s\nbuilt:      %s\ngo version: %s %s/%s\n",
		ver, rev, built, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// serve runs cfg until SIGINT/SIGTERM; SIGHUP reloads path and reopens the
// access log, SIGUSR1 only reopens it. ready, if set, is called once
// everything listens.
func serve(cfg *config.Config, path string, stdout, stderr io.Writer, ready func()) int {
	// Take the signals first: a SIGHUP or SIGUSR1 (logrotate) arriving
	// while the listeners open must wait its turn, not kill the process
	// (their default action).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fulcrum: cannot start:", err)
		return 1
	}
	accessLog, accessDest, err := openAccessLog(cfg.Log, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fulcrum: cannot start:", err)
		return 1
	}
	if accessDest != nil {
		defer accessDest.Close()
	}
	var group *trust.Store
	var seed []byte
	if cfg.HAEnabled() {
		if group, err = loadTrust(cfg); err != nil {
			fmt.Fprintln(stderr, "fulcrum: cannot start:", err)
			return 1
		}
		seed = group.Secret("engine")
	}
	eng := engine.New(engine.Options{Log: log, AccessLog: accessLog, ConfigPath: path, SecretSeed: seed})
	if err := eng.Apply(cfg); err != nil {
		// Nothing was running before: say that the start failed, not that
		// a running configuration stays.
		fmt.Fprintln(stderr, "fulcrum: cannot start:", err)
		eng.Close(context.Background())
		return 1
	}
	// The device group starts after the engine (whose traffic-group
	// virtuals wait, not listening) and stops before it, so a shutdown
	// hands the traffic groups to a peer before connections drain.
	var haAPI api.HA
	var mirrorAPI api.Mirroring
	var syncAPI api.Sync
	haDone := make(chan struct{})
	haCtx, haStop := context.WithCancel(context.Background())
	defer haStop()
	if cfg.HAEnabled() {
		m, mir, syn, err := startHA(haCtx, cfg, group, eng, log, haDone)
		if err != nil {
			fmt.Fprintln(stderr, "fulcrum: cannot start:", err)
			eng.Close(context.Background())
			return 1
		}
		haAPI = m
		if syn != nil {
			syncAPI = syn
		}
		if mir != nil {
			mirrorAPI = mir
		}
	} else {
		close(haDone)
	}
	var mgmt *http.Server
	if cfg.Management.Address != config.ManagementOff {
		handler := api.NewHandler(eng, eng.Metrics(), api.Options{Token: cfg.Management.Token, Log: log, HA: haAPI, Mirroring: mirrorAPI, Sync: syncAPI,
			ISessions: func() any { return eng.ISessions() }, Tunnels: func() any { return eng.Tunnels() }})
		var addr net.Addr
		mgmt, addr, err = startManagement(cfg.Management.Address, handler, defaultMgmtLimits(cfg.Management.MaxConnections), log)
		if err != nil {
			fmt.Fprintf(stderr, "fulcrum: cannot start: management.address %s: %v\n", cfg.Management.Address, err)
			eng.Close(context.Background())
			return 1
		}
		log.Info("management API listening", "address", addr.String())
	}
	if ready != nil {
		ready()
	}
	// A syslog destination drops lines rather than stall traffic when the
	// daemon falls behind; say so in the log, once a minute at most.
	drops := time.NewTicker(time.Minute)
	defer drops.Stop()
	var reported uint64
loop:
	for {
		select {
		case <-drops.C:
			reported = reportDrops(accessDest, reported, log)
			continue
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				reopenLogs(accessDest, log)
			case syscall.SIGHUP:
				reopenLogs(accessDest, log)
				if err := eng.Reload(); err != nil {
					log.Error("reload refused; the running configuration stays", "err", err.Error())
				}
			default:
				break loop
			}
		}
	}
	reportDrops(accessDest, reported, log)
	haStop()
	<-haDone
	log.Info("shutting down: no new connections; waiting up to 10s for open ones")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if mgmt != nil {
		mgmt.Shutdown(ctx)
	}
	eng.Close(ctx)
	return 0
}

// loadTrust loads the device group's keys for this device.
func loadTrust(cfg *config.Config) (*trust.Store, error) {
	devices := make([]string, 0, len(cfg.Devices))
	for name := range cfg.Devices {
		devices = append(devices, name)
	}
	store, err := trust.Load(cfg.Local.TrustDir, cfg.Local.Device, devices)
	if err != nil {
		return nil, fmt.Errorf("device trust: %w", err)
	}
	return store, nil
}

// startHA opens the heartbeat sockets, the config-sync listener and, when
// this device has mirror addresses, the persistence-mirroring listeners,
// and runs them until ctx ends; done closes when the traffic groups are
// released and the rest has stopped.
func startHA(ctx context.Context, cfg *config.Config, group *trust.Store, eng *engine.Engine, log *slog.Logger, done chan<- struct{}) (*ha.Manager, *mirror.Mirror, *configsync.Syncer, error) {
	var mir *mirror.Mirror
	if len(cfg.Devices[cfg.Local.Device].MirrorAddresses) > 0 {
		var err error
		mir, err = mirror.New(mirror.Options{Config: cfg, Configs: eng, Table: eng.PersistTable(), Trust: group, Log: log})
		if err != nil {
			return nil, nil, nil, err
		}
		eng.Metrics().Registry().MustRegister(mir.Collector())
		eng.SetConnMirror(mir)
	}
	holds, err := newGroupHolds(cfg, eng.Config, log)
	if err != nil {
		if mir != nil {
			mir.Close()
		}
		return nil, nil, nil, err
	}
	if holds != nil {
		eng.SetFlowGuard(holds.guard)
	}
	var syn *configsync.Syncer
	var q *quorum.Node
	closeAll := func() {
		if mir != nil {
			mir.Close()
		}
		if syn != nil {
			syn.Close()
		}
		if q != nil {
			q.Close()
		}
		holds.close()
	}
	if len(cfg.Devices) >= config.QuorumDevices {
		// Three or more devices decide on raft, and config sync rides
		// the same log.
		peers := map[string]string{}
		for name, d := range cfg.Devices {
			peers[name] = net.JoinHostPort(d.HAAddresses[0], strconv.Itoa(cfg.Failover.Port))
		}
		q, err = quorum.New(quorum.Options{Self: cfg.Local.Device, Peers: peers, StateDir: stateDir(cfg, ".raft"),
			Trust: group, DeadTime: time.Duration(cfg.Failover.DeadTime), Log: log})
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
	}
	so := configsync.Options{Config: cfg, Engine: eng, Trust: group, Log: log}
	if q != nil {
		so.Quorum = q
	}
	if syn, err = configsync.New(so); err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	opts := ha.Options{Config: cfg, Engine: lifecycle{eng, mir, holds, log}, Auth: group, Log: log}
	if q != nil {
		opts.Quorum = q
	}
	m, err := ha.New(opts)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	eng.Metrics().Registry().MustRegister(m.Collector())
	rest, restStop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if mir != nil {
		wg.Add(1)
		go func() { defer wg.Done(); mir.Run(rest) }()
	}
	if syn != nil {
		wg.Add(1)
		go func() { defer wg.Done(); syn.Run(rest) }()
	}
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			log.Error("device group stopped", "err", err.Error())
		}
		restStop()
		wg.Wait()
		if q != nil {
			q.Close()
		}
		holds.close()
	}()
	return m, mir, syn, nil
}

// stateDir is where device-group state lives beside the configuration
// file (FILE.raft): raft's log, vote and snapshots.
func stateDir(cfg *config.Config, suffix string) string {
	return cfg.File + suffix
}

// lifecycle starts and stops a traffic group's virtual servers and its
// mirroring sender together. For a group with mirrored virtuals, the
// group's packets are held while it is not active here (so that none of
// them meets a socket that is not there yet and draws a reset); going
// standby, its mirrored connections are handed to the peer first.
type lifecycle struct {
	eng   *engine.Engine
	mir   *mirror.Mirror
	holds *groupHolds
	log   *slog.Logger
}

// handOverLimit bounds a planned handover of a group's mirrored
// connections (the HA loop waits for it).
const handOverLimit = 3 * time.Second

// holdSettle is how long a hold is given to catch every packet in flight.
const holdSettle = 2 * time.Millisecond

// HandOff hands group's mirrored connections to device to, which is
// about to take the group over: their packets are held from here on.
func (l lifecycle) HandOff(group, to string) {
	ctx, cancel := context.WithTimeout(context.Background(), handOverLimit)
	defer cancel()
	start := time.Now()
	// Before the hold, while members' responses still arrive: http
	// exchanges under way finish, so that their connections can move.
	busy := l.eng.Quiesce(ctx, group)
	if !l.holds.hold(group) {
		l.eng.Resume(group)
		return
	}
	// Packets already past the hold when it went in land first.
	time.Sleep(holdSettle)
	held := time.Now()
	moved, failed, err := l.eng.HandOver(ctx, group)
	if moved+failed > 0 {
		args := []any{"traffic_group", group, "to", to, "moved", moved, "not_moved", failed, "quiesced", held.Sub(start).String(),
			"busy_after_quiesce", busy, "held_for", time.Since(held).String()}
		if err != nil {
			args = append(args, "first_error", err.Error())
		}
		l.log.Info("mirrored connections handed over to the peer", args...)
	}
}

// Announced: group's addresses are announced from here; the connections
// taken over may send (their peers' acknowledgements come here now).
func (l lifecycle) Announced(group string) { l.eng.Announced(group) }

func (l lifecycle) SetTrafficGroupActive(group string, active bool) error {
	if !active && l.holds.hold(group) {
		// Released with no one to hand to: a peer may already continue
		// these connections from their mirror, so this device lets go of
		// them without a word (no FIN, no reset, ever).
		if n := l.eng.Abandon(group); n > 0 {
			l.log.Warn("mirrored connections let go silently: the group was released with no device to hand them to; the device that takes it over continues them from the mirror", "traffic_group", group, "connections", n)
		}
	}
	if err := l.eng.SetTrafficGroupActive(group, active); err != nil {
		return err
	}
	if active {
		l.holds.release(group) // its mirrored connections are restored: let their packets in
	}
	if l.mir != nil {
		l.mir.SetActive(group, active)
	}
	return nil
}

// reportDrops logs how many access-log lines were dropped since the last
// report (syslog destinations only) and returns the new total.
func reportDrops(dest accesslog.Destination, reported uint64, log *slog.Logger) uint64 {
	d, ok := dest.(interface{ Dropped() uint64 })
	if !ok {
		return reported
	}
	n := d.Dropped()
	if n > reported {
		log.Warn("access log lines dropped: the syslog socket was full or unreachable", "dropped", n-reported, "total", n)
	}
	return n
}

func newLogger(l config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil && l.Level != "" {
		return nil, fmt.Errorf("log.level %q: %v", l.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// openAccessLog opens log.access_log in log.access_log_format; both are
// nil when it is off.
func openAccessLog(l config.Log, stdout, stderr io.Writer) (*slog.Logger, accesslog.Destination, error) {
	if l.AccessLog == "" || l.AccessLog == "off" {
		return nil, nil, nil
	}
	dest, err := accesslog.Open(l.AccessLog, accesslog.Options{Stdout: stdout, Stderr: stderr, SyslogSocket: l.SyslogSocket})
	if err != nil {
		return nil, nil, fmt.Errorf("log.access_log: %w", err)
	}
	h, err := accesslog.NewHandler(dest, accesslog.Format(l.AccessLogFormat))
	if err != nil {
		dest.Close()
		return nil, nil, fmt.Errorf("log.access_log_format: %w", err)
	}
	return slog.New(h), dest, nil
}

// reopenLogs reopens the access log file (or reconnects to syslog) after
// logrotate moved it. The structured log goes to stderr, which the service
// manager owns.
func reopenLogs(dest accesslog.Destination, log *slog.Logger) {
	if dest == nil {
		return
	}
	if err := dest.Reopen(); err != nil {
		log.Error("cannot reopen the access log; lines keep going where they went", "err", err.Error())
		return
	}
	log.Info("access log reopened")
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	f := newCmdFlags("demo", demoUsage, stdout, stderr)
	pos, code, done := f.parse(args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return f.fail("unexpected argument %q", pos[0])
	}
	cfg, err := config.Parse(examples.Demo, "examples/demo.yaml")
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	var backends []string
	for _, m := range cfg.Pools["demo"].Members {
		backends = append(backends, m.Address)
	}
	stop, err := startDemoBackends(backends)
	if err != nil {
		fmt.Fprintln(stderr, "fulcrum demo:", err)
		return 1
	}
	defer stop()
	vs := cfg.Virtuals["vs_demo"]
	return serve(cfg, "", stdout, stderr, func() {
		fmt.Fprintf(stdout, `
Fulcrum demo is running.

  Virtual server vs_demo (HTTP, %s) balances pool "demo": %s
    curl http://%s/            (run it twice: the answer alternates between backends)
  Dashboard:    http://%s/
  REST API:     curl http://%s/api/v1/pools
  Metrics:      curl http://%s/metrics
  CLI:          go run ./cmd/fulcrum show pools
                go run ./cmd/fulcrum member demo %s disable

Press Ctrl-C to stop.

`, vs.Destination, strings.Join(backends, " and "), vs.Destination,
			cfg.Management.Address, cfg.Management.Address, cfg.Management.Address, backends[0])
	})
}

// startDemoBackends serves a tiny HTTP application on each address.
func startDemoBackends(addrs []string) (func(), error) {
	var servers []*http.Server
	stop := func() {
		for _, s := range servers {
			s.Close()
		}
	}
	for i, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			stop()
			return nil, fmt.Errorf("demo backend %s: %v (is something else using the port?)", a, err)
		}
		name := fmt.Sprintf("backend-%d (%s)", i+1, a)
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Backend", name)
			fmt.Fprintf(w, "Hello from %s\nyou are %s (X-Forwarded-For: %s)\n%s %s\n",
				name, r.RemoteAddr, r.Header.Get("X-Forwarded-For"), r.Method, r.URL.RequestURI())
		})
		s := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		go s.Serve(ln)
	}
	return stop, nil
}
