package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// binary is the fulcrum command built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(loadgenEnv) != "" {
		os.Exit(loadgen())
	}
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "fulcrum-halab-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "fulcrum")
		args := []string{"build", "-o", binary}
		if os.Getenv("FULCRUM_LAB_RACE") != "" {
			args = append(args, "-race") // the devices report data races in their logs (checked by failAndFinish)
		}
		out, err := exec.Command("go", append(args, "github.com/fulcrum-adc/fulcrum/cmd/fulcrum")...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building fulcrum: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Addresses of the lab. Every namespace is the test's own.
var (
	vip     = netip.MustParseAddr("10.77.0.50")
	vipPort = 80
	lanAddr = map[string]string{"a": "10.77.0.1", "b": "10.77.0.2"}
	hal     = map[string]string{"a": "10.78.0.1", "b": "10.78.0.2"}
	client  = "10.77.0.100"
	// clientSources are the client's extra source addresses (local routes).
	clientSources = []string{"10.79.0.0/16", "172.16.0.0/12"}
)

// device is one Fulcrum device of the lab: a namespace with eth0 on the LAN
// bridge (HA path 0, the floating address) and ha1 on a direct link to the
// other device (HA path 1), and a backend on 127.0.0.1:9000 that answers
// with the device's name.
type device struct {
	name    string
	ns      *testnet.NS
	config  string
	logPath string
	cmd     *exec.Cmd
	waited  chan struct{}
	mac     net.HardwareAddr
	api     *http.Client
}

type lab struct {
	t       *testing.T
	prefix  string
	lan     *testnet.NS
	client  *testnet.NS
	devs    map[string]*device
	dir     string
	started []*device
}

// settings are the failover settings of a lab's devices.
type settings struct {
	interval, deadTime time.Duration
}

// newLab builds the namespaces (ns names start with prefix, at most 6
// characters) and the devices' configurations; nothing runs yet.
func newLab(t *testing.T, prefix string, s settings, extra string) *lab {
	return newLabWith(t, prefix, s, extra, noPersistence)
}

// persistMode is what newLabWith sets up for persistence.
type persistMode int

const (
	noPersistence   persistMode = iota
	persistLocal                // a source-address profile, not mirrored (mirror addresses set)
	persistMirrored             // the same profile with mirror: true
)

// newLabWith is newLab with persistence: the devices have mirror
// addresses (the LAN address, then the direct link), the virtual server
// has a source-address persistence profile (mirrored with
// persistMirrored), its pool has two members per device (127.0.0.1:9000
// and :9001, answering "DEVICE MEMBER"), and the client owns 10.79.0.0/16
// and 172.16.0.0/12 as source addresses (local routes) that the devices
// route back to it.
func newLabWith(t *testing.T, prefix string, s settings, extra string, mode persistMode) *lab {
	mirror := mode != noPersistence
	t.Helper()
	l := newLabBase(t, prefix)
	members := 1
	if mirror {
		members = 2
	}
	for _, n := range []string{"a", "b"} {
		l.addDevice(n, "p"+n, lanAddr[n], members)
	}
	l.plug(l.client, "pc", client)
	must(t, l.client.SetSysctl("net.ipv4.ip_local_port_range", "1024 65000"))
	must(t, testnet.AddVeth(l.devs["a"].ns, "ha1", l.devs["b"].ns, "ha1", testnet.VethOptions{}))
	for _, n := range []string{"a", "b"} {
		d := l.devs[n]
		must(t, d.ns.AddAddr("ha1", netip.MustParsePrefix(hal[n]+"/24")))
		must(t, d.ns.LinkUp("ha1"))
	}
	if mirror {
		must(t, l.client.Do(func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			for _, p := range clientSources {
				_, dst, _ := net.ParseCIDR(p)
				if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}); err != nil {
					return err
				}
			}
			return nil
		}))
		for _, n := range []string{"a", "b"} {
			for _, p := range clientSources {
				must(t, l.devs[n].ns.AddRoute(netip.MustParsePrefix(p), netip.MustParseAddr(client), "eth0"))
			}
		}
	}
	// Trust: a initialises, b gets its certificate.
	must(t, trust.Init(filepath.Join(l.dir, "trust-a"), "a"))
	must(t, trust.Issue(filepath.Join(l.dir, "trust-a"), "b", filepath.Join(l.dir, "trust-b")))
	for _, n := range []string{"a", "b"} {
		d := l.devs[n]
		d.config = filepath.Join(l.dir, n+".yaml")
		mirrorA, mirrorB, persistence, members := "", "", "", `{address: "127.0.0.1:9000"}`
		if mirror {
			mirrorA = fmt.Sprintf(", mirror_addresses: [%s, %s]", lanAddr["a"], hal["a"])
			mirrorB = fmt.Sprintf(", mirror_addresses: [%s, %s]", lanAddr["b"], hal["b"])
			persistence = `
profiles:
  persistence:
    sticky: {type: source_addr, mirror: %v, timeout: 1h}
`
			persistence = fmt.Sprintf(persistence, mode == persistMirrored)
			members = `{address: "127.0.0.1:9000"}, {address: "127.0.0.1:9001"}`
		}
		cfg := fmt.Sprintf(`local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [%s, %s]%s}
  b: {ha_addresses: [%s, %s]%s}
failover: {interval: %s, dead_time: %s, garp_count: 3, garp_interval: 50ms}
traffic_groups:
  tg1:
    addresses: [{address: %s/24, interface: eth0}, {address: "%s/64", interface: eth0}]
%s
management: {address: "127.0.0.1:9090"}
%s
pools:
  p: {members: [%s]}
virtuals:
  v: {destination: "%s:%d", type: tcp, pool: p%s}
  v6: {destination: "[%s]:%d", type: tcp, pool: p}
`, n, filepath.Join(l.dir, "trust-"+n), lanAddr["a"], hal["a"], mirrorA, lanAddr["b"], hal["b"], mirrorB,
			s.interval, s.deadTime, vip, v6Of(vip.String()), extra, persistence, members, vip, vipPort, map[bool]string{true: ", persistence: sticky"}[mirror],
			v6Of(vip.String()), vipPort)
		must(t, os.WriteFile(d.config, []byte(cfg), 0o600))
	}
	t.Cleanup(l.stopAll)
	return l
}

