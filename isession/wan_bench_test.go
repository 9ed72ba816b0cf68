package isession

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/isession/codec"
	"github.com/fulcrum-adc/fulcrum/isession/dedup"
)

// The iSession benchmarks over the WAN emulator (root). The branch end
// (client, tunnel pool) is in the emulator's client namespace, the
// data-center end (terminator, origin server) in its server namespace;
// every byte between them crosses the emulated path. Variants run side by
// side in one process and one WAN:
//
//	cubic   a new TCP connection per object, straight to the origin, CUBIC
//	bbr     the same with BBR (the baseline that counts on a lossy path)
//	tls     a new TLS 1.3 connection per object to a per-connection TLS
//	        proxy beside the origin (BBR)
//	tunnel  one iSession tunnel (BBR, de-duplication, adaptive compression),
//	        reused by every object
//
// Run:
//
//	go test ./isession -run '^$' -bench ISessionWAN -benchtime 1x -v -timeout 30m
//
// FULCRUM_ISESSION_BENCH=a,b,c picks scenarios (default all);
// FULCRUM_ISESSION_CPUPROFILE=file writes a CPU profile of (b)'s second
// pass.

// origin serves "GET n\n" with object n and closes.
func origin(b *testing.B, ns *testnet.NS, addr string, objects [][]byte) string {
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "GET ")))
				if err != nil || n < 0 || n >= len(objects) {
					return
				}
				c.Write(objects[n])
			}()
		}
	}()
	return ln.Addr().String()
}

// setCC sets a dialed socket's congestion control.
func setCC(cc string) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, cc)
		})
		return serr
	}
}

// fetch sends "GET n" on c and reads the whole object.
func fetch(c net.Conn, n, size int) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	if _, err := fmt.Fprintf(c, "GET %d\n", n); err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		return err
	}
	if int(got) != size {
		return fmt.Errorf("object %d: %d of %d bytes", n, got, size)
	}
	return nil
}

type wanBench struct {
	b        *testing.B
	wan      *testnet.WAN
	objects  [][]byte
	orig     string // origin, in the server namespace
	tlsProxy string
	pool     *Pool
	term     *Terminator
	ca       *testCA
	tunnelEP netip.AddrPort
	newPool  func() *Pool
}

func newWANBench(b *testing.B, cfg testnet.WANConfig, objects [][]byte, dedupCache int64) *wanBench {
	w := &wanBench{b: b, wan: testnet.NewWAN(b, cfg), objects: objects, ca: newCA(b)}
	if os.Getenv("FULCRUM_ISESSION_SSAI") == "0" {
		for _, ns := range []*testnet.NS{w.wan.Client, w.wan.Server} {
			if err := ns.SetSysctl("net.ipv4.tcp_slow_start_after_idle", "0"); err != nil {
				b.Fatal(err)
			}
		}
	}
	srv := w.wan.ServerAddr.String()
	w.orig = origin(b, w.wan.Server, srv+":0", objects)
	origAP := netip.MustParseAddrPort(w.orig)
	dialIn := func(ns *testnet.NS, cc string) func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
		return func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
			d := &net.Dialer{}
			if cc != "" {
				d.Control = setCC(cc)
			}
			return ns.Dial(ctx, d, "tcp", a.String())
		}
	}
	// Per-connection TLS proxy beside the origin.
	tln, err := w.wan.Server.Listen("tcp", srv+":0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tln.Close() })
	setConnCC(tln, "bbr") // accepted sockets inherit it
	w.tlsProxy = tln.Addr().String()
	proxyTLS := w.ca.tlsFor(b, "dc")
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, proxyTLS)
				s, err := dialIn(w.wan.Server, "")(context.Background(), origAP)
				if err != nil {
					tc.Close()
					return
				}
				Relay(tc, s, time.Minute)
			}()
		}
	}()
	// The tunnel: terminator in the server namespace, pool in the client's.
	ss := settings(w.ca.tlsFor(b, "dc"), "dc")
	ss.DedupCache = dedupCache
	w.term = NewTerminator(ss, TerminatorOptions{}, func(Target) (netip.AddrPort, string, bool) { return origAP, "origin", true },
		dialIn(w.wan.Server, ""), nil)
	iln, err := w.wan.Server.Listen("tcp", srv+":0")
	if err != nil {
		b.Fatal(err)
	}
	setConnCC(iln, "bbr")
	go w.term.Serve(iln)
	b.Cleanup(func() { iln.Close(); w.term.Close() })
	cs := settings(w.ca.tlsFor(b, "branch"), "branch")
	cs.DedupCache = dedupCache
	w.newPool = func() *Pool { return NewPool(cs, Reuse{}, dialIn(w.wan.Client, "bbr"), nil) }
	w.pool = w.newPool()
	b.Cleanup(func() { w.pool.Close() })
	endpoint := netip.MustParseAddrPort(iln.Addr().String())
	w.tunnelEP = endpoint
	return w
}

