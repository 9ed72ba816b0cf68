package packetlb

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/lbsp"
)

// A dsr virtual in Fulcrum's configuration (the binary, in the load
// balancer's namespace): single pass with lbsp persistence, end to end.
func TestDSRVirtual(t *testing.T) {
	l := newPktLab(t)
	bin := buildFulcrum(t)
	cfg := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(cfg, []byte(`
management: {address: "127.0.0.1:9090"}
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s}
pools:
  web: {members: [{address: "[fd00:2::11]:80"}, {address: "[fd00:2::12]:80"}, {address: "[fd00:2::13]:80"}]}
virtuals:
  single: {destination: "[fd00:3::100]:80", type: dsr, pool: web, persistence: lb, interface: br-s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := testnet.StartFulcrum(t, l.lb, bin, cfg)

	// Without an option: balanced (round-robin) over the three.
	seen := map[string]int{}
	for range 6 {
		seen[l.connect(t, nil)]++
	}
	if len(seen) != 3 {
		t.Fatalf("without an option: %v", seen)
	}
	// A client identity: balanced once, then kept by its record.
	c1 := lbsp.Option{Client: lbsp.ClientFromAddr(pClient)}
	first := l.connect(t, &c1)
	for range 4 {
		if who := l.connect(t, &c1); who != first {
			t.Fatalf("identity C1 went to %s, then %s", first, who)
		}
	}
	// An option naming a member: that member.
	c2 := lbsp.Option{Client: lbsp.RandomClient(), Server: pServer[2]}
	for range 3 {
		if who := l.connect(t, &c2); who != pServer[2].String() {
			t.Fatalf("option naming %s: served by %s", pServer[2], who)
		}
	}
	// Naming a non-member: balanced, counted.
	bad := lbsp.Option{Client: lbsp.RandomClient(), Server: pClient}
	l.connect(t, &bad)

	vs := virtuals(t, hc)
	if len(vs) != 1 || vs[0].DSR == nil || vs[0].LBSP == nil {
		t.Fatalf("virtual status %+v", vs)
	}
	d, lc := vs[0].DSR, vs[0].LBSP
	t.Logf("dsr %+v, lbsp %+v, total %d", d, lc, vs[0].Total)
	if d.NewFlows != 15 || d.Drops["malformed"] != 0 || d.Drops["table_full"] != 0 || vs[0].Total != 15 {
		t.Errorf("dsr counters %+v, total %d: want 15 flows", d, vs[0].Total)
	}
	if lc.NoOption != 6 || lc.ByServer != 3 || lc.ByIdentity != 4 || lc.IgnoredNotMember != 1 {
		t.Errorf("lbsp counters %+v", lc)
	}
	// The servers saw the client itself, and its option.
	l.mu.Lock()
	defer l.mu.Unlock()
	for s, rs := range l.remotes {
		for _, a := range rs {
			if a != pClient.String() {
				t.Errorf("%s saw client %s", s, a)
			}
		}
	}
}

// The seed's table "Session Persistence at a Load Balancer" in packet
// mode: dsr virtuals, one pass, the same rows as the full-proxy lab
// (lbsp/lab): the server and the basis of the choice per row.
func TestSeedTableDSR(t *testing.T) {
	vip1, vip2 := netip.MustParseAddr("fd00:3::100"), netip.MustParseAddr("fd00:3::101")
	var listen []netip.AddrPort
	for _, ap := range [][2]any{{vip1, 80}, {vip1, 21}, {vip1, 443}, {vip2, 80}} {
		listen = append(listen, netip.AddrPortFrom(ap[0].(netip.Addr), uint16(ap[1].(int))))
	}
	l := newPktLabWith(t, listen)
	proxy1, proxy2 := pClient, netip.MustParseAddr("fd00:1::3")
	ipIn(t, l.client, "addr", "add", proxy2.String()+"/64", "dev", "eth0", "nodad")
	cfg := filepath.Join(t.TempDir(), "f.yaml")
	if err := os.WriteFile(cfg, []byte(`
management: {address: "127.0.0.1:9090"}
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s}
pools:
  vip1-80:  {members: [{address: "[fd00:2::11]:80"}, {address: "[fd00:2::12]:80"}]}
  vip1-21:  {members: [{address: "[fd00:2::12]:21"}, {address: "[fd00:2::11]:21"}]}
  vip1-443: {members: [{address: "[fd00:2::11]:443"}, {address: "[fd00:2::12]:443"}]}
  vip2-80:  {members: [{address: "[fd00:2::13]:80"}, {address: "[fd00:2::11]:80"}]}
virtuals:
  vip1-80:  {destination: "[fd00:3::100]:80", type: dsr, pool: vip1-80, persistence: lb, interface: br-s}
  vip1-21:  {destination: "[fd00:3::100]:21", type: dsr, pool: vip1-21, persistence: lb, interface: br-s}
  vip1-443: {destination: "[fd00:3::100]:443", type: dsr, pool: vip1-443, persistence: lb, interface: br-s}
  vip2-80:  {destination: "[fd00:3::101]:80", type: dsr, pool: vip2-80, persistence: lb, interface: br-s}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := testnet.StartFulcrum(t, l.lb, buildFulcrum(t), cfg)
	counts := func() map[string]api.LBSPCounts {
		out := map[string]api.LBSPCounts{}
		for _, v := range virtuals(t, hc) {
			if v.LBSP != nil {
				out[v.Name] = *v.LBSP
			}
		}
		return out
	}
	c1 := lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8:c::1"))
	c2 := lbsp.ClientFromAddr(netip.MustParseAddr("2001:db8:c::2"))
	serv := map[string]netip.Addr{"SERV1": pServer[0], "SERV2": pServer[1], "SERV3": pServer[2], "0": {}}
	for i, row := range []struct {
		source         netip.Addr
		vip            netip.Addr
		port           uint16
		virtual        string
		client         [16]byte
		lbspod2, basis string
		assigned       string
	}{
		{proxy1, vip1, 80, "vip1-80", c1, "0", "LB", "SERV1"},
		{proxy1, vip1, 80, "vip1-80", c1, "SERV1", "LBSPOD-2", "SERV1"},
		{proxy1, vip1, 21, "vip1-21", c1, "0", "LB", "SERV2"},
		{proxy2, vip1, 443, "vip1-443", c1, "SERV1", "LBSPOD-2", "SERV1"},
		{proxy2, vip1, 443, "vip1-443", c1, "SERV1", "LBSPOD-2", "SERV1"},
		{proxy1, vip2, 80, "vip2-80", c2, "0", "LB", "SERV3"},
		{proxy1, vip2, 80, "vip2-80", c2, "SERV3", "LBSPOD-2", "SERV3"},
	} {
		before := counts()[row.virtual]
		o := lbsp.Option{Client: row.client, Server: serv[row.lbspod2]}
		who := l.connectTo(t, netip.AddrPortFrom(row.vip, row.port), row.source, &o)
		if who != serv[row.assigned].String() {
			t.Fatalf("row %d: served by %s, want %s", i+1, who, row.assigned)
		}
		after := counts()[row.virtual]
		basis := ""
		switch {
		case after.ByServer == before.ByServer+1:
			basis = "LBSPOD-2"
		case after.Balanced == before.Balanced+1:
			basis = "LB"
		case after.ByIdentity == before.ByIdentity+1:
			basis = "client identity"
		}
		if basis != row.basis {
			t.Fatalf("row %d: chosen by %q, want %q", i+1, basis, row.basis)
		}
		t.Logf("row %d: %s -> [%s]:%d LBSPOD-2 %s: %s by %s, one pass", i+1, row.source, row.vip, row.port, row.lbspod2, row.assigned, basis)
	}
}

// virtuals reads GET /api/v1/virtuals.
func virtuals(t *testing.T, hc *http.Client) []api.VirtualStatus {
	t.Helper()
	r, err := hc.Get("http://127.0.0.1:9090/api/v1/virtuals")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var vs []api.VirtualStatus
	if err := json.NewDecoder(r.Body).Decode(&vs); err != nil {
		t.Fatal(err)
	}
	return vs
}