// newLabBase makes the LAN namespace with its bridge and the client
// namespace (not yet plugged in).
func newLabBase(t *testing.T, prefix string) *lab {
	t.Helper()
	testnet.SkipIfNotRoot(t)
	l := &lab{t: t, prefix: prefix, dir: t.TempDir(), devs: map[string]*device{}}
	l.lan = testnet.TempNS(t, prefix+"lan")
	l.client = testnet.TempNS(t, prefix+"cli")
	must(t, l.lan.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		return netlink.LinkSetUp(br)
	}))
	return l
}

// addDevice makes device n's namespace, plugs its eth0 into the LAN
// through port with address addr, and serves members backends on
// 127.0.0.1:9000 upwards answering "n MEMBER".
func (l *lab) addDevice(n, port, addr string, members int) *device {
	t := l.t
	d := &device{name: n, ns: testnet.TempNS(t, l.prefix+n), logPath: filepath.Join(l.dir, n+".log")}
	l.devs[n] = d
	// Benchmarks open tens of thousands of connections to the backends on
	// loopback: more ephemeral ports, TIME_WAIT reuse.
	must(t, d.ns.SetSysctl("net.ipv4.ip_local_port_range", "1024 65000"))
	must(t, d.ns.SetSysctl("net.ipv4.tcp_tw_reuse", "1"))
	l.plug(d.ns, port, addr)
	mac, err := d.ns.LinkMAC("eth0")
	must(t, err)
	d.mac = mac
	d.api = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return d.ns.Dial(ctx, nil, network, a)
		},
		DisableKeepAlives: true,
	}}
	for i := 0; i < members; i++ {
		ln, err := d.ns.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 9000+i))
		must(t, err)
		t.Cleanup(func() { ln.Close() })
		go serveName(ln, fmt.Sprintf("%s %d", n, i))
	}
	return d
}

