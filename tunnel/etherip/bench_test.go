//go:build linux

package etherip

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// Bounds of one measurement.
const (
	benchBulkBytes = 1 << 30 // at most this many bytes per bulk transfer
	benchBulkTime  = 3 * time.Second
	benchRRCount   = 2000 // at most this many round trips
	benchRRTime    = 2 * time.Second
)

// benchPath is one way of joining the two data centres' bridges.
type benchPath struct {
	name  string
	vmMTU int
	// join connects the bridges; it returns a reason to skip the path
	// when the kernel cannot do it.
	join func(tb testing.TB, s *sites) (skip string)
}

func benchPaths(outer6 bool) []benchPath {
	la := func(s *sites) (netip.Addr, netip.Addr) { return s.outer(outer6) }
	ipHdr := 20
	if outer6 {
		ipHdr = 40
	}
	return []benchPath{
		{name: "veth", vmMTU: 1500, join: func(tb testing.TB, s *sites) string {
			// The bridges joined by a veth: no tunnel at all.
			if err := testnet.AddVeth(s.dcA, "lnk0", s.dcB, "lnk0", testnet.VethOptions{}); err != nil {
				tb.Fatal(err)
			}
			for _, dc := range []*testnet.NS{s.dcA, s.dcB} {
				if err := enslave(dc, "lnk0", "br0"); err != nil {
					tb.Fatal(err)
				}
			}
			return ""
		}},
		{name: "gretap", vmMTU: 1500 - ipHdr - 4 - 14, join: func(tb testing.TB, s *sites) string {
			a, b := la(s)
			for _, side := range []struct {
				ns            *testnet.NS
				local, remote netip.Addr
			}{{s.dcA, a, b}, {s.dcB, b, a}} {
				err := withNetlink(side.ns, func(h *netlink.Handle) error {
					return h.LinkAdd(&netlink.Gretap{
						LinkAttrs: netlink.LinkAttrs{Name: "gt0", MTU: 1500 - ipHdr - 4 - 14},
						Local:     side.local.AsSlice(), Remote: side.remote.AsSlice(), Ttl: 64, PMtuDisc: 1,
					})
				})
				if err != nil {
					return fmt.Sprintf("kernel cannot create a gretap link (%v)", err)
				}
				if err := enslave(side.ns, "gt0", "br0"); err != nil {
					tb.Fatal(err)
				}
			}
			return ""
		}},
		{name: "vxlan", vmMTU: 1500 - ipHdr - 8 - 8 - 14, join: func(tb testing.TB, s *sites) string {
			a, b := la(s)
			for _, side := range []struct {
				ns            *testnet.NS
				local, remote netip.Addr
			}{{s.dcA, a, b}, {s.dcB, b, a}} {
				err := withNetlink(side.ns, func(h *netlink.Handle) error {
					wan, err := h.LinkByName("wan0")
					if err != nil {
						return err
					}
					return h.LinkAdd(&netlink.Vxlan{
						LinkAttrs: netlink.LinkAttrs{Name: "vx0", MTU: 1500 - ipHdr - 8 - 8 - 14},
						VxlanId:   97, SrcAddr: side.local.AsSlice(), Group: side.remote.AsSlice(),
						Port: 4789, VtepDevIndex: wan.Attrs().Index, Learning: true, TTL: 64,
					})
				})
				if err != nil {
					return fmt.Sprintf("kernel cannot create a vxlan link (%v)", err)
				}
				if err := enslave(side.ns, "vx0", "br0"); err != nil {
					tb.Fatal(err)
				}
			}
			return ""
		}},
		{name: "etherip", vmMTU: DefaultMTU(0, outer6), join: func(tb testing.TB, s *sites) string {
			s.etherIP(tb, outer6, Config{})
			return ""
		}},
	}
}

type pathResult struct {
	mbps   float64
	rttMed time.Duration
	rttP99 time.Duration
}