func setConnCC(c any, cc string) {
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			setCC(cc)("", "", rc)
		}
	}
}

// get fetches object n with variant v.
func (w *wanBench) get(v string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	size := len(w.objects[n])
	switch v {
	case "cubic", "bbr":
		c, err := w.wan.Client.Dial(ctx, &net.Dialer{Control: setCC(v)}, "tcp", w.orig)
		if err != nil {
			return err
		}
		return fetch(c, n, size)
	case "tls":
		c, err := w.wan.Client.Dial(ctx, &net.Dialer{Control: setCC("bbr")}, "tcp", w.tlsProxy)
		if err != nil {
			return err
		}
		cfg := w.ca.tlsFor(w.b, "branch")
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		return fetch(tc, n, size)
	case "tunnel":
		st, _, err := w.pool.Open(ctx, w.tunnelEP, Target{Dst: netip.MustParseAddrPort(w.orig), Src: netip.MustParseAddrPort("192.0.2.1:1")}, nil)
		if err != nil {
			return err
		}
		return fetch(st, n, size)
	}
	return fmt.Errorf("unknown variant %s", v)
}

// variants are the named ones, or those FULCRUM_ISESSION_VARIANTS lists
// (for exploring; published numbers come from runs of all).
func variants(all ...string) []string {
	if v := os.Getenv("FULCRUM_ISESSION_VARIANTS"); v != "" {
		return strings.Split(v, ",")
	}
	return all
}

func scenarioOn(s string) bool {
	v := os.Getenv("FULCRUM_ISESSION_BENCH")
	return v == "" || strings.Contains(v, s)
}

// versionsOf returns count 1 MiB objects: versions of one incompressible
// file, each a few small edits away from the one before (so compression
// alone gains nothing and de-duplication nearly everything after the first).
func versionsOf(count int) [][]byte {
	r := mrand.New(mrand.NewPCG(7, 7))
	v := randomData(77, 1<<20)
	out := [][]byte{v}
	for range count - 1 {
		v = append([]byte(nil), v...)
		for range 3 {
			at := r.IntN(len(v) - 200)
			copy(v[at:], randomData(r.Uint64(), 100))
		}
		out = append(out, v)
	}
	return out
}

// diskImage returns a synthetic VM disk image of size bytes laid out as
// extents of 64 KiB to 2 MiB, as file systems allocate: 45 % of them zero
// (never-written space), 25 % copies of one of 64 common files (the same
// libraries and packages in several places), 30 % unique (random) data.
func diskImage(size int) []byte {
	r := mrand.New(mrand.NewPCG(9, 9))
	common := make([][]byte, 64)
	for i := range common {
		common[i] = randomData(uint64(1000+i), 256<<10+r.IntN(1792<<10))
	}
	img := make([]byte, size)
	for off := 0; off < size; {
		n := min(size-off, 64<<10+r.IntN(1984<<10))
		switch x := r.IntN(100); {
		case x < 45:
		case x < 70:
			f := common[r.IntN(len(common))]
			n = min(size-off, len(f))
			copy(img[off:], f)
		default:
			copy(img[off:off+n], randomData(r.Uint64(), n))
		}
		off += n
	}
	return img
}

