// Package lab runs Fulcrum with lbsp persistence in a network namespace
// (full-proxy mode) and checks each way a member is chosen.
package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/lbsp"
)

var fulcrumBin string

func TestMain(m *testing.M) { os.Exit(testnet.MainWithFulcrum(m, &fulcrumBin)) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	vip     = netip.MustParseAddr("fd00::100")
	vip2    = netip.MustParseAddr("fd00::101")
	servers = []netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3")}
	proxyA  = netip.MustParseAddr("fd00::201") // two megaproxies' addresses
	proxyB  = netip.MustParseAddr("fd00::202")
)

// member is one server: it answers with its address, and records the
// LBSP option each connection's SYN carried to it.
type member struct {
	addr netip.Addr
	mu   sync.Mutex
	seen []lbsp.Option
}

func (m *member) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if hdrs, err := lbsp.TCPDestOpts(c.(*net.TCPConn)); err == nil {
			for _, h := range hdrs {
				if r, err := (lbsp.Parser{Type: lbsp.DefaultType, KernelChecked: true}).Parse(h); err == nil && r.Found {
					m.mu.Lock()
					m.seen = append(m.seen, r.Option)
					m.mu.Unlock()
				}
			}
		}
		c.Write([]byte(m.addr.String()))
		c.Close()
	}
}

type lab struct {
	t       *testing.T
	ns      *testnet.NS
	api     *http.Client // Fulcrum's management API
	members map[netip.Addr]*member
}

const fullProxyConfig = `
management: {address: "127.0.0.1:9090"}
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s}
pools:
  web:
    members: [{address: "[fd00::1]:80"}, {address: "[fd00::2]:80"}, {address: "[fd00::3]:80"}]
  other:
    members: [{address: "[fd00::9]:80"}]
virtuals:
  v6: {destination: "[fd00::100]:80", type: tcp, pool: web, persistence: lb}
`

func newLab(t *testing.T, config string, ports ...int) *lab {
	ns := testnet.TempNS(t, "lbsplab")
	run := func(args ...string) {
		if out, err := ns.Run(context.Background(), "ip", args...); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	run("link", "set", "lo", "up")
	for _, a := range append([]netip.Addr{vip, vip2, proxyA, proxyB}, servers...) {
		run("addr", "add", a.String()+"/128", "dev", "lo", "nodad")
	}
	l := &lab{t: t, ns: ns, members: map[netip.Addr]*member{}}
	for _, a := range servers {
		m := &member{addr: a}
		for _, port := range ports {
			var ln net.Listener
			must(t, ns.Do(func() error {
				lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error { return lbsp.EnableRecvDestOptsRaw(c) }}
				var err error
				ln, err = lc.Listen(context.Background(), "tcp6", netip.AddrPortFrom(a, uint16(port)).String())
				return err
			}))
			t.Cleanup(func() { ln.Close() })
			go m.serve(ln)
		}
		l.members[a] = m
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "f.yaml")
	must(t, os.WriteFile(cfg, []byte(config), 0o600))
	l.api = testnet.StartFulcrum(t, ns, fulcrumBin, cfg)
	return l
}

func (l *lab) counts() (*api.LBSPCounts, error) {
	all, err := l.allCounts()
	if err != nil {
		return nil, err
	}
	if c := all["v6"]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no lbsp counts")
}

// setState sets a member's state through the API.
func (l *lab) setState(pool string, m netip.AddrPort, state string) {
	l.t.Helper()
	c := l.api
	req, _ := http.NewRequest(http.MethodPatch, "http://127.0.0.1:9090/api/v1/pools/"+pool+"/members/"+url.PathEscape(m.String()),
		strings.NewReader(`{"state":"`+state+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	must(l.t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		l.t.Fatalf("setting %s to %s: %s", m, state, resp.Status)
	}
}

// allCounts returns every lbsp virtual's counters.
func (l *lab) allCounts() (map[string]*api.LBSPCounts, error) {
	c := l.api
	resp, err := c.Get("http://127.0.0.1:9090/api/v1/virtuals")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var vs []api.VirtualStatus
	if err := json.NewDecoder(resp.Body).Decode(&vs); err != nil {
		return nil, err
	}
	out := map[string]*api.LBSPCounts{}
	for _, v := range vs {
		if v.LBSP != nil {
			out[v.Name] = v.LBSP
		}
	}
	return out, nil
}

// connect makes one connection to the VIP from src, with the option o (nil:
// none), and returns who answered and the option that came back on the
// clientside connection.
func (l *lab) connect(src netip.Addr, o *lbsp.Option) (string, *lbsp.Option) {
	return l.connectTo(src, netip.AddrPortFrom(vip, 80), o)
}

func (l *lab) connectTo(src netip.Addr, to netip.AddrPort, o *lbsp.Option) (string, *lbsp.Option) {
	l.t.Helper()
	var c net.Conn
	must(l.t, l.ns.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
			Control: func(network, address string, rc syscall.RawConn) error {
				if err := lbsp.EnableRecvDestOptsRaw(rc); err != nil {
					return err
				}
				if o != nil {
					return lbsp.SetDestOptsRaw(rc, lbsp.BuildDestOpts(0, o.Append(nil, lbsp.DefaultType)))
				}
				return nil
			}}
		var err error
		c, err = d.Dial("tcp6", to.String())
		return err
	}))
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	must(l.t, err)
	var back *lbsp.Option
	if hdrs, err := lbsp.TCPDestOpts(c.(*net.TCPConn)); err == nil {
		for _, h := range hdrs {
			if r, err := (lbsp.Parser{Type: lbsp.DefaultType, KernelChecked: true}).Parse(h); err == nil && r.Found {
				back = &r.Option
			}
		}
	}
	return string(b), back
}

