// Command fulcrum is the Fulcrum application delivery controller.
//
//	fulcrum run -c FILE      run a configuration
//	fulcrum check -c FILE    validate a configuration and list every problem
//	fulcrum demo             run the built-in demo (two backends, one HTTP virtual)
//	fulcrum show virtuals|pools|connections|persistence [-o json]
//	fulcrum member POOL ADDR enable|disable|force-offline
//	fulcrum reload           ask the running instance to re-read its file
//	fulcrum version
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
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/engine"
	"github.com/fulcrum-adc/fulcrum/examples"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `Fulcrum: a full-proxy application delivery controller.

Usage:
  fulcrum run -c FILE          run a configuration (SIGHUP reloads it)
  fulcrum check -c FILE        validate a configuration; exit 1 listing every problem
  fulcrum demo                 run the built-in demo configuration
  fulcrum show virtuals|pools|connections|persistence [-o json] [-api ADDR]
  fulcrum member POOL ADDR enable|disable|force-offline
  fulcrum reload               make the running instance re-read its configuration file
  fulcrum delete connection ID | persistence KEY   reset a connection, forget a persistence record
  fulcrum version
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
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "fulcrum", version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "fulcrum: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "fulcrum %s: -c FILE is required\n", name)
		return "", false
	}
	return *path, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
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
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	return serve(cfg, path, stdout, stderr, nil)
}

// serve runs cfg until SIGINT/SIGTERM; SIGHUP reloads path. ready, if set, is
// called once everything listens.
func serve(cfg *config.Config, path string, stdout, stderr io.Writer, ready func()) int {
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fulcrum:", err)
		return 1
	}
	accessLog, closeAccess, err := newAccessLog(cfg.Log.AccessLog, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "fulcrum:", err)
		return 1
	}
	defer closeAccess()
	eng := engine.New(engine.Options{Log: log, AccessLog: accessLog, ConfigPath: path})
	if err := eng.Apply(cfg); err != nil {
		fmt.Fprintln(stderr, "fulcrum:", err)
		eng.Close(context.Background())
		return 1
	}
	var mgmt *http.Server
	if cfg.Management.Address != "off" {
		ln, err := net.Listen("tcp", cfg.Management.Address)
		if err != nil {
			fmt.Fprintf(stderr, "fulcrum: management address %s: %v\n", cfg.Management.Address, err)
			eng.Close(context.Background())
			return 1
		}
		mgmt = &http.Server{
			Handler:           api.NewHandler(eng, eng.Metrics(), api.Options{Token: cfg.Management.Token, Log: log}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		go mgmt.Serve(ln)
		log.Info("management API listening", "address", ln.Addr().String())
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if ready != nil {
		ready()
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			if err := eng.Reload(); err != nil {
				log.Error("reload refused; the running configuration stays", "err", err.Error())
			}
			continue
		}
		break
	}
	log.Info("shutting down: no new connections; waiting up to 10s for open ones")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if mgmt != nil {
		mgmt.Shutdown(ctx)
	}
	eng.Close(ctx)
	return 0
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

func newAccessLog(dest string, stdout, stderr io.Writer) (*slog.Logger, func(), error) {
	switch dest {
	case "", "off":
		return nil, func() {}, nil
	case "stdout":
		return slog.New(slog.NewJSONHandler(stdout, nil)), func() {}, nil
	case "stderr":
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() {}, nil
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("log.access_log: %w", err)
	}
	return slog.New(slog.NewJSONHandler(f, nil)), func() { f.Close() }, nil
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
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
