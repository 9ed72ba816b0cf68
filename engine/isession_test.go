package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/isession"
)

// isessionCerts writes a CA and certificates for names signed by it (both
// client and server use) into dir.
func isessionCerts(t *testing.T, dir string, names ...string) (ca string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sites CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca = filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)
	for i, n := range names {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: n},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		os.WriteFile(filepath.Join(dir, n+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(filepath.Join(dir, n+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	}
	return ca
}

// echoNamed accepts connections, writes its name and a newline, then
// echoes everything back.
func echoNamed(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(name + "\n"))
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoTrip connects to addr, sends data, half-closes and returns the
// name line and the echoed bytes.
func echoTrip(t *testing.T, addr string, data []byte) (string, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (after %d bytes)", err, len(all))
	}
	name, rest, _ := bytes.Cut(all, []byte("\n"))
	return string(name), rest
}

func TestISessionBetweenTwoSites(t *testing.T) {
	dir := t.TempDir()
	ca := isessionCerts(t, dir, "dc", "branch")
	app, local := echoNamed(t, "app"), echoNamed(t, "local")
	dcPort, appPort, vipPort := freePort(t), freePort(t), freePort(t)
	dc := startDCSite(t, dir, ca, "dc", dcPort, app, appPort)
	branchYAML := fmtYAML(`
isession:
	cert: %[1]s/branch.crt
	key: %[1]s/branch.key
	ca: %[2]s
profiles:
	isession:
		# zstd, not adaptive: on a loaded machine adaptive may send
		# loopback data uncompressed, and the wire check below is about
		# what the tunnel can save, not about that choice.
		wan: {dedup: true, reuse: true, port_transparency: true, compression: zstd}
pools:
	sites:
		members: [{address: 127.0.0.1:%[3]d}]
		passive: {enabled: false}
	local:
		members: [{address: %[4]s}]
virtuals:
	remote:
		destination: 127.0.0.1:%[5]d
		type: tcp
		isession: wan
		isession_endpoints: sites
		pool: local
`, dir, ca, dcPort, local, vipPort)
	br := startEngine(t, branchYAML)
	vip := fmt.Sprintf("127.0.0.1:%d", vipPort)

	// Repetitive data through the tunnel, byte-exact, twice over one tunnel.
	data := bytes.Repeat([]byte("versions of one file, over and over; "), 60000)
	for i := range 2 {
		name, got := echoTrip(t, vip, data)
		if name != "app" || !bytes.Equal(got, data) {
			t.Fatalf("round %d: served by %q, %d of %d bytes back", i, name, len(got), len(data))
		}
	}
	st := br.ISessions().Pools["wan"]
	if st.Dials != 1 || len(st.Tunnels) != 1 {
		t.Fatalf("tunnel not reused: %+v", st)
	}
	tu := st.Tunnels[0]
	if tu.Peer != "dc" || tu.Mux.RawOut < uint64(2*len(data)) || tu.Mux.WireOut > tu.Mux.RawOut/10 {
		t.Fatalf("tunnel stats: peer %q raw %d wire %d (%s)", tu.Peer, tu.Mux.RawOut, tu.Mux.WireOut, tu.Outcome)
	}
	if l := dc.ISessions().Listener; l == nil || l.Accepted != 1 || l.Streams != 2 {
		t.Fatalf("listener stats %+v", l)
	}
	if n := br.vstats["remote"].ISession.Tunneled.Load(); n != 2 {
		t.Fatalf("tunneled %d", n)
	}
	// A reload that changes nothing keeps the tunnel (and its caches).
	before := br.isession.pools["wan"].pool
	cfg, err := config.Parse([]byte(branchYAML), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if name, got := echoTrip(t, vip, data); name != "app" || !bytes.Equal(got, data) {
		t.Fatal("after reload")
	}
	if st := br.ISessions().Pools["wan"]; st.Dials != 1 || br.isession.pools["wan"].pool != before {
		t.Fatalf("a reload that changed nothing set the tunnels up again (%d setups)", st.Dials)
	}

	// The data center goes away: the branch serves from its local pool.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	dc.Close(ctx)
	cancel()
	waitFor(t, "tunnel closed", 5*time.Second, func() bool { return len(br.ISessions().Pools["wan"].Tunnels) == 0 })
	name, got := echoTrip(t, vip, []byte("hello"))
	if name != "local" || string(got) != "hello" {
		t.Fatalf("fallback: served by %q, got %q", name, got)
	}
	if n := br.vstats["remote"].ISession.LocalFallback.Load(); n != 1 {
		t.Fatalf("fallbacks %d", n)
	}
}

func TestISessionTargetPolicy(t *testing.T) {
	dir := t.TempDir()
	ca := isessionCerts(t, dir, "dc")
	src := func(target string) string {
		return fmtYAML(`
isession:
	cert: %[1]s/dc.crt
	key: %[1]s/dc.key
	ca: %[2]s
	listen: 127.0.0.1:%[3]d
profiles:
	isession:
		isession:
			target_virtual: %[4]s
pools:
	p:
		members: [{address: 127.0.0.1:9}]
virtuals:
	web:
		destination: 127.0.0.1:%[5]d
		type: http
		pool: p
	any:
		destination: 0.0.0.0:%[6]d
		type: tcp
		pool: p
	off:
		destination: 127.0.0.2:%[5]d
		type: tcp
		pool: p
		enabled: false
`, dir, ca, freePort(t), target, freePort(t), freePort(t))
	}
	e := startEngine(t, src("match_all"))
	cfg := e.isession.cfg.Load()
	web, _ := netip.ParseAddrPort(cfg.Virtuals["web"].Destination)
	anyd, _ := netip.ParseAddrPort(cfg.Virtuals["any"].Destination)
	off, _ := netip.ParseAddrPort(cfg.Virtuals["off"].Destination)
	tg := func(dst netip.AddrPort) isession.Target {
		return isession.Target{Dst: dst, Src: netip.MustParseAddrPort("192.0.2.1:1000")}
	}
	for _, c := range []struct {
		dst      netip.AddrPort
		want     netip.AddrPort
		via      string
		resolved bool
	}{
		{web, web, "virtual web", true},
		{netip.AddrPortFrom(web.Addr(), 0), web, "virtual web", true}, // port transparency off: any port of the address
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), anyd.Port()), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), anyd.Port()), "virtual any", true},
		{off, off, "original destination", true}, // disabled virtuals do not match
		{netip.MustParseAddrPort("127.0.0.9:4000"), netip.MustParseAddrPort("127.0.0.9:4000"), "original destination", true},
		{netip.MustParseAddrPort("[2001:db8::9]:0"), netip.AddrPort{}, "", false}, // nothing matches, no port to go to
	} {
		got, via, ok := e.resolveTarget(tg(c.dst))
		if got != c.want || via != c.via || ok != c.resolved {
			t.Errorf("%v: got %v %q %v, want %v %q %v", c.dst, got, via, ok, c.want, c.via, c.resolved)
		}
	}
	e2 := startEngine(t, src("web"))
	if got, via, _ := e2.resolveTarget(tg(netip.MustParseAddrPort("127.0.0.9:4000"))); via != "virtual web" || got.Port() == 4000 {
		t.Errorf("named: %v %q", got, via)
	}
	e3 := startEngine(t, src("none"))
	if got, via, _ := e3.resolveTarget(tg(web)); via != "original destination" || got != web {
		t.Errorf("none: %v %q", got, via)
	}
}