// BenchmarkPaths measures TCP throughput (VM-A → VM-B, bounded in bytes
// and time) and 1-byte TCP request/response latency between the two VM
// namespaces, side by side, over: the bridges joined by a plain veth; a
// Linux gretap tunnel (skipped if the kernel has no GRE); a Linux VXLAN
// tunnel (the in-kernel L2-over-IP tunnel this kernel does have); and this
// package's EtherIP endpoints. VM MTUs are set to each path's MTU, so
// nothing fragments. "offloads=off" turns off TSO/GSO/GRO and checksum
// offload on the VM veths, so every path carries MTU-sized segments as a
// NIC without TSO would; "offloads=on" keeps the veth defaults, which let
// kernel tunnels carry 64 KB super-packets end to end while the TAP (which
// has no offloads) gets segments. Run with -benchtime=1x; metrics are per
// path, plus etherip's throughput as a fraction of gretap's and vxlan's.
func BenchmarkPaths(b *testing.B) {
	testnet.SkipIfNotRoot(b)
	for _, outer6 := range []bool{false, true} {
		for _, offloads := range []bool{false, true} {
			name := fmt.Sprintf("outer=ipv%d/offloads=%v", map[bool]int{false: 4, true: 6}[outer6], map[bool]string{false: "off", true: "on"}[offloads])
			b.Run(name, func(b *testing.B) {
				res := map[string]pathResult{} // the paths run in order; etherip last
				for _, p := range benchPaths(outer6) {
					b.Run(p.name, func(b *testing.B) {
						r := runPath(b, p, offloads)
						res[p.name] = r
						b.ReportMetric(r.mbps, "MB/s")
						b.ReportMetric(float64(r.rttMed.Nanoseconds())/1e3, "rtt_µs")
						b.ReportMetric(float64(r.rttP99.Nanoseconds())/1e3, "rtt_p99_µs")
						if p.name != "etherip" {
							return
						}
						for _, ref := range []string{"gretap", "vxlan"} {
							if rr, ok := res[ref]; ok && rr.mbps > 0 {
								b.ReportMetric(r.mbps/rr.mbps, "x_"+ref)
							}
						}
					})
				}
			})
		}
	}
}

// runPath builds the sites, joins them with p and measures.
func runPath(b *testing.B, p benchPath, offloads bool) pathResult {
	var r pathResult
	s := newSites(b, p.vmMTU)
	if !offloads {
		for _, vm := range []*testnet.NS{s.vmA, s.vmB} {
			if err := vm.SetOffloads("eth0", testnet.Offloads{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if skip := p.join(b, s); skip != "" {
		b.Skip(skip)
	}
	s.echoServer(b, 7100)
	sink := startSink(b, s.vmB, 7101)
	// Warm up: learn MACs, open the path.
	s.echo(b, s.vmB4, 7100, 64<<10)
	for b.Loop() {
		r.mbps = bulk(b, s, sink, 7101)
		r.rttMed, r.rttP99 = tcpRR(b, s, 7100)
	}
	return r
}

// startSink starts a server in ns that reads each connection to the end
// and reports how many bytes it got.
func startSink(tb testing.TB, ns *testnet.NS, port int) <-chan int64 {
	ln, err := ns.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		tb.Fatal(err)
	}
	got := make(chan int64, 16)
	done := make(chan struct{})
	tb.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for range 100 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			got <- n
		}
	}()
	return got
}

// bulk sends from VM-A to the sink for benchBulkTime or benchBulkBytes,
// whichever comes first, and returns MB/s (10^6 bytes) as received.
func bulk(tb testing.TB, s *sites, sink <-chan int64, port int) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.vmA.Dial(ctx, nil, "tcp", netip.AddrPortFrom(s.vmB4, uint16(port)).String())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	start := time.Now()
	_ = c.SetDeadline(start.Add(benchBulkTime + 10*time.Second))
	var sent int64
	for sent < benchBulkBytes && time.Since(start) < benchBulkTime {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			tb.Fatalf("bulk write after %d bytes: %v", sent, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		tb.Fatal(err)
	}
	select {
	case n := <-sink:
		el := time.Since(start)
		if n != sent {
			tb.Fatalf("sink got %d of %d bytes", n, sent)
		}
		return float64(n) / el.Seconds() / 1e6
	case <-time.After(20 * time.Second):
		tb.Fatal("sink did not finish")
	}
	return 0
}

// tcpRR measures 1-byte request/response round trips to the echo server.
func tcpRR(tb testing.TB, s *sites, port int) (med, p99 time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.vmA.Dial(ctx, nil, "tcp", netip.AddrPortFrom(s.vmB4, uint16(port)).String())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(benchRRTime + 5*time.Second))
	var one [1]byte
	samples := make([]time.Duration, 0, benchRRCount)
	start := time.Now()
	for len(samples) < benchRRCount && time.Since(start) < benchRRTime {
		t0 := time.Now()
		if _, err := c.Write(one[:]); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(c, one[:]); err != nil {
			tb.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	slices.Sort(samples)
	return samples[len(samples)/2], samples[len(samples)*99/100]
}
