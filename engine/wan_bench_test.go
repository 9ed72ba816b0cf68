package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// BenchmarkTCPProfilesOverWAN measures the time to deliver a large response
// to a client behind a long, lossy, rate-limited path (the WAN emulator:
// 100 ms RTT, 1% loss, 50 Mbit/s) through a tcp virtual, with the clientside
// profile `tcp`, `tcp-wan-optimized` and an all-`auto` profile, beside the
// same client fetching the same bytes directly from a server in the
// emulator's server namespace ("direct": Linux's own buffer autotuning, the
// namespace's default congestion control, which the proxy's clientside
// sockets use too). Fulcrum listens inside the emulator's server namespace;
// its pool member is on the host's loopback. Variants are interleaved round
// by round (FULCRUM_WAN_ROUNDS rounds, default 5). With -v it also logs,
// per variant, TCP_INFO of the sending socket on the WAN side (the proxy's
// clientside socket, or the direct server's) sampled every 50 ms with ss(8)
// during the first transfer: congestion control, cwnd, send buffer, and the
// time the sender was limited by its send buffer or the receiver's window.
// bench/run's `wan` scenario runs it too. Run as root:
//
//	go test ./engine -run '^$' -bench TCPProfilesOverWAN -benchtime 1x -v
func BenchmarkTCPProfilesOverWAN(b *testing.B) {
	testnet.SkipIfNotRoot(b)
	const size = 8 << 20
	rounds := 5
	// bench/run's wan scenario runs one round per invocation.
	if n, err := strconv.Atoi(os.Getenv("FULCRUM_WAN_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	wan := testnet.NewWAN(b, testnet.WANConfig{Delay: 50 * time.Millisecond, Loss: 0.01, RateBits: 50_000_000})
	backend := blasterEach(b, size)
	profiles := []string{"tcp", "tcp-wan-optimized", "auto"}
	var yaml strings.Builder
	yaml.WriteString(`management: {address: "off"}
profiles:
  tcp:
    auto:
      send_buffer: auto
      receive_window: auto
      proxy_buffer_high: auto
      proxy_buffer_low: auto
      auto_buffer_ceiling: 8MiB
pools:
  p:
    members:
      - address: ` + backend + `
virtuals:
`)
	for i, p := range profiles {
		fmt.Fprintf(&yaml, "  vs_%d:\n    destination: %s:%d\n    type: tcp\n    pool: p\n    clientside_tcp: %s\n    serverside_tcp: tcp-lan-optimized\n",
			i, wan.ServerAddr, 18100+i, p)
	}
	cfg, err := config.Parse([]byte(yaml.String()), "wan-bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	e := New(Options{Log: testLogger(b)})
	defer e.Close(context.Background())
	// The listeners are opened inside the server namespace; the engine's
	// other goroutines (and so its dials to the member) stay on the host.
	if err := wan.Server.Do(func() error { return e.Apply(cfg) }); err != nil {
		b.Fatal(err)
	}
	// Direct: a server in the server namespace sends the same bytes with
	// Go's default socket (no SO_SNDBUF: Linux autotunes it).
	direct := blasterIn(b, wan.Server, wan.ServerAddr.String()+":0", size)
	type variant struct{ name, addr string }
	variants := []variant{{"direct", direct}}
	for i, p := range profiles {
		variants = append(variants, variant{p, fmt.Sprintf("%s:%d", wan.ServerAddr, 18100+i)})
	}
	times := make([][]time.Duration, len(variants))
	samples := make([][]ssSample, len(variants))
	for n := 0; n < b.N; n++ {
		for r := 0; r < rounds; r++ {
			for i, v := range variants {
				// TCP_INFO of the sender in the first round only: ss costs
				// a few milliseconds of CPU per sample.
				var stop func() []ssSample
				if n == 0 && r == 0 && testing.Verbose() {
					stop = sampleSender(wan.Server, v.addr, 50*time.Millisecond)
				}
				d, err := fetchAll(wan, v.addr, size)
				if stop != nil {
					samples[i] = stop()
				}
				if err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
				times[i] = append(times[i], d)
			}
		}
	}
	cc, _ := wan.Server.Run(context.Background(), "sysctl", "-n", "net.ipv4.tcp_congestion_control")
	b.Logf("congestion control of every sender (the server namespace's default, inherited from the host): %s", strings.TrimSpace(string(cc)))
	base := median(times[0])
	b.Logf("%d MiB over 100 ms RTT, 1%% loss, 50 Mbit/s; median of %d rounds, variants interleaved", size>>20, rounds*b.N)
	b.Logf("%-20s %8s %8s %9s  %s", "clientside profile", "seconds", "Mbit/s", "vs direct", "every round (s)")
	for i, v := range variants {
		m := median(times[i])
		var all []string
		for _, d := range times[i] {
			all = append(all, fmt.Sprintf("%.2f", d.Seconds()))
		}
		b.Logf("%-20s %8.2f %8.2f %8.2fx  %s", v.name, m.Seconds(), float64(size*8)/m.Seconds()/1e6, base.Seconds()/m.Seconds(), strings.Join(all, " "))
		b.ReportMetric(m.Seconds(), v.name+"-s")
	}
	for i, v := range variants {
		b.Logf("TCP_INFO of the %s sender on the WAN side, first round:", v.name)
		for _, s := range samples[i] {
			b.Logf("  %s", s)
		}
	}
	b.Logf("WAN: %v", wan.Stats())
}

// ssSample is one line of ss -tinm about the sending socket.
type ssSample struct {
	at     time.Duration
	fields map[string]string
}

func (s ssSample) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.2fs", s.at.Seconds())
	for _, k := range []string{"cc", "cwnd", "ssthresh", "rtt", "skmem", "bytes_acked", "unacked", "retrans", "delivery_rate", "app_limited", "busy", "rwnd_limited", "sndbuf_limited", "notsent"} {
		if v, ok := s.fields[k]; ok {
			if v == "" {
				fmt.Fprintf(&b, " %s", k)
			} else {
				fmt.Fprintf(&b, " %s:%s", k, v)
			}
		}
	}
	return b.String()
}

// sampleSender polls ss(8) inside ns for established sockets whose local
// address is addr (the sending side of a fetch) every interval, until the
// returned function is called.
func sampleSender(ns *testnet.NS, addr string, interval time.Duration) func() []ssSample {
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []ssSample)
	start := time.Now()
	go func() {
		var out []ssSample
		defer func() { done <- out }()
		for ctx.Err() == nil {
			b, err := ns.Command(ctx, "ss", "-tinmH", "state", "established", "( sport = :"+port+" )").Output()
			if err == nil {
				if f := parseSS(string(b)); len(f) > 0 {
					out = append(out, ssSample{at: time.Since(start), fields: f})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(interval):
			}
		}
	}()
	return func() []ssSample { cancel(); return <-done }
}

// parseSS reads the first socket of ss -tinm: "key:value" words, the
// congestion control's name (a word on its own) and flags (app_limited).
func parseSS(out string) map[string]string {
	f := map[string]string{}
	words := strings.Fields(out)
	for i, w := range words {
		if i < 2 {
			continue // the addresses
		}
		if k, v, ok := strings.Cut(w, ":"); ok && k != "" && !strings.Contains(k, "(") {
			if k == "delivery_rate" || k == "send" || k == "pacing_rate" {
				continue // value is the next word
			}
			f[k] = v
			continue
		}
		switch {
		case strings.HasPrefix(w, "skmem:"):
		case w == "cubic" || w == "bbr" || w == "reno" || w == "htcp" || w == "vegas" || w == "westwood" || w == "dctcp" || w == "bic":
			f["cc"] = w
		case w == "app_limited":
			f[w] = ""
		case (w == "delivery_rate" || w == "send") && i+1 < len(words):
			f[w] = words[i+1]
		}
	}
	for _, w := range words {
		if v, ok := strings.CutPrefix(w, "skmem:"); ok {
			// (r0,rb…,t0,tb…,f0,w…,…): the send buffer's size (tb) and
			// what is queued in it (w).
			var keep []string
			for _, p := range strings.Split(strings.Trim(v, "()"), ",") {
				if strings.HasPrefix(p, "tb") || strings.HasPrefix(p, "w") {
					keep = append(keep, p)
				}
			}
			f["skmem"] = strings.Join(keep, ",")
		}
	}
	return f
}

// blasterIn is blasterEach listening at addr inside ns.
func blasterIn(tb testing.TB, ns *testnet.NS, addr string, size int) string {
	ln, err := ns.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return serveEach(tb, ln, size)
}

// blasterEach serves every connection size bytes, then closes it.
func blasterEach(tb testing.TB, size int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveEach(tb, ln, size)
}

// serveEach writes size bytes to every connection ln accepts, then closes it.
func serveEach(tb testing.TB, ln net.Listener, size int) string {
	tb.Cleanup(func() { ln.Close() })
	go func() {
		buf := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for sent := 0; sent < size; sent += len(buf) {
					if _, err := c.Write(buf[:min(len(buf), size-sent)]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// fetchAll connects from the client namespace and reads until EOF.
func fetchAll(wan *testnet.WAN, addr string, want int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := wan.Client.Dial(ctx, nil, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return 0, err
	}
	if n != int64(want) {
		return 0, fmt.Errorf("received %d bytes, want %d", n, want)
	}
	return time.Since(start), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
