package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/fulcrum-adc/fulcrum/bench"
)

// ports is what the configuration templates of one instance are rendered
// with: its ports, the backends', the certificate and limits.
type ports struct {
	Dir                         string
	Backend, BackendTLS, Iperf  int
	HTTP, HTTPS, TCP, TCPSplice int
	TCPFast                     int  // Fulcrum's fastl4 virtual
	FastL4                      bool // render Fulcrum's fastl4 virtual
	Threads                     int  // HAProxy nbthread, nginx worker_processes
	Cert, Key, CertKey          string
	Instance                    string
	NoFile                      uint64 // RLIMIT_NOFILE the programs get
	MaxConn                     int    // HAProxy maxconn: the idle connections plus headroom
}

// instOpts are an instance's departures from the defaults: the scaling
// scenario's CPU list and thread count.
type instOpts struct {
	cpu     string // taskset CPU list ("" = the proxy CPU)
	threads int    // GOMAXPROCS, nbthread, worker_processes (0 = 1)
}

// proxyKind says how to start one proxy.
type proxyKind struct {
	name     string // target name
	bin      string // program looked up in PATH ("" = the fulcrum flag)
	template string // file in bench/configs
	conf     string // rendered file name
	env      []string
	args     func(conf string) []string
}

var proxyKinds = []proxyKind{
	{name: bench.Fulcrum, template: "fulcrum.yaml", conf: "fulcrum.yaml", env: []string{"GOMAXPROCS=1"},
		args: func(c string) []string { return []string{"run", "-c", c} }},
	{name: bench.HAProxy, bin: "haproxy", template: "haproxy.cfg", conf: "haproxy.cfg",
		args: func(c string) []string { return []string{"-db", "-f", c} }},
	{name: bench.Nginx, bin: "nginx", template: "nginx-proxy.conf", conf: "nginx-proxy.conf",
		args: func(c string) []string {
			return []string{"-c", c, "-e", filepath.Join(filepath.Dir(c), "nginx-startup.log")}
		}},
	{name: bench.Caddy, bin: "caddy", template: "Caddyfile", conf: "Caddyfile", env: []string{"GOMAXPROCS=1"},
		args: func(c string) []string { return []string{"run", "--config", c, "--adapter", "caddyfile"} }},
}

// instance is one running proxy.
type instance struct {
	kind  proxyKind
	p     *proc
	ports ports
}

type env struct {
	o           options
	dir         string
	base        ports // backend ports and certificate paths
	backend     *proc
	iperf       *proc
	proxies     map[string]*instance // running long-lived instances
	unavailable map[string]string    // target → why
	bins        map[string]string    // program → path
	notes       []string
	fastL4      bool    // the fulcrum binary accepted the fastl4 virtual
	wan         *wanRun // the wan scenario's latest benchmark run
}

// kind is the proxyKind named name, or nil.
func (e *env) kind(name string) *proxyKind {
	for i := range proxyKinds {
		if proxyKinds[i].name == name {
			return &proxyKinds[i]
		}
	}
	return nil
}