// plug connects namespace ns's eth0 to the LAN bridge through port and
// gives it addr/24.
func (l *lab) plug(ns *testnet.NS, port, addr string) {
	t := l.t
	must(t, testnet.AddVeth(ns, "eth0", l.lan, port, testnet.VethOptions{}))
	must(t, l.lan.Do(func() error {
		br, err := netlink.LinkByName("br0")
		if err != nil {
			return err
		}
		p, err := netlink.LinkByName(port)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMaster(p, br); err != nil {
			return err
		}
		return netlink.LinkSetUp(p)
	}))
	must(t, ns.AddAddr("eth0", netip.MustParsePrefix(addr+"/24")))
	// IPv6 beside it (fd77::LAST-OCTET), usable at once: no DAD.
	must(t, ns.SetSysctl("net.ipv6.conf.eth0.accept_dad", "0"))
	must(t, ns.AddAddr("eth0", netip.MustParsePrefix(v6Of(addr).String()+"/64")))
	must(t, ns.LinkUp("eth0"))
}

// v6Of is the lab's IPv6 address for an IPv4 one: fd77:: and its last octet.
func v6Of(v4 string) netip.Addr {
	b := netip.MustParseAddr(v4).As4()
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x77, 15: b[3]})
}

func sortedDevices(m map[string]*device) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(name + "\n"))
		c.Close()
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// start runs device n's fulcrum and waits until its API answers.
func (l *lab) start(n string) {
	t := l.t
	d := l.devs[n]
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	must(t, err)
	d.cmd = d.ns.Command(context.Background(), binary, "run", d.config)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, d.cmd.Start())
	logf.Close()
	d.waited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(d.cmd, d.waited)
	l.started = append(l.started, d)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := l.status(n); err == nil {
			return
		}
		select {
		case <-d.waited:
			t.Fatalf("device %s exited at start:\n%s", n, l.log(n))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s: API not up after 10s:\n%s", n, l.log(n))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to device n's process.
func (l *lab) signal(n string, sig syscall.Signal) {
	d := l.devs[n]
	must(l.t, syscall.Kill(-d.cmd.Process.Pid, sig))
}

// exited waits up to timeout for device n's process to end.
func (l *lab) exited(n string, timeout time.Duration) bool {
	select {
	case <-l.devs[n].waited:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (l *lab) stopAll() {
	for _, d := range l.started {
		select {
		case <-d.waited:
			continue
		default:
		}
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGCONT)
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.waited
	}
	if l.t.Failed() || os.Getenv("FULCRUM_LAB_DEBUG") != "" {
		for _, n := range sortedDevices(l.devs) {
			l.t.Logf("log of device %s:\n%s", n, l.log(n))
		}
	}
}

// labLogLevel is the devices' log level: debug under FULCRUM_LAB_DEBUG.
func labLogLevel() string {
	if os.Getenv("FULCRUM_LAB_DEBUG") != "" {
		return "debug"
	}
	return "info"
}

func (l *lab) log(n string) string {
	b, _ := os.ReadFile(l.devs[n].logPath)
	return string(b)
}

// status is device n's GET /api/v1/ha.
func (l *lab) status(n string) (*ha.Status, error) {
	resp, err := l.devs[n].api.Get("http://127.0.0.1:9090/api/v1/ha")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /api/v1/ha: %s: %s", resp.Status, b)
	}
	var st ha.Status
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// group is traffic group tg1 as device n reports it.
func (l *lab) group(n string) ha.GroupStatus {
	st, err := l.status(n)
	if err != nil {
		l.t.Fatalf("device %s: %v", n, err)
	}
	for _, g := range st.Groups {
		if g.Name == "tg1" {
			return g
		}
	}
	l.t.Fatalf("device %s: no tg1 in %+v", n, st)
	return ha.GroupStatus{}
}

// hasVIP reports whether device n's eth0 holds the floating address.
func (l *lab) hasVIP(n string) bool {
	var found bool
	must(l.t, l.devs[n].ns.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == vip {
				found = true
			}
		}
		return err
	}))
	return found
}

