package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// BenchmarkTCPProfilesOverWAN measures the time to deliver a large response
// to a client behind a long, lossy, rate-limited path (the WAN emulator:
// 100 ms RTT, 1% loss, 50 Mbit/s) through a tcp virtual, with the clientside
// profile `tcp`, `tcp-wan-optimized` and an all-`auto` profile. Fulcrum
// listens inside the emulator's server namespace; its pool member is on the
// host's loopback. Run as root:
//
//	go test ./engine -run '^$' -bench TCPProfilesOverWAN -benchtime 1x -v
func BenchmarkTCPProfilesOverWAN(b *testing.B) {
	testnet.SkipIfNotRoot(b)
	const (
		size   = 8 << 20
		rounds = 3
	)
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
	times := make([][]time.Duration, len(profiles))
	for n := 0; n < b.N; n++ {
		for r := 0; r < rounds; r++ {
			for i := range profiles {
				d, err := fetchAll(wan, fmt.Sprintf("%s:%d", wan.ServerAddr, 18100+i), size)
				if err != nil {
					b.Fatalf("%s: %v", profiles[i], err)
				}
				times[i] = append(times[i], d)
			}
		}
	}
	base := median(times[0])
	b.Logf("%d MiB over 100 ms RTT, 1%% loss, 50 Mbit/s; median of %d rounds", size>>20, rounds*b.N)
	b.Logf("%-20s %10s %12s %8s", "clientside profile", "seconds", "Mbit/s", "vs tcp")
	for i, p := range profiles {
		m := median(times[i])
		b.Logf("%-20s %10.2f %12.2f %7.2fx", p, m.Seconds(), float64(size*8)/m.Seconds()/1e6, base.Seconds()/m.Seconds())
		b.ReportMetric(m.Seconds(), p+"-s")
	}
	b.Logf("WAN: %v", wan.Stats())
}

// blasterEach serves every connection size bytes, then closes it.
func blasterEach(tb testing.TB, size int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
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
