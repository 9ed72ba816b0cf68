// Package lab is the EtherIP lab: two data centers, each a Fulcrum device
// (a network namespace running the fulcrum binary) with a VLAN group that
// bridges its VM ports and an EtherIP tunnel to the other across the WAN
// emulator, and "VMs" (namespaces) that live-migrate between them.
package lab

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/netcfg"
)

var fulcrumBin string

func TestMain(m *testing.M) { os.Exit(testnet.MainWithFulcrum(m, &fulcrumBin)) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ip(t *testing.T, ns *testnet.NS, args ...string) {
	t.Helper()
	if out, err := ns.Run(context.Background(), "ip", args...); err != nil {
		t.Fatalf("%s: ip %v: %v: %s", ns.Name(), args, err, out)
	}
}

// VM addresses and the MAC vm1 keeps wherever it runs.
var (
	vmAddr = map[string]string{"vm1": "10.10.0.10", "vm2": "10.10.0.11", "vm3": "10.10.0.12"}
	vm1MAC = net.HardwareAddr{0x02, 0xee, 0, 0, 0, 0x10}
)

type device struct {
	name, config string
	ns           *testnet.NS
	api          *http.Client // its management API
}

type lab struct {
	t        *testing.T
	wan      *testnet.WAN
	dc1, dc2 *device
	vms      map[string]*testnet.NS
	vm1At    string // "dc1" or "dc2"
}

// newLab builds and starts the lab: dc1 (the WAN emulator's client side)
// holds vm1 and vm3, dc2 holds vm2 and the port vm1 migrates to.
func newLab(t *testing.T, v6 bool) *lab {
	l := &lab{t: t, wan: testnet.NewWAN(t, testnet.WANConfig{Delay: 2 * time.Millisecond}), vms: map[string]*testnet.NS{}}
	dir := t.TempDir()
	for _, n := range []string{"vm1", "vm2", "vm3"} {
		l.vms[n] = testnet.TempNS(t, "eip"+n)
	}
	veth := func(dc *testnet.NS, port string, vm *testnet.NS, dev string, mac net.HardwareAddr) {
		must(t, testnet.AddVeth(dc, port, vm, dev, testnet.VethOptions{PeerMAC: mac}))
		ip(t, vm, "link", "set", "lo", "up")
	}
	veth(l.wan.Client, "p-vm1", l.vms["vm1"], "eth0", vm1MAC)
	veth(l.wan.Client, "p-vm3", l.vms["vm3"], "eth0", nil)
	veth(l.wan.Server, "p-vm2", l.vms["vm2"], "eth0", nil)
	veth(l.wan.Server, "p-vm1b", l.vms["vm1"], "eth1", vm1MAC)
	for n, a := range vmAddr {
		ip(t, l.vms[n], "addr", "add", a+"/24", "dev", "eth0")
		ip(t, l.vms[n], "link", "set", "eth0", "up")
	}
	l.vm1At = "dc1"
	local, remote := l.wan.ClientAddr, l.wan.ServerAddr
	if v6 {
		local, remote = l.wan.ClientAddr6, l.wan.ServerAddr6
	}
	l.dc1 = &device{name: "dc1", ns: l.wan.Client, config: filepath.Join(dir, "dc1.yaml")}
	l.dc2 = &device{name: "dc2", ns: l.wan.Server, config: filepath.Join(dir, "dc2.yaml")}
	must(t, os.WriteFile(l.dc1.config, []byte(fmt.Sprintf(`
management: {address: "127.0.0.1:9090"}
vlans:
  vm1port: {interface: p-vm1}
  vm3port: {interface: p-vm3}
tunnels:
  to-dc2: {type: etherip, local_address: "%s", remote_address: "%s"}
vlan_groups:
  vms: {members: [vm1port, vm3port, to-dc2], bridge: br-vms}
self_ips:
  vms-self: {address: 10.10.0.1/24, vlan: vms}
monitors:
  vloc: {type: virtual_location, interval: 300ms}
  fast: {type: tcp, interval: 200ms, timeout: 700ms}
pools:
  app:
    monitors: [vloc, fast]
    min_active_members: 1
    members: [{address: "10.10.0.10:9000"}, {address: "10.10.0.11:9000"}, {address: "10.10.0.12:9000"}]
  pinned:
    members: [{address: "10.10.0.10:9001"}]
virtuals:
  app: {destination: "127.0.0.1:8080", type: tcp, pool: app}
  pinned: {destination: "127.0.0.1:8081", type: tcp, pool: pinned}
`, local, remote)), 0o600))
	must(t, os.WriteFile(l.dc2.config, []byte(fmt.Sprintf(`
management: {address: "127.0.0.1:9090"}
vlans:
  vm2port: {interface: p-vm2}
  vm1port: {interface: p-vm1b}
tunnels:
  to-dc1: {type: etherip, local_address: "%s", remote_address: "%s"}
vlan_groups:
  vms: {members: [vm2port, vm1port, to-dc1], bridge: br-vms}
self_ips:
  vms-self: {address: 10.10.0.2/24, vlan: vms}
`, remote, local)), 0o600))
	for _, d := range []*device{l.dc1, l.dc2} {
		l.start(d)
	}
	// Each VM serves its name on 9000 and echoes on 9001.
	for n, ns := range l.vms {
		ln, err := ns.Listen("tcp", ":9000")
		must(t, err)
		t.Cleanup(func() { ln.Close() })
		go serveName(ln, n)
		if n == "vm1" {
			ln, err := ns.Listen("tcp", ":9001")
			must(t, err)
			t.Cleanup(func() { ln.Close() })
			go serveEcho(ln)
		}
	}
	return l
}

func (l *lab) start(d *device) { d.api = testnet.StartFulcrum(l.t, d.ns, fulcrumBin, d.config) }

func (l *lab) get(d *device, path string) ([]byte, error) {
	resp, err := d.api.Get("http://127.0.0.1:9090" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return b, err
}

// locations returns dc1's view of pool app: member IP -> location.
func (l *lab) locations() map[string]string {
	b, err := l.get(l.dc1, "/api/v1/pools/app")
	if err != nil {
		l.t.Fatal(err)
	}
	var p api.PoolStatus
	must(l.t, json.Unmarshal(b, &p))
	out := map[string]string{}
	for _, m := range p.Members {
		out[strings.Split(m.Address, ":")[0]] = m.Location + " " + m.Health
	}
	return out
}

func (l *lab) waitLocations(want map[string]string, within time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(within)
	var got map[string]string
	for time.Now().Before(deadline) {
		got = l.locations()
		ok := true
		for a, w := range want {
			ok = ok && strings.HasPrefix(got[a], w)
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("locations %v, want %v within %v", got, want, within)
}

// migrate moves vm1 to dc ("dc1" or "dc2"), the way a hypervisor does:
// the VM keeps its MAC and IP and announces itself (gratuitous ARP) on
// its new port.
func (l *lab) migrate(to string) {
	t := l.t
	from, next := "eth0", "eth1"
	if to == "dc1" {
		from, next = "eth1", "eth0"
	}
	vm := l.vms["vm1"]
	ip(t, vm, "link", "set", from, "down")
	ip(t, vm, "addr", "flush", "dev", from)
	ip(t, vm, "addr", "add", vmAddr["vm1"]+"/24", "dev", next)
	ip(t, vm, "link", "set", next, "up")
	must(t, vm.WaitUp(next, 5*time.Second))
	must(t, vm.Do(func() error {
		return netcfg.Announce(netcfg.Address{Prefix: netip.MustParsePrefix(vmAddr["vm1"] + "/32"), Interface: next})
	}))
	l.vm1At = to
}

func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(name))
		c.Close()
	}
}

func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); io.Copy(c, c) }()
	}
}

