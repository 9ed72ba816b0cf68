package packetlb

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/lbsp"
)

// BenchmarkModes (root): new connections per second from the client,
// side by side on the same namespaces: straight to one server (no load
// balancer), through the single-pass forwarder (direct server return),
// and through Fulcrum's full proxy (a tcp virtual with lbsp persistence,
// the fulcrum binary in the load balancer's namespace). Each connection
// carries an LBSP option; the server answers with its name and closes.
//
//	go test ./packetlb -run '^$' -bench Modes -benchtime 1x -v
func BenchmarkModes(b *testing.B) {
	l := newPktLab(b)
	dir := b.TempDir()
	bin := buildFulcrum(b)
	// Full proxy: VIP fd00:4::100 on the lb, members at the servers' own
	// addresses.
	for i, s := range l.servers {
		ln, err := s.Listen("tcp6", fmt.Sprintf("[%s]:80", pServer[i]))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ln.Close() })
		go serveName(ln, pServer[i].String())
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
pools:
  web: {members: [{address: "[fd00:2::11]:80"}, {address: "[fd00:2::12]:80"}, {address: "[fd00:2::13]:80"}]}
virtuals:
  full: {destination: "[fd00:4::100]:80", type: tcp, pool: web, persistence: lb}
`), 0o600)
	startFulcrum(b, l, bin, cfg)
	var rr atomic.Int64
	var f *Forwarder
	if err := l.lb.Do(func() error {
		var err error
		f, err = New(Config{VIP: pVIP, TUN: "pk-vip", Interface: "br-s", MaxFlows: 100000, Idle: time.Minute, Choose: chooser(&rr)})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.Resolve(pServer...)
	time.Sleep(200 * time.Millisecond)

	const conns = 2000
	opt := lbsp.Option{Client: lbsp.ClientFromAddr(pClient)}
	run := func(to string) float64 {
		start := time.Now()
		var cn net.Conn
		for range conns {
			if err := l.client.Do(func() error {
				d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
					return lbsp.SetDestOptsRaw(rc, lbsp.BuildDestOpts(0, opt.Append(nil, lbsp.DefaultType)))
				}}
				var err error
				cn, err = d.Dial("tcp6", to)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			cn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(cn); err != nil {
				b.Fatal(err)
			}
			cn.Close()
		}
		return conns / time.Since(start).Seconds()
	}
	for range b.N {
		direct := run(fmt.Sprintf("[%s]:80", pServer[0]))
		p0 := f.Stats().Packets
		single := run(pVIP.String())
		perConn := float64(f.Stats().Packets-p0) / conns
		full := run("[fd00:4::100]:80")
		b.Logf("new connections/s: direct %.0f, single pass %.0f (%.1f client packets per connection through the forwarder), full proxy %.0f", direct, single, perConn, full)
		b.Logf("single pass / full proxy: %.2fx", single/full)
		b.ReportMetric(single/full, "single-vs-full")
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
	bin := filepath.Join(tb.TempDir(), "fulcrum")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fulcrum-adc/fulcrum/cmd/fulcrum").CombinedOutput(); err != nil {
		tb.Fatalf("build: %v %s", err, out)
	}
	return bin
}

// startFulcrum runs bin with cfg in the lab's load balancer namespace
// and waits for its API.
func startFulcrum(tb testing.TB, l *pktLab, bin, cfg string) *http.Client {
	logPath := cfg + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := l.lb.Command(context.Background(), bin, "run", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	logf.Close()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if tb.Failed() {
			b, _ := os.ReadFile(logPath)
			tb.Logf("fulcrum log:\n%s", b)
		}
	})
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		return l.lb.Dial(ctx, &net.Dialer{}, n, a)
	}}}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if r, err := hc.Get("http://127.0.0.1:9090/api/v1/virtuals"); err == nil {
			r.Body.Close()
			return hc
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			tb.Fatalf("fulcrum did not start:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