// clientNeigh is the MAC the client's neighbour table has for the VIP.
func (l *lab) clientNeigh() net.HardwareAddr { return l.clientNeighOf(vip) }

// clientNeighOf is the MAC the client's neighbour table has for ip.
func (l *lab) clientNeighOf(want netip.Addr) net.HardwareAddr {
	var mac net.HardwareAddr
	fam := netlink.FAMILY_V4
	if want.Is6() {
		fam = netlink.FAMILY_V6
	}
	must(l.t, l.client.Do(func() error {
		ns, err := netlink.NeighList(0, fam)
		for _, n := range ns {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == want {
				mac = n.HardwareAddr
			}
		}
		return err
	}))
	return mac
}

// probe is one connection attempt from the client to the virtual server.
type probe struct {
	at  time.Time // when it was sent
	who string    // the device whose backend answered; "" : no answer
}

// prober connects to the VIP every few milliseconds from the client
// namespace and records who answers.
type prober struct {
	mu     sync.Mutex
	probes []probe
	cancel context.CancelFunc
	done   chan struct{}
}

const (
	probeEvery   = 5 * time.Millisecond
	probeTimeout = 40 * time.Millisecond
	maxProbes    = 200000 // bounds a runaway test's memory: 1000 s of probes
)

func (l *lab) startProber() *prober { return l.startProberTo(vip) }

// startProberTo probes the virtual server on address ip.
func (l *lab) startProberTo(ip netip.Addr) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{cancel: cancel, done: make(chan struct{})}
	addr := netip.AddrPortFrom(ip, uint16(vipPort)).String()
	go func() {
		defer close(p.done)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for i := 0; i < maxProbes; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			at := time.Now()
			who := ""
			dctx, dcancel := context.WithTimeout(ctx, probeTimeout)
			c, err := l.client.Dial(dctx, nil, "tcp", addr)
			dcancel()
			if err == nil {
				c.SetDeadline(at.Add(probeTimeout))
				b := make([]byte, 16)
				n, _ := io.ReadAtLeast(c, b, 2)
				who, _, _ = strings.Cut(strings.TrimSpace(string(b[:n])), " ")
				c.Close()
			}
			p.mu.Lock()
			p.probes = append(p.probes, probe{at, who})
			p.mu.Unlock()
		}
	}()
	l.t.Cleanup(p.stop)
	return p
}

func (p *prober) stop() { p.cancel(); <-p.done }

// first waits up to timeout for the first probe sent at or after from that
// device who answered; it returns when that probe was sent.
func (p *prober) first(who string, from time.Time, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, pr := range p.probes {
			if !pr.at.Before(from) && pr.who == who {
				p.mu.Unlock()
				return pr.at, true
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(probeEvery)
	}
}

// between counts the probes sent in [from, to) by who answered ("" : none).
func (p *prober) between(from, to time.Time) map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, pr := range p.probes {
		if !pr.at.Before(from) && pr.at.Before(to) {
			out[pr.who]++
		}
	}
	return out
}

// waitActive waits until device n reports tg1 active and the client's
// probes are answered by it.
func (l *lab) waitActive(p *prober, n string, timeout time.Duration) time.Time {
	l.t.Helper()
	from := time.Now()
	at, ok := p.first(n, from, timeout)
	if !ok {
		l.t.Fatalf("tg1 not served by %s within %s (a: %+v, b: %+v)", n, timeout, l.groupOrNil("a"), l.groupOrNil("b"))
	}
	return at
}

func (l *lab) groupOrNil(n string) any {
	st, err := l.status(n)
	if err != nil {
		return err.Error()
	}
	return st.Groups
}

// startPair builds a lab, starts both devices and a prober, and waits
// until a serves.
func startPair(t *testing.T, prefix string, s settings, extra string) (*lab, *prober) {
	t.Helper()
	l := newLab(t, prefix, s, extra)
	l.start("a")
	l.start("b")
	p := l.startProber()
	l.waitActive(p, "a", 5*time.Second)
	return l, p
}