// names makes n new connections through dc1's app virtual and counts who
// answered.
func (l *lab) names(n int) map[string]int {
	out := map[string]int{}
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := l.dc1.ns.Dial(ctx, &net.Dialer{}, "tcp", "127.0.0.1:8080")
		cancel()
		if err != nil {
			out["error: "+err.Error()]++
			continue
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		out[string(b)]++
	}
	return out
}

// stamped keeps a connection through dc1's pinned virtual to vm1's echo
// server busy with sequence-stamped messages and checks every echo.
type stamped struct {
	c    net.Conn
	r    *bufio.Reader
	next uint64
}

func (l *lab) openStamped() *stamped {
	c, err := l.dc1.ns.Dial(context.Background(), &net.Dialer{}, "tcp", "127.0.0.1:8081")
	must(l.t, err)
	l.t.Cleanup(func() { c.Close() })
	return &stamped{c: c, r: bufio.NewReader(c)}
}

// exchange sends k messages (a sequence number and a 1 KiB body derived
// from it) and checks each echo byte for byte.
func (s *stamped) exchange(t *testing.T, k int) {
	t.Helper()
	msg := make([]byte, 8+1024)
	got := make([]byte, len(msg))
	for range k {
		binary.BigEndian.PutUint64(msg, s.next)
		for i := range msg[8:] {
			msg[8+i] = byte(s.next + uint64(i))
		}
		s.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.c.Write(msg); err != nil {
			t.Fatalf("message %d: write: %v", s.next, err)
		}
		if _, err := io.ReadFull(s.r, got); err != nil {
			t.Fatalf("message %d: read: %v", s.next, err)
		}
		if string(got) != string(msg) {
			t.Fatalf("message %d: echo differs", s.next)
		}
		s.next++
	}
}