func BenchmarkISessionWAN(b *testing.B) {
	testnet.SkipIfNotRoot(b)
	if scenarioOn("a") {
		b.Run("a-versions-45Mbit-100ms-1pct", func(b *testing.B) { benchVersions(b) })
	}
	if scenarioOn("b") {
		b.Run("b-disk-image-1Gbit-20ms", func(b *testing.B) { benchDiskImage(b) })
	}
	if scenarioOn("c") {
		b.Run("c-1000-requests-20ms", func(b *testing.B) { benchRequests(b) })
	}
}

// (a) 100 objects of 1 MiB, versions of one file, fetched one after
// another over 100 ms RTT, 1 % loss, 45 Mbit/s. CUBIC fetches only the
// first 5 (it would take ten minutes for 100); its goodput is what counts.
func benchVersions(b *testing.B) {
	objs := versionsOf(100)
	w := newWANBench(b, testnet.WANConfig{Delay: 50 * time.Millisecond, Loss: 0.01, RateBits: 45_000_000}, objs, 256<<20)
	for range b.N {
		b.Logf("100 objects of 1 MiB (versions of one incompressible file), 100 ms RTT, 1%% loss, 45 Mbit/s")
		b.Logf("%-8s %8s %10s %12s", "variant", "objects", "seconds", "goodput Mbit/s")
		res := map[string]float64{}
		for _, v := range variants("cubic", "bbr", "tls", "tunnel", "bbr-x4", "tunnel-x4") {
			n := len(objs)
			if v == "cubic" {
				n = 5
			}
			base, par := v, 1
			if strings.HasSuffix(v, "-x4") {
				base, par = strings.TrimSuffix(v, "-x4"), 4
			}
			if v == "tunnel-x4" {
				w.pool.Close() // a cold tunnel and cold caches, as for the sequential run
				w.pool = w.newPool()
			}
			start := time.Now()
			per := make([]time.Duration, n)
			next := make(chan int, n)
			for i := range n {
				next <- i
			}
			close(next)
			errs := make(chan error, par)
			for range par {
				go func() {
					for i := range next {
						t0 := time.Now()
						if err := w.get(base, i); err != nil {
							errs <- fmt.Errorf("%s object %d: %w", v, i, err)
							return
						}
						per[i] = time.Since(t0)
					}
					errs <- nil
				}()
			}
			for range par {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			d := time.Since(start)
			slices.Sort(per)
			b.Logf("%-9s per object: min %v, median %v, p90 %v, max %v", v, per[0].Round(time.Millisecond),
				per[len(per)/2].Round(time.Millisecond), per[len(per)*9/10].Round(time.Millisecond), per[len(per)-1].Round(time.Millisecond))
			mbit := float64(n<<20) * 8 / d.Seconds() / 1e6
			res[v] = mbit
			b.Logf("%-9s %8d %10.2f %12.2f", v, n, d.Seconds(), mbit)
			b.ReportMetric(mbit, v+"-Mbit/s")
		}
		b.Logf("four at a time: tunnel vs bbr %.1fx", res["tunnel-x4"]/res["bbr-x4"])
		b.Logf("tunnel vs cubic %.1fx, vs bbr %.1fx, vs per-connection TLS %.1fx", res["tunnel"]/res["cubic"], res["tunnel"]/res["bbr"], res["tunnel"]/res["tls"])
		w.logTunnel()
	}
	b.Logf("WAN: %v", w.wan.Stats())
}

// (b) a 1 GiB disk image over 20 ms RTT at 1 Gbit/s, twice through the
// tunnel (the second pass finds the chunks in the caches), beside BBR.
func benchDiskImage(b *testing.B) {
	size := 1 << 30
	if s := os.Getenv("FULCRUM_ISESSION_IMAGE_MIB"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			size = n << 20
		}
	}
	img := diskImage(size)
	w := newWANBench(b, testnet.WANConfig{Delay: 10 * time.Millisecond, RateBits: 1_000_000_000}, [][]byte{img}, 1<<30)
	for range b.N {
		var times []time.Duration
		var seen dedup.Stats
		for i, v := range []string{"bbr", "tunnel", "tunnel"} {
			if pf := os.Getenv("FULCRUM_ISESSION_CPUPROFILE"); pf != "" && i == 2 {
				f, err := os.Create(pf)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				pprof.StartCPUProfile(f) // the second pass only
			}
			var ru0 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			if err := w.get(v, 0); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			var ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
			gbit := float64(size) * 8 / 1e9
			times = append(times, d)
			if i == 2 {
				pprof.StopCPUProfile() // a no-op when not profiling
			}
			b.Logf("%-8s %6.2f s  %7.1f Mbit/s goodput  CPU %.2f s (both ends, %.2f CPU-s per Gbit)", v, d.Seconds(), gbit*1e3/d.Seconds(), cpu.Seconds(), cpu.Seconds()/gbit)
			if v == "tunnel" {
				var now dedup.Stats
				for _, t := range w.term.Stats().Tunnels {
					now = t.DedupOut
				}
				b.Logf("         this pass: %d chunks, %d references, %d literals; %.1f MB on the wire",
					now.Chunks-seen.Chunks, now.Refs-seen.Refs, now.Literals-seen.Literals, float64(now.BytesOut-seen.BytesOut)/1e6)
				seen = now
			}
		}
		b.Logf("%d MiB image: first tunnel transfer %.2fx direct BBR; second %.2fx faster than the first", size>>20, times[0].Seconds()/times[1].Seconds(), times[1].Seconds()/times[2].Seconds())
		b.ReportMetric(times[1].Seconds()/times[2].Seconds(), "second-vs-first")
		w.logTunnel()
	}
}

