// Command wanem starts Fulcrum's WAN emulator (package internal/testnet):
// a client and a server network namespace joined through a router namespace
// whose user-space delay line adds one-way delay, jitter and random loss,
// with an optional tc tbf rate limit. It prints the namespace names and
// addresses so that you can `ip netns exec` into them, and tears everything
// down on Ctrl-C.
//
// With -bulk it instead runs bulk TCP transfers from client to server for
// each congestion control in -cc and prints a Markdown table.
//
// Usage:
//
//	wanem [-delay 50ms] [-jitter 0] [-loss 0.01] [-rate 50M] [-bulk 25s -cc cubic,bbr -rounds 2]
//	wanem -cleanup   # delete namespaces left by wanem/test processes that died
//
// It needs root. It only creates namespaces named fwan-*, never touches the
// host namespace, and addresses only 198.18.0.0/15 and 2001:db8::/32 inside
// them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wanem:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		delay   = flag.Duration("delay", 50*time.Millisecond, "one-way delay, each direction (RTT is twice this)")
		jitter  = flag.Duration("jitter", 0, "jitter added to each packet's delay")
		normal  = flag.Bool("normal", false, "normal jitter with stddev -jitter (default: uniform ±jitter)")
		reorder = flag.Bool("reorder", false, "let jitter reorder packets")
		loss    = flag.Float64("loss", 0, "random loss probability per packet and direction (0.01 = 1%)")
		rate    = flag.String("rate", "0", "rate limit per direction in bit/s, with k/M/G suffixes (0 = none)")
		queue   = flag.Int("queue", 0, "tbf queue limit in bytes (0 = one bandwidth-delay product)")
		seed    = flag.Uint64("seed", 0, "random seed for loss and jitter (0 = random)")
		name    = flag.String("name", "", "namespace name prefix (default fwan-<pid>-<random>)")
		every   = flag.Duration("stats", 10*time.Second, "print delay-line counters this often (0 = never)")
		bulk    = flag.Duration("bulk", 0, "run bulk TCP transfers of this duration instead of waiting")
		ccs     = flag.String("cc", "cubic,bbr", "with -bulk: congestion controls to compare, comma separated")
		rounds  = flag.Int("rounds", 2, "with -bulk: rounds (each runs every -cc once, order alternating)")
		v6      = flag.Bool("6", false, "with -bulk: use IPv6")
		cleanup = flag.Bool("cleanup", false, "delete fwan-* namespaces whose creating process is gone, then exit")
	)
	flag.Parse()
	if *cleanup {
		return removeStale()
	}
	rateBits, err := parseRate(*rate)
	if err != nil {
		return err
	}
	dist := testnet.Uniform
	if *normal {
		dist = testnet.Normal
	}
	cfg := testnet.WANConfig{
		Delay: *delay, Jitter: *jitter, JitterDist: dist, Reorder: *reorder,
		Loss: *loss, RateBits: rateBits, QueueBytes: *queue, Seed: *seed, Name: *name,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := testnet.StartWAN(cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err := w.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "wanem: teardown:", err)
		}
	}()
	describe(w)
	if *bulk > 0 {
		return runBulk(ctx, w, *bulk, strings.Split(*ccs, ","), *rounds, *v6)
	}
	fmt.Println("\nCtrl-C tears the topology down.")
	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nfinal counters:")
			printStats(w)
			return nil
		case <-tick:
			printStats(w)
		}
	}
}

func parseRate(s string) (int64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "bit")
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1e6, s[:len(s)-1]
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "g"):
		mult, s = 1e9, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad -rate %q (want e.g. 50M, 2.5G, 800k or 0)", s)
	}
	return int64(v * mult), nil
}