// eventually polls cond every 10 ms for up to timeout.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// The CI labs use settings that a parallel test run on a small machine
// cannot starve into a false failover; the tuned figures come from the
// benchmark (bench_test.go) on a quiet machine.
var ciSettings = settings{interval: 20 * time.Millisecond, deadTime: 300 * time.Millisecond}

// TestKillActive: kill -9 of the active device. The standby takes over
// after dead_time; the dead device's floating address lapses by its
// lifetime on its own; restarted, it comes back as standby and removes
// nothing it should not.
func TestKillActive(t *testing.T) {
	t.Parallel()
	l, p := startPair(t, "hk", ciSettings, "")
	if !l.hasVIP("a") || l.hasVIP("b") {
		t.Fatalf("before: VIP on a %v, on b %v", l.hasVIP("a"), l.hasVIP("b"))
	}
	killed := time.Now()
	l.signal("a", syscall.SIGKILL)
	at, ok := p.first("b", killed, ciSettings.deadTime+3*time.Second)
	if !ok {
		t.Fatalf("b did not take over within dead_time+3s of kill -9 (b: %+v)", l.groupOrNil("b"))
	}
	g := l.group("b")
	t.Logf("kill -9: b decided %s after the kill, first request served by b %s after (dead_time %s); probes failed in between: %d",
		g.Changed.Sub(killed).Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond), ciSettings.deadTime, p.between(killed, at)[""])
	if g.State != "active" || g.Generation < 2 {
		t.Errorf("b after takeover: %+v", g)
	}
	// The crash guarantee: nobody renews a's address; the kernel drops it.
	st, _ := l.status("b")
	lapse := st.Lifetime + time.Second
	if !eventually(lapse+time.Second, func() bool { return !l.hasVIP("a") }) {
		t.Errorf("the killed device still holds the floating address %s after the kill (lifetime %s)", lapse+time.Second, st.Lifetime)
	}
	// a comes back: it hears b's claim and stays standby (no auto failback).
	l.start("a")
	time.Sleep(ciSettings.deadTime * 3)
	if g := l.group("a"); g.State != "standby" || g.ActiveOn != "b" {
		t.Errorf("restarted a: %+v", g)
	}
	if l.hasVIP("a") || !l.hasVIP("b") {
		t.Errorf("after restart: VIP on a %v, on b %v", l.hasVIP("a"), l.hasVIP("b"))
	}
	from := time.Now()
	time.Sleep(200 * time.Millisecond)
	if got := p.between(from, time.Now()); got["b"] == 0 || len(got) != 1 {
		t.Errorf("after a's restart the client's probes were answered by %v, want only b", got)
	}
}

// TestStopContinue: SIGSTOP freezes the active (a hung host); the standby
// takes over; on SIGCONT the old active sees it was stalled, releases the
// group before doing anything else, and never serves the address again.
func TestStopContinue(t *testing.T) {
	t.Parallel()
	l, p := startPair(t, "hs", ciSettings, "")
	stopped := time.Now()
	l.signal("a", syscall.SIGSTOP)
	at, ok := p.first("b", stopped, ciSettings.deadTime+3*time.Second)
	if !ok {
		t.Fatalf("b did not take over a stopped a")
	}
	t.Logf("SIGSTOP: first request served by b %s after the stop", at.Sub(stopped).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	cont := time.Now()
	l.signal("a", syscall.SIGCONT)
	if !eventually(time.Second, func() bool { return !l.hasVIP("a") }) {
		t.Errorf("a still holds the floating address 1s after SIGCONT")
	}
	time.Sleep(500 * time.Millisecond)
	if g := l.group("a"); g.State != "standby" || g.ActiveOn != "b" {
		t.Errorf("a after SIGCONT: %+v", g)
	}
	if g := l.group("b"); g.State != "active" {
		t.Errorf("b after a's SIGCONT: %+v", g)
	}
	if got := p.between(cont, time.Now()); got["a"] != 0 || got["b"] == 0 {
		t.Errorf("after SIGCONT the probes were answered by %v: a must not serve again", got)
	}
	if mac := l.clientNeigh(); !bytes.Equal(mac, l.devs["b"].mac) {
		t.Errorf("the client's neighbour entry for the VIP is %s, want b's %s", mac, l.devs["b"].mac)
	}
}

// setLink sets interface dev of namespace ns up or down.
func setLink(t *testing.T, ns *testnet.NS, dev string, up bool) {
	must(t, ns.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return err
		}
		if up {
			return netlink.LinkSetUp(l)
		}
		return netlink.LinkSetDown(l)
	}))
}