// (c) 1,000 short requests (1 KiB answers), ten at a time, over 20 ms RTT:
// new TLS connections each versus streams of one reused tunnel.
func benchRequests(b *testing.B) {
	objs := make([][]byte, 1000)
	for i := range objs {
		objs[i] = textData(1024)
	}
	w := newWANBench(b, testnet.WANConfig{Delay: 10 * time.Millisecond, RateBits: 1_000_000_000}, objs, 64<<20)
	for range b.N {
		res := map[string]time.Duration{}
		for _, v := range []string{"tls", "tunnel"} {
			start := time.Now()
			errs := make(chan error, 10)
			next := make(chan int, len(objs))
			for i := range objs {
				next <- i
			}
			close(next)
			for range 10 {
				go func() {
					for i := range next {
						if err := w.get(v, i); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range 10 {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			res[v] = time.Since(start)
			b.Logf("%-8s 1000 requests in %.2f s (%.0f requests/s)", v, res[v].Seconds(), 1000/res[v].Seconds())
		}
		b.Logf("reused tunnel %.1fx faster than a TLS connection per request", res["tls"].Seconds()/res["tunnel"].Seconds())
		b.ReportMetric(res["tls"].Seconds()/res["tunnel"].Seconds(), "tunnel-vs-tls")
	}
}

func (w *wanBench) logTunnel() {
	for _, t := range w.pool.Stats().Tunnels {
		w.b.Logf("tunnel: RTT %v (mux %v), window growths %d, stalls %d", t.TCPRTT, t.Mux.RTT, t.Mux.WindowGrowths, t.Mux.WindowStalls)
		w.b.Logf("tunnel: %s; raw out %d in %d, wire out %d in %d; dedup refs in %d of %d chunks; codecs %v; skipped %d",
			t.Outcome, t.Mux.RawOut, t.Mux.RawIn, t.Mux.WireOut, t.Mux.WireIn, t.DedupIn.Refs, t.DedupIn.Chunks, t.Codecs, t.Skipped)
	}
	for _, t := range w.term.Stats().Tunnels {
		w.b.Logf("data-center end: raw out %d, wire out %d (%.3f), dedup refs %d of %d chunks, codecs %v",
			t.Mux.RawOut, t.Mux.WireOut, float64(t.Mux.WireOut)/float64(max(1, t.Mux.RawOut)), t.DedupOut.Refs, t.DedupOut.Chunks, codecSummary(t.Codecs))
	}
}

func codecSummary(m map[string]codec.CodecStats) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d blocks %d→%d", k, v.Blocks, v.BytesIn, v.BytesOut))
	}
	return strings.Join(parts, ", ")
}