func (l *lab) tunnelPackets(d *device) (in, out uint64) {
	b, err := l.get(d, "/api/v1/tunnels")
	must(l.t, err)
	var ts []struct {
		In  uint64 `json:"packets_in"`
		Out uint64 `json:"packets_out"`
	}
	must(l.t, json.Unmarshal(b, &ts))
	if len(ts) != 1 {
		l.t.Fatalf("%s has %d tunnels", d.name, len(ts))
	}
	return ts[0].In, ts[0].Out
}

func TestVMMigrationIPv4(t *testing.T) { testVMMigration(t, false) }
func TestVMMigrationIPv6(t *testing.T) { testVMMigration(t, true) }

// A long-lived connection to vm1 survives vm1's move to dc2 and back,
// byte-exact, through the tunnel; the virtual_location monitor flips vm1
// to remote and back within a few intervals; new connections go to local
// members while one is up, to remote ones when none is.
func testVMMigration(t *testing.T, v6 bool) {
	l := newLab(t, v6)
	l.waitLocations(map[string]string{"10.10.0.10": "local", "10.10.0.11": "remote", "10.10.0.12": "local"}, 10*time.Second)
	if got := l.names(20); got["vm1"]+got["vm3"] != 20 {
		t.Fatalf("new connections with local vm1 and vm3: %v", got)
	}

	s := l.openStamped()
	s.exchange(t, 50)
	in0, out0 := l.tunnelPackets(l.dc1)
	l.migrate("dc2")
	moved := time.Now()
	// The monitor (interval 300ms) sees it within about one interval.
	l.waitLocations(map[string]string{"10.10.0.10": "remote", "10.10.0.12": "local"}, 3*time.Second)
	t.Logf("vm1 seen as remote %v after its announcement", time.Since(moved).Round(time.Millisecond))
	s.exchange(t, 200) // the connection goes on, now through the tunnel
	if in, out := l.tunnelPackets(l.dc1); in-in0 < 200 || out-out0 < 200 {
		t.Fatalf("after the move, dc1's tunnel carried %d packets in, %d out: the connection did not go through it", in-in0, out-out0)
	}
	if got := l.names(20); got["vm3"] != 20 {
		t.Fatalf("new connections with vm1 gone: %v, want all on vm3 (the only local member)", got)
	}

	// Every local member down: the remote ones serve, through the tunnel.
	ip(t, l.vms["vm3"], "link", "set", "eth0", "down")
	l.waitLocations(map[string]string{"10.10.0.12": "local down"}, 5*time.Second)
	if got := l.names(20); got["vm1"]+got["vm2"] != 20 || got["vm1"] == 0 || got["vm2"] == 0 {
		t.Fatalf("new connections with no local member up: %v, want vm1 and vm2", got)
	}
	s.exchange(t, 50)

	// vm1 comes home: local again; it takes the new connections.
	l.migrate("dc1")
	s.exchange(t, 100)
	l.waitLocations(map[string]string{"10.10.0.10": "local"}, 3*time.Second)
	if got := l.names(20); got["vm1"] != 20 {
		t.Fatalf("new connections with vm1 back home: %v", got)
	}
}
