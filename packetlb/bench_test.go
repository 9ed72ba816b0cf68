package packetlb

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/lbsp"
)

// BenchmarkModes (root), side by side on the same namespaces: straight to
// one server (no load balancer), through the single-pass forwarder
// (direct server return), through Fulcrum's full proxy (a tcp virtual
// with lbsp persistence, the fulcrum binary in the load balancer's
// namespace) and through cookie persistence (an http virtual with
// cookie_insert: delayed binding, the member chosen from the request).
// New connections per second (each carries an LBSP option, or for the
// cookie the cookie of the first answer; the server answers with its name
// and closes), then the throughput of one 256 MiB download.
//
//	go test ./packetlb -run '^$' -bench Modes -benchtime 1x -v
func BenchmarkModes(b *testing.B) {
	l := newPktLab(b)
	dir := b.TempDir()
	bin := buildFulcrum(b)
	// Full proxy: VIP fd00:4::100 on the lb, members at the servers' own
	// addresses.
	bulk := make([]byte, 256<<20)
	for i, s := range l.servers {
		ln, err := s.Listen("tcp6", fmt.Sprintf("[%s]:80", pServer[i]))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go serveName(ln, pServer[i].String())
		// HTTP for the cookie virtual, bulk on 9000 (own address and VIP).
		hl, err := s.Listen("tcp6", fmt.Sprintf("[%s]:8080", pServer[i]))
		if err != nil {
			b.Fatal(err)
		}
		name := pServer[i].String()
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(name)) })}
		go hs.Serve(hl)
		b.Cleanup(func() { hs.Close() })
		for _, a := range []string{pServer[i].String(), pVIP.Addr().String()} {
			bl, err := s.Listen("tcp6", fmt.Sprintf("[%s]:9000", a))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { bl.Close() })
			go serveBytes(bl, bulk)
		}
	}
	ipIn(b, l.lb, "addr", "add", "fd00:4::100/128", "dev", "lo", "nodad")
	ipIn(b, l.lb, "link", "set", "lo", "up")
	ipIn(b, l.client, "-6", "route", "add", "fd00:4::/64", "via", "fd00:1::1")
	ipIn(b, l.client, "-6", "route", "add", "fd00:2::/64", "via", "fd00:1::1")
	cfg := filepath.Join(dir, "f.yaml")
	os.WriteFile(cfg, []byte(`
management: {address: "127.0.0.1:9090"}
profiles:
  persistence:
    lb: {type: lbsp, timeout: 300s}
    ck: {type: cookie_insert, secret: "0123456789abcdef0123456789abcdef"}
pools:
  web: {members: [{address: "[fd00:2::11]:80"}, {address: "[fd00:2::12]:80"}, {address: "[fd00:2::13]:80"}]}
  webhttp: {members: [{address: "[fd00:2::11]:8080"}, {address: "[fd00:2::12]:8080"}, {address: "[fd00:2::13]:8080"}]}
  bulk: {members: [{address: "[fd00:2::11]:9000"}]}
virtuals:
  full: {destination: "[fd00:4::100]:80", type: tcp, pool: web, persistence: lb}
  cookie: {destination: "[fd00:4::100]:8080", type: http, pool: webhttp, persistence: ck}
  fullbulk: {destination: "[fd00:4::100]:9000", type: tcp, pool: bulk}
`), 0o600)
	testnet.StartFulcrum(b, l.lb, bin, cfg)
	f := l.startForwarder(b)

	const conns = 2000
	opt := lbsp.Option{Client: lbsp.ClientFromAddr(pClient)}
	run := func(to string) float64 {
		ap := netip.MustParseAddrPort(to)
		start := time.Now()
		for range conns {
			l.connectTo(b, ap, pClient, &opt)
		}
		return conns / time.Since(start).Seconds()
	}
	// cookie: HTTP/1.1 requests, one per connection, the cookie of the
	// first answer on the others.
	cookieRun := func() float64 {
		cookie := ""
		start := time.Now()
		for i := range conns {
			var cn net.Conn
			if err := l.client.Do(func() error {
				var err error
				cn, err = net.DialTimeout("tcp6", "[fd00:4::100]:8080", 5*time.Second)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			cn.SetDeadline(time.Now().Add(5 * time.Second))
			req := "GET / HTTP/1.1\r\nHost: v\r\nConnection: close\r\n"
			if cookie != "" {
				req += "Cookie: " + cookie + "\r\n"
			}
			cn.Write([]byte(req + "\r\n"))
			resp, err := io.ReadAll(cn)
			cn.Close()
			if err != nil || !bytes.HasPrefix(resp, []byte("HTTP/1.1 200")) {
				b.Fatalf("cookie request %d: %v %q", i, err, resp)
			}
			if i == 0 {
				for _, line := range strings.Split(string(resp), "\r\n") {
					if v, ok := strings.CutPrefix(line, "Set-Cookie: "); ok {
						cookie, _, _ = strings.Cut(v, ";")
					}
				}
				if cookie == "" {
					b.Fatalf("no cookie in %q", resp)
				}
			}
		}
		return conns / time.Since(start).Seconds()
	}
	download := func(to string) float64 {
		var cn net.Conn
		if err := l.client.Do(func() error {
			var err error
			cn, err = net.DialTimeout("tcp6", to, 5*time.Second)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer cn.Close()
		cn.SetDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		buf := make([]byte, 256<<10)
		got := 0
		for {
			n, err := cn.Read(buf)
			got += n
			if err != nil {
				break
			}
		}
		if got != len(bulk) {
			b.Fatalf("download from %s: %d of %d bytes", to, got, len(bulk))
		}
		return float64(got) / 1e6 / time.Since(start).Seconds()
	}
	f.AddPort(9000, func(Packet) (netip.Addr, func(), error) { return pServer[0], nil, nil })
	for range b.N {
		direct := run(fmt.Sprintf("[%s]:80", pServer[0]))
		p0 := f.Stats().Packets
		single := run(pVIP.String())
		perConn := float64(f.Stats().Packets-p0) / conns
		full := run("[fd00:4::100]:80")
		ck := cookieRun()
		b.Logf("new connections/s: direct %.0f, single pass %.0f (%.1f client packets per connection through the forwarder), full proxy %.0f, cookie persistence (http) %.0f", direct, single, perConn, full, ck)
		b.Logf("single pass / full proxy: %.2fx; single pass / cookie: %.2fx", single/full, single/ck)
		download(fmt.Sprintf("[%s]:9000", pServer[0])) // warm-up: the first 256 MiB of a run are slower whatever the path
		dd := download(fmt.Sprintf("[%s]:9000", pServer[0]))
		p1 := f.Stats().Packets
		ds := download(netip.AddrPortFrom(pVIP.Addr(), 9000).String())
		lbPackets := f.Stats().Packets - p1
		df := download("[fd00:4::100]:9000")
		b.Logf("256 MiB download, MB/s: direct %.0f, single pass %.0f (%d client packets through the forwarder), full proxy %.0f", dd, ds, lbPackets, df)
		b.ReportMetric(single/full, "single-vs-full")
		b.ReportMetric(single/ck, "single-vs-cookie")
	}
}

func serveBytes(ln net.Listener, b []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { c.Write(b); c.Close() }()
	}
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

// buildFulcrum builds the fulcrum binary for a test.
func buildFulcrum(tb testing.TB) string {
	bin, err := testnet.BuildFulcrum(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// startForwarder starts a forwarder for pVIP in the lab's load balancer
// with the round-robin LBSP-aware chooser, and resolves the servers.
func (l *pktLab) startForwarder(tb testing.TB) *Forwarder {
	var rr atomic.Int64
	var f *Forwarder
	if err := l.lb.Do(func() error {
		var err error
		f, err = New(Config{VIP: pVIP, TUN: "pk-vip", Interface: "br-s", MaxFlows: 100000, Idle: time.Minute, Choose: chooser(&rr)})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	f.Resolve(pServer...)
	time.Sleep(200 * time.Millisecond)
	return f
}