// Each way lbsp persistence chooses a member, in full-proxy mode.
func TestFullProxy(t *testing.T) {
	testnet.SkipIfNotRoot(t)
	l := newLab(t, fullProxyConfig, 80)

	// No option: balanced over the pool (round-robin).
	seen := map[string]int{}
	for range 6 {
		who, _ := l.connect(proxyA, nil)
		seen[who]++
	}
	if len(seen) != 3 {
		t.Fatalf("without an option: %v, want all three members", seen)
	}

	// Client identity C1, no server address: balanced once, then kept by
	// the identity, through either megaproxy; the reply names the server.
	c1 := lbsp.Option{Client: lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8::c1"))}
	first, back := l.connect(proxyA, &c1)
	if back == nil || back.Client != c1.Client || back.Server.String() != first {
		t.Fatalf("reply option %v, want client C1 and server %s", back, first)
	}
	for i := range 6 {
		src := proxyA
		if i%2 == 1 {
			src = proxyB // the same user behind another proxy
		}
		if who, _ := l.connect(src, &c1); who != first {
			t.Fatalf("C1 connection %d went to %s, want %s (persisted by identity)", i, who, first)
		}
	}
	// The member got the client's identity in its SYN.
	m := l.members[netip.MustParseAddr(first)]
	m.mu.Lock()
	got := len(m.seen) > 0 && m.seen[len(m.seen)-1].Client == c1.Client && !m.seen[len(m.seen)-1].HasServer()
	m.mu.Unlock()
	if !got {
		t.Errorf("member %s did not receive C1's option (client identity, no server) on its SYN", first)
	}

	// A server address that is a member chooses it, whatever the identity.
	target := servers[2]
	if first == target.String() {
		target = servers[1]
	}
	c2 := lbsp.Option{Client: lbsp.RandomClient(), Server: target}
	for range 4 {
		if who, _ := l.connect(proxyB, &c2); who != target.String() {
			t.Fatalf("server option %s: went to %s", target, who)
		}
	}

	// A disabled member is not reachable by naming it.
	l.setState("web", netip.AddrPortFrom(target, 80), "disabled")
	// (A fresh identity: c2's record of target would still send c2 there,
	// as any persistence record sends its client to a disabled member.)
	for range 3 {
		o := lbsp.Option{Client: lbsp.RandomClient(), Server: target}
		if who, _ := l.connect(proxyB, &o); who == target.String() {
			t.Fatalf("an option naming disabled member %s reached it", target)
		}
	}
	if who, _ := l.connect(proxyB, &c2); who != target.String() {
		t.Fatalf("c2, recorded on %s, went to %s after it was disabled", target, who)
	}
	l.setState("web", netip.AddrPortFrom(target, 80), "enabled")

	// An attacker naming a host that is no member of the pool (another
	// pool's member, or any address) is balanced as usual.
	before, err := l.counts()
	must(t, err)
	seen = map[string]int{}
	for _, bad := range []string{"fd00::9", "fd00::99", "2001:db8::666"} {
		for range 3 {
			o := lbsp.Option{Client: lbsp.RandomClient(), Server: netip.MustParseAddr(bad)}
			who, _ := l.connect(proxyA, &o)
			seen[who]++
		}
	}
	if seen["fd00::9"] > 0 || len(seen) < 2 {
		t.Fatalf("options naming non-members steered connections: %v", seen)
	}
	after, err := l.counts()
	must(t, err)
	// Each of the 9 is counted once: as an ignored server address, or,
	// when the kernel handed over no option for that connection's SYN
	// (seen rarely on a loaded machine), as no option or unreadable.
	ignored := after.IgnoredNotMember - before.IgnoredNotMember
	missing := after.NoOption + after.Unreadable - before.NoOption - before.Unreadable
	if ignored+missing != 9 || ignored < 7 {
		t.Errorf("ignored_not_member rose by %d and no_option/unreadable by %d, want 9 together (before %+v, after %+v)", ignored, missing, before, after)
	}
	if after.NoOption < 6 || after.ByServer < 4 || after.ByIdentity < 6 || after.Balanced < 10 {
		t.Errorf("counters %+v", after)
	}
}

// The seed's table "Session Persistence at a Load Balancer", row by row:
// clients C1 and C2 behind two megaproxies, two VIPs, three servers, ports
// 80, 21 and 443. Each row checks the server and the basis of the choice
// (LB: the pool's method; LBSPOD-2: the option's server address).
func TestSeedTable(t *testing.T) {
	testnet.SkipIfNotRoot(t)
	l := newLab(t, `
management: {address: "127.0.0.1:9090"}
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s}
pools:
  vip1-80:  {members: [{address: "[fd00::1]:80"}, {address: "[fd00::2]:80"}]}
  vip1-21:  {members: [{address: "[fd00::2]:21"}, {address: "[fd00::1]:21"}]}
  vip1-443: {members: [{address: "[fd00::1]:443"}, {address: "[fd00::2]:443"}]}
  vip2-80:  {members: [{address: "[fd00::3]:80"}, {address: "[fd00::1]:80"}]}
virtuals:
  vip1-80:  {destination: "[fd00::100]:80", type: tcp, pool: vip1-80, persistence: lb}
  vip1-21:  {destination: "[fd00::100]:21", type: tcp, pool: vip1-21, persistence: lb}
  vip1-443: {destination: "[fd00::100]:443", type: tcp, pool: vip1-443, persistence: lb}
  vip2-80:  {destination: "[fd00::101]:80", type: tcp, pool: vip2-80, persistence: lb}
`, 80, 21, 443)
	c1 := lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8:c::1"))
	c2 := lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8:c::2"))
	serv := map[string]netip.Addr{"SERV1": servers[0], "SERV2": servers[1], "SERV3": servers[2], "0": {}}
	proxy := map[string]netip.Addr{"Proxy1": proxyA, "Proxy2": proxyB}
	vips := map[string]netip.Addr{"VIP1": vip, "VIP2": vip2}
	for i, row := range []struct {
		source, dest   string
		port           uint16
		client         [16]byte
		lbspod2, basis string
		assigned       string
	}{
		{"Proxy1", "VIP1", 80, c1, "0", "LB", "SERV1"},
		{"Proxy1", "VIP1", 80, c1, "SERV1", "LBSPOD-2", "SERV1"},
		{"Proxy1", "VIP1", 21, c1, "0", "LB", "SERV2"},
		{"Proxy2", "VIP1", 443, c1, "SERV1", "LBSPOD-2", "SERV1"},
		{"Proxy2", "VIP1", 443, c1, "SERV1", "LBSPOD-2", "SERV1"},
		{"Proxy1", "VIP2", 80, c2, "0", "LB", "SERV3"},
		{"Proxy1", "VIP2", 80, c2, "SERV3", "LBSPOD-2", "SERV3"},
	} {
		before, err := l.allCounts()
		must(t, err)
		o := lbsp.Option{Client: row.client, Server: serv[row.lbspod2]}
		who, back := l.connectTo(proxy[row.source], netip.AddrPortFrom(vips[row.dest], row.port), &o)
		if who != serv[row.assigned].String() {
			t.Fatalf("row %d: served by %s, want %s (%s)", i+1, who, row.assigned, serv[row.assigned])
		}
		if back == nil || back.Server != serv[row.assigned] || back.Client != row.client {
			t.Fatalf("row %d: the reply's option %v does not name %s for the client", i+1, back, row.assigned)
		}
		after, err := l.allCounts()
		must(t, err)
		name := fmt.Sprintf("%s-%d", map[string]string{"VIP1": "vip1", "VIP2": "vip2"}[row.dest], row.port)
		b, a := before[name], after[name]
		var basis string
		switch {
		case a.ByServer == b.ByServer+1:
			basis = "LBSPOD-2"
		case a.Balanced == b.Balanced+1:
			basis = "LB"
		case a.ByIdentity == b.ByIdentity+1:
			basis = "client identity"
		}
		if basis != row.basis {
			t.Fatalf("row %d: chosen by %q, want %q (counters %+v -> %+v)", i+1, basis, row.basis, b, a)
		}
		t.Logf("row %d: %s -> %s:%d LBSPOD-1 %s LBSPOD-2 %s: %s by %s", i+1, row.source, row.dest, row.port,
			netip.AddrFrom16(row.client), row.lbspod2, row.assigned, basis)
	}
}