// TestISessionEndpointFailover: one data-center endpoint refuses, the
// other serves; every connection gets through (the failed endpoint is
// reselected away from and charged as the member that failed), and the
// tunnel is set up once.
func TestISessionEndpointFailover(t *testing.T) {
	dir := t.TempDir()
	ca := isessionCerts(t, dir, "dc", "branch")
	app := echoNamed(t, "app")
	dcPort, appPort, vipPort := freePort(t), freePort(t), freePort(t)
	startDCSite(t, dir, ca, "isession", dcPort, app, appPort)
	dead := refusingAddr(t)
	br := startEngine(t, fmtYAML(`
isession:
	cert: %[1]s/branch.crt
	key: %[1]s/branch.key
	ca: %[2]s
pools:
	sites:
		members: [{address: %[3]s}, {address: 127.0.0.1:%[4]d}]
virtuals:
	remote:
		destination: 127.0.0.1:%[5]d
		type: tcp
		isession: isession
		isession_endpoints: sites
`, dir, ca, dead, dcPort, vipPort))
	vip := fmt.Sprintf("127.0.0.1:%d", vipPort)
	for i := range 6 {
		if name, got := echoTrip(t, vip, []byte("x")); name != "app" || string(got) != "x" {
			t.Fatalf("connection %d: %q %q", i, name, got)
		}
	}
	st := br.ISessions().Pools["isession"]
	if len(st.Tunnels) != 1 || st.DialFailures == 0 {
		t.Fatalf("pool %+v", st)
	}
	var deadErrors uint64
	for _, p := range br.Pools() {
		for _, m := range p.Members {
			if m.Address == dead {
				deadErrors = m.Errors
			}
		}
	}
	if deadErrors == 0 {
		t.Fatal("the refusing endpoint was not charged")
	}
	// Without any endpoint and without a local pool: refused and counted.
	br2 := startEngine(t, fmtYAML(`
isession:
	cert: %[1]s/branch.crt
	key: %[1]s/branch.key
	ca: %[2]s
pools:
	sites:
		members: [{address: %[3]s}]
virtuals:
	remote:
		destination: 127.0.0.1:%[4]d
		type: tcp
		isession: isession
		isession_endpoints: sites
`, dir, ca, dead, freePort(t)))
	var addr string
	for _, v := range br2.Virtuals() {
		addr = v.Destination
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Fatal("served without a tunnel or a local pool")
	}
	c.Close()
	waitFor(t, "refusal counted", 5*time.Second, func() bool { return br2.vstats["remote"].ISession.Refused.Load() == 1 })
}

func TestISessionMetricsExported(t *testing.T) {
	e := startEngine(t, fmtYAML(`
pools:
	p:
		members: [{address: 127.0.0.1:9}]
virtuals:
	v:
		destination: 127.0.0.1:%d
		type: tcp
		pool: p
`, freePort(t)))
	mfs, err := e.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
	}
	for _, n := range []string{"fulcrum_isession_tunneled_connections_total", "fulcrum_isession_local_fallback_total", "fulcrum_isession_refused_total", "fulcrum_isession_tunnels", "fulcrum_isession_live_wire_bytes_sent"} {
		if !found[n] {
			t.Errorf("metric %s not exported", n)
		}
	}
}

// startDCSite starts a data-center site: an iSession listener on dcPort
// whose profile (named profile) sends every inner connection to the
// virtual app on appPort, whose member is backend.
func startDCSite(t *testing.T, dir, ca, profile string, dcPort int, backend string, appPort int) *Engine {
	t.Helper()
	return startEngine(t, fmtYAML(`
isession:
	cert: %[1]s/dc.crt
	key: %[1]s/dc.key
	ca: %[2]s
	listen: 127.0.0.1:%[3]d
	profile: %[6]s
profiles:
	isession:
		%[6]s:
			target_virtual: app
pools:
	backend:
		members: [{address: %[4]s}]
virtuals:
	app:
		destination: 127.0.0.1:%[5]d
		type: tcp
		pool: backend
`, dir, ca, dcPort, backend, appPort, profile))
}