func describe(w *testnet.WAN) {
	c, r, s := w.Names()
	cfg := w.Config()
	fmt.Printf("WAN up: delay %v each way (RTT %v), jitter %v %v, loss %g, rate %s, seed %d\n",
		cfg.Delay, 2*cfg.Delay, cfg.Jitter, cfg.JitterDist, cfg.Loss, rateString(cfg.RateBits), cfg.Seed)
	if cfg.RateBits > 0 {
		p := testnet.TBFFor(cfg)
		fmt.Printf("tbf on %s/%s and %s/%s: burst %d B, limit %d B\n", r, testnet.WANRouterToCli, r, testnet.WANRouterToSrv, p.Burst, p.Limit)
	}
	fmt.Printf("  client  netns %-28s %s  %s  (dev %s)\n", c, w.ClientAddr, w.ClientAddr6, testnet.WANEndpointIf)
	fmt.Printf("  router  netns %-28s delay line between %s and %s\n", r, testnet.WANRouterToCli, testnet.WANRouterToSrv)
	fmt.Printf("  server  netns %-28s %s  %s  (dev %s)\n", s, w.ServerAddr, w.ServerAddr6, testnet.WANEndpointIf)
	fmt.Printf("try:\n  ip netns exec %s python3 -m http.server --bind %s 8080 &\n  ip netns exec %s curl -o /dev/null -w '%%{time_total}\\n' http://%s:8080/\n",
		s, w.ServerAddr, c, w.ServerAddr)
}

func rateString(b int64) string {
	if b == 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%g Mbit/s", float64(b)/1e6)
}

func printStats(w *testnet.WAN) {
	st := w.Stats()
	fmt.Printf("%s client→server %v\n", time.Now().Format("15:04:05"), st.ClientToServer)
	fmt.Printf("%s server→client %v\n", time.Now().Format("15:04:05"), st.ServerToClient)
}

func runBulk(ctx context.Context, w *testnet.WAN, d time.Duration, ccs []string, rounds int, v6 bool) error {
	cfg := w.Config()
	type row struct {
		cc  string
		res []testnet.BulkResult
	}
	rows := make([]*row, len(ccs))
	for i, cc := range ccs {
		rows[i] = &row{cc: strings.TrimSpace(cc)}
	}
	for r := 0; r < rounds; r++ {
		order := slices.Clone(rows)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, rw := range order {
			fmt.Fprintf(os.Stderr, "round %d: %s for %v ...\n", r+1, rw.cc, d)
			res, err := w.Bulk(ctx, testnet.BulkConfig{Duration: d, CongestionControl: rw.cc, IPv6: v6})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "  %.2f Mbit/s, %d retransmits / %d segments, srtt %v\n",
				res.BitsPerSecond/1e6, res.Retransmits, res.SegmentsOut, res.SmoothedRTT)
			rw.res = append(rw.res, res)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	kernelDefault, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	fmt.Printf("\nBulk TCP, client→server, %v per transfer, %d rounds; RTT %v, loss %g%% each way, rate %s; kernel default cc: %s\n\n",
		d, rounds, 2*cfg.Delay, cfg.Loss*100, rateString(cfg.RateBits), strings.TrimSpace(string(kernelDefault)))
	fmt.Println("| congestion control | goodput per round (Mbit/s) | median (Mbit/s) | % of rate | retransmitted segments | smoothed RTT at end | ratio to first |")
	fmt.Println("|---|---|---|---|---|---|---|")
	var base float64
	for i, rw := range rows {
		var g []float64
		var rtx, segs uint64
		var rtts []string
		for _, r := range rw.res {
			g = append(g, r.BitsPerSecond/1e6)
			rtx += uint64(r.Retransmits)
			segs += uint64(r.SegmentsOut)
			rtts = append(rtts, r.SmoothedRTT.Round(time.Millisecond).String())
		}
		med := median(g)
		if i == 0 {
			base = med
		}
		pct := "—"
		if cfg.RateBits > 0 {
			pct = fmt.Sprintf("%.0f%%", 100*med*1e6/float64(cfg.RateBits))
		}
		per := make([]string, len(g))
		for j, v := range g {
			per[j] = fmt.Sprintf("%.2f", v)
		}
		fmt.Printf("| %s | %s | %.2f | %s | %.2f%% (%d/%d) | %s | %.2f× |\n",
			rw.cc, strings.Join(per, ", "), med, pct, 100*float64(rtx)/float64(max(segs, 1)), rtx, segs, strings.Join(rtts, ", "), med/base)
	}
	fmt.Println()
	printStats(w)
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// removeStale deletes fwan-<pid>-* namespaces whose pid no longer runs.
func removeStale() error {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != "fwan" {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
			continue // still running
		}
		if ns, err := testnet.OpenNS(e.Name()); err == nil {
			ns.Close()
		}
		if err := testnet.DeleteNS(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Println("deleted", e.Name())
	}
	return errors.Join(errs...)
}