func newEnv(ctx context.Context, o options, dir string) (e *env, err error) {
	e = &env{o: o, dir: dir, proxies: map[string]*instance{}, unavailable: map[string]string{}, bins: map[string]string{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	for _, prog := range []string{"nginx", "haproxy", "caddy", "iperf3", "wrk"} {
		if p, err := exec.LookPath(prog); err == nil {
			e.bins[prog] = p
		}
	}
	e.bins["fulcrum"] = o.fulcrum
	if e.bins["nginx"] == "" {
		return nil, fmt.Errorf("nginx is needed for the backend (bench/run installs it)")
	}
	for _, k := range proxyKinds {
		if k.bin != "" && e.bins[k.bin] == "" {
			e.unavailable[k.name] = k.bin + " is not installed"
		}
	}
	if e.bins["haproxy"] == "" {
		e.unavailable[bench.HAProxySplice] = "haproxy is not installed"
	}
	if _, err := os.Stat("/usr/lib/nginx/modules/ngx_stream_module.so"); err != nil && e.bins["nginx"] != "" {
		e.notes = append(e.notes, "nginx's stream module (Debian libnginx-mod-stream) is missing: nginx has no L4 figure")
		e.unavailable[bench.Nginx+"/l4"] = "nginx stream module not installed"
	}

	// Certificate (ECDSA P-256), the 1 MiB body, temp dirs.
	if e.base.Cert, e.base.Key, e.base.CertKey, err = writeCert(dir); err != nil {
		return nil, err
	}
	for _, d := range []string{"www", "backend-tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if err := os.WriteFile(filepath.Join(dir, "www", "1m"), body, 0o644); err != nil {
		return nil, err
	}
	// nginx workers run as nobody: let them read the work directory.
	_ = os.Chmod(dir, 0o755)

	pp, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	e.base.Dir, e.base.Backend, e.base.BackendTLS, e.base.Iperf = dir, pp[0], pp[1], pp[2]
	e.base.NoFile, e.base.MaxConn = noFile(), o.idleConns+50

	conf, err := render(o.configs, "backend-nginx.conf", dir, "backend-nginx.conf", e.base)
	if err != nil {
		return nil, err
	}
	if e.backend, err = startProc("backend nginx", o.loadCPU, nil, filepath.Join(dir, "backend.log"), e.bins["nginx"],
		"-c", conf, "-e", filepath.Join(dir, "backend-startup.log")); err != nil {
		return nil, err
	}
	if err := waitPort(ctx, e.backend, addr(e.base.Backend), 10*time.Second); err != nil {
		return nil, err
	}
	if e.bins["iperf3"] != "" {
		if e.iperf, err = startProc("iperf3 server", o.loadCPU, nil, filepath.Join(dir, "iperf3.log"), e.bins["iperf3"],
			"-s", "-B", "127.0.0.1", "-p", strconv.Itoa(e.base.Iperf)); err != nil {
			return nil, err
		}
		if err := waitPort(ctx, e.iperf, addr(e.base.Iperf), 10*time.Second); err != nil {
			return nil, err
		}
	} else {
		e.notes = append(e.notes, "iperf3 is not installed: no L4 throughput figures")
	}
	for _, k := range proxyKinds {
		if e.unavailable[k.name] != "" || !e.wantTarget(k.name) {
			continue
		}
		if k.name == bench.Fulcrum {
			// The fastl4 virtual comes from a later change: a binary that
			// refuses it still runs every other scenario.
			e.fastL4 = true
			inst, err := e.startInstance(ctx, k, "main", instOpts{})
			if err == nil {
				e.proxies[k.name] = inst
				continue
			}
			e.fastL4 = false
			e.unavailable[bench.FulcrumFastL4] = "this fulcrum does not run a `type: fastl4` virtual: " + fastL4Reason(err.Error())
			logf("fulcrum did not start with a fastl4 virtual; starting it without: %v", err)
		}
		inst, err := e.startInstance(ctx, k, "main", instOpts{})
		if err != nil {
			// A proxy that does not start is reported, not fatal.
			logf("%s did not start: %v", k.name, err)
			e.unavailable[k.name] = "did not start: " + err.Error()
			continue
		}
		e.proxies[k.name] = inst
	}
	return e, nil
}

// fastL4Reason is the part of Fulcrum's start-up error about the fastl4
// virtual ("virtuals.vs_fastl4.type: …"), or all of it.
func fastL4Reason(msg string) string {
	i := strings.Index(msg, "vs_fastl4")
	if i < 0 {
		return msg
	}
	if j := strings.LastIndexAny(msg[:i], " \t"); j >= 0 {
		i = j + 1
	}
	r := msg[i:]
	if j := strings.Index(r, " | "); j >= 0 {
		r = r[:j]
	}
	return r
}

func (e *env) wantTarget(name string) bool {
	if len(e.o.targets) == 0 {
		return true
	}
	switch name {
	case bench.HAProxy:
		return e.o.targets[bench.HAProxy] || e.o.targets[bench.HAProxySplice]
	case bench.Fulcrum:
		return e.o.targets[bench.Fulcrum] || e.o.targets[bench.FulcrumFastL4]
	}
	return e.o.targets[name]
}

// startInstance renders k's configuration with fresh ports and starts it on
// the proxy CPU. tag names the instance's files ("main", "mem1", …).
func (e *env) startInstance(ctx context.Context, k proxyKind, tag string, o instOpts) (*instance, error) {
	pp, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	pt := e.base
	pt.HTTP, pt.HTTPS, pt.TCP, pt.TCPSplice, pt.TCPFast = pp[0], pp[1], pp[2], pp[3], pp[4]
	pt.FastL4 = e.fastL4
	pt.Threads = max(o.threads, 1)
	pt.Instance = k.name + "-" + tag
	pt.Dir = filepath.Join(e.dir, pt.Instance)
	for _, d := range []string{"", "nginx-tmp", "caddy-data"} {
		if err := os.MkdirAll(filepath.Join(pt.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	conf, err := render(e.o.configs, k.template, pt.Dir, k.conf, pt)
	if err != nil {
		return nil, err
	}
	bin := e.bins[k.bin]
	if k.bin == "" {
		bin = e.o.fulcrum
	}
	env := append([]string{"HOME=" + pt.Dir, "XDG_DATA_HOME=" + pt.Dir, "XDG_CONFIG_HOME=" + pt.Dir}, k.env...)
	if o.threads > 1 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", o.threads)) // the last value wins; C programs ignore it
	}
	cpu := e.o.proxyCPU
	if o.cpu != "" {
		cpu = o.cpu
	}
	p, err := startProc(k.name, cpu, env, filepath.Join(pt.Dir, "output.log"), bin, k.args(conf)...)
	if err != nil {
		return nil, err
	}
	for _, port := range []int{pt.HTTP, pt.HTTPS} {
		if err := waitPort(ctx, p, addr(port), 15*time.Second); err != nil {
			p.stop()
			return nil, err
		}
	}
	return &instance{kind: k, p: p, ports: pt}, nil
}

func (e *env) close() {
	for _, inst := range e.proxies {
		inst.p.stop()
	}
	e.iperf.stop()
	e.backend.stop()
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// render executes configs/name as a text/template with data into dir/out.
func render(configs, name, dir, out string, data any) (string, error) {
	t, err := template.New(name).Option("missingkey=error").ParseFiles(filepath.Join(configs, name))
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	path := filepath.Join(dir, out)
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

// writeCert creates a self-signed ECDSA P-256 certificate for 127.0.0.1 and
// localhost, valid for a day; it returns the paths of the certificate, the key,
// and both concatenated (HAProxy's crt format).
func writeCert(dir string) (cert, key, both string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", "", err
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", "", "", err
	}
	cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kp := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, key, both = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert-key.pem")
	for path, data := range map[string][]byte{cert: cp, key: kp, both: append(append([]byte{}, cp...), kp...)} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return "", "", "", err
		}
	}
	return cert, key, both, nil
}

// noFile is the current RLIMIT_NOFILE soft limit.
func noFile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return r.Cur
}

// raiseNoFile lifts RLIMIT_NOFILE so that 10,000 idle connections (and the
// programs started from here, which inherit it) fit. Raising the hard limit
// needs CAP_SYS_RESOURCE; without it the soft limit goes up to the hard one.
func raiseNoFile() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return
	}
	want := uint64(200000)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < want {
			want = n
		}
	}
	if r.Max < want {
		r.Max = want // works as root; otherwise the soft limit goes to the old hard limit
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err == nil {
			return
		}
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	r.Cur = r.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
}