// TestPathCuts: one of two HA paths cut changes nothing; every path cut
// makes the standby take over (the two-device split brain F5 and VRRP
// have too); when the paths heal the later claim wins and the old active
// releases the address.
func TestPathCuts(t *testing.T) {
	t.Parallel()
	l, p := startPair(t, "hp", ciSettings, "")
	cut := time.Now()
	setLink(t, l.devs["a"].ns, "ha1", false)
	time.Sleep(5 * ciSettings.deadTime)
	if g := l.group("b"); g.State != "standby" || g.Failovers != 0 {
		t.Errorf("one HA path cut: b %+v", g)
	}
	// (A probe may time out on a loaded machine; none may reach b.)
	if got := p.between(cut, time.Now()); got["b"] != 0 || got["a"] == 0 {
		t.Errorf("one HA path cut: probes %v, want them answered by a only", got)
	}
	st, err := l.status("b")
	must(t, err)
	for _, d := range st.Devices {
		if d.Name != "a" {
			continue
		}
		if !d.Up {
			t.Errorf("b sees a down with one path left: %+v", d)
		}
		if len(d.Paths) != 2 || !d.Paths[0].Up || d.Paths[1].Up || d.Paths[1].Downs != 1 || d.Paths[0].Downs != 0 {
			t.Errorf("b's view of the paths to a with the direct link cut: %+v", d.Paths)
		}
	}
	// Every path: a's LAN port too (a is cut off from the client as well).
	cutAll := time.Now()
	setLink(t, l.lan, "pa", false)
	at, ok := p.first("b", cutAll, ciSettings.deadTime+3*time.Second)
	if !ok {
		t.Fatalf("b did not take over with every HA path cut")
	}
	t.Logf("every path cut: first request served by b %s after the cut", at.Sub(cutAll).Round(time.Millisecond))
	if g := l.group("a"); g.State != "active" {
		t.Logf("a, isolated, holds tg1 as expected of two devices: %+v", g)
	}
	// Heal: b's claim has the higher generation; a must release.
	setLink(t, l.lan, "pa", true)
	setLink(t, l.devs["a"].ns, "ha1", true)
	if !eventually(3*time.Second, func() bool { return !l.hasVIP("a") && l.group("a").State == "standby" }) {
		t.Fatalf("after the heal a still holds tg1: %+v", l.group("a"))
	}
	healed := time.Now()
	time.Sleep(500 * time.Millisecond)
	if got := p.between(healed, time.Now()); got["a"] != 0 || got["b"] == 0 {
		t.Errorf("after the heal probes were answered by %v, want only b", got)
	}
	if g := l.group("b"); g.State != "active" {
		t.Errorf("b after the heal: %+v", g)
	}
	if mac := l.clientNeigh(); !bytes.Equal(mac, l.devs["b"].mac) {
		t.Errorf("the client's neighbour entry for the VIP is %s, want b's %s", mac, l.devs["b"].mac)
	}
}

// failover runs `fulcrum failover tg1 [-to to]` against device on's API.
func (l *lab) failover(on, to string) ([]byte, error) {
	args := []string{"failover", "tg1", "-api", "127.0.0.1:9090"}
	if to != "" {
		args = append(args, "-to", to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return l.devs[on].ns.Command(ctx, binary, args...).CombinedOutput()
}

// TestOperatorFailoverAndShutdown: `fulcrum failover` moves the group
// either way from either device, and a shutting-down active hands the
// group over at once instead of letting the peer wait for dead_time.
func TestOperatorFailoverAndShutdown(t *testing.T) {
	t.Parallel()
	l, p := startPair(t, "ho", ciSettings, "")
	asked := time.Now()
	if out, err := l.failover("a", "b"); err != nil || !strings.Contains(string(out), "active on b") {
		t.Fatalf("fulcrum failover tg1 -to b on a: %v: %s", err, out)
	}
	at, ok := p.first("b", asked, 3*time.Second)
	if !ok {
		t.Fatal("b does not serve after the operator's failover")
	}
	t.Logf("operator failover a->b: first request served by b %s after the command; probes without answer: %d",
		at.Sub(asked).Round(time.Millisecond), p.between(asked, at)[""])
	if l.hasVIP("a") {
		t.Error("a kept the floating address after handing tg1 to b")
	}
	// From the device that does not hold it, with no target: the next in
	// HA order.
	asked = time.Now()
	if out, err := l.failover("a", ""); err != nil || !strings.Contains(string(out), "active on a") {
		t.Fatalf("fulcrum failover tg1 on a (held by b): %v: %s", err, out)
	}
	if _, ok := p.first("a", asked, 3*time.Second); !ok {
		t.Fatal("a does not serve after the second failover")
	}
	if out, err := l.failover("a", "nosuch"); err == nil || !strings.Contains(string(out), "nosuch") {
		t.Errorf("failover to an unknown device: %v: %s", err, out)
	}
	// SIGTERM: a hands tg1 to b before it drains; b takes it without
	// waiting for dead_time.
	time.Sleep(200 * time.Millisecond)
	term := time.Now()
	l.signal("a", syscall.SIGTERM)
	at, ok = p.first("b", term, 3*time.Second)
	if !ok {
		t.Fatal("b does not serve after a's shutdown")
	}
	took := at.Sub(term)
	t.Logf("SIGTERM of the active: first request served by b %s after the signal (dead_time %s)", took.Round(time.Millisecond), ciSettings.deadTime)
	if took >= ciSettings.deadTime {
		t.Errorf("a's shutdown did not hand tg1 over: b served %s after SIGTERM, no sooner than dead_time %s", took, ciSettings.deadTime)
	}
	if !l.exited("a", 15*time.Second) {
		t.Error("a did not exit within 15s of SIGTERM")
	}
	if l.hasVIP("a") {
		t.Error("a exited holding the floating address")
	}
}

// TestKillActiveIPv6: the same takeover for an IPv6 floating address: the
// new active adds it without DAD, its virtual server (bound with
// IPV6_FREEBIND while standby) answers, and its unsolicited neighbour
// advertisement repoints the client.
func TestKillActiveIPv6(t *testing.T) {
	t.Parallel()
	l := newLab(t, "h6", ciSettings, "")
	l.start("a")
	l.start("b")
	vip6 := v6Of(vip.String())
	p := l.startProberTo(vip6)
	l.waitActive(p, "a", 5*time.Second)
	if mac := l.clientNeighOf(vip6); !bytes.Equal(mac, l.devs["a"].mac) {
		t.Fatalf("before: the client's neighbour entry for %s is %s, want a's %s", vip6, mac, l.devs["a"].mac)
	}
	killed := time.Now()
	l.signal("a", syscall.SIGKILL)
	at, ok := p.first("b", killed, ciSettings.deadTime+3*time.Second)
	if !ok {
		t.Fatalf("b did not serve %s after the kill", vip6)
	}
	t.Logf("IPv6, kill -9: first request served by b %s after the kill", at.Sub(killed).Round(time.Millisecond))
	if mac := l.clientNeighOf(vip6); !bytes.Equal(mac, l.devs["b"].mac) {
		t.Errorf("after: the client's neighbour entry for %s is %s, want b's %s", vip6, mac, l.devs["b"].mac)
	}
}