// cpuSplit chooses CPU lists: the proxy gets the last CPU, the load generator
// and backends the others. On one CPU nothing is pinned.
func cpuSplit(proxy, load string) (string, string) {
	n := runtime.NumCPU()
	if proxy == "" && load == "" && n < 2 {
		return "", ""
	}
	if proxy == "" {
		proxy = strconv.Itoa(n - 1)
	}
	if load == "" {
		if n == 2 {
			load = "0"
		} else {
			load = fmt.Sprintf("0-%d", n-2)
		}
	}
	return proxy, load
}

func describeMachine(o options, e *env) bench.Machine {
	m := bench.Machine{Cores: runtime.NumCPU(), Versions: map[string]string{}, Sysctls: map[string]string{}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	if kb, err := statusLineKB("/proc/meminfo", "MemTotal:"); err == nil {
		m.MemoryGB = float64(kb) / (1 << 20)
	}
	m.Kernel = readTrim("/proc/sys/kernel/osrelease")
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.Pinning = fmt.Sprintf("proxy under test on CPU %s; wrk/iperf3 client and the nginx/iperf3 backends share CPU %s", o.proxyCPU, o.loadCPU)
	if o.proxyCPU == "" {
		m.Pinning = "not pinned (one CPU)"
	}
	version := func(name string, args ...string) {
		if e.bins[name] == "" {
			m.Versions[name] = "not installed"
			return
		}
		out, _ := exec.Command(e.bins[name], args...).CombinedOutput()
		m.Versions[name] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	version("fulcrum", "version")
	m.Versions["fulcrum"] += " (" + runtime.Version() + ", GOMAXPROCS=1)"
	version("haproxy", "-v")
	m.Versions["haproxy"] += " (nbthread 1)"
	version("nginx", "-v")
	m.Versions["nginx"] += " (1 worker)"
	version("caddy", "version")
	if e.bins["caddy"] != "" {
		m.Versions["caddy"] += " (GOMAXPROCS=1)"
	}
	version("wrk", "-v")
	version("iperf3", "--version")
	if out, err := exec.Command("openssl", "version").Output(); err == nil {
		m.Versions["openssl"] = strings.TrimSpace(string(out))
	}
	for _, s := range []string{"net/ipv4/ip_local_port_range", "net/ipv4/tcp_tw_reuse", "net/core/somaxconn", "net/ipv4/tcp_congestion_control"} {
		m.Sysctls[strings.ReplaceAll(s, "/", ".")] = strings.Join(strings.Fields(readTrim("/proc/sys/"+s)), " ")
	}
	return m
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func statusLineKB(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l)
			if len(f) >= 2 {
				return strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

func loadavg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }
