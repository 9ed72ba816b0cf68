package pool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for slow ramp and passive detection tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuf collects JSON log records.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the decoded log records with the given msg.
func (b *logBuf) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80)
}

// members returns n enabled members 10.0.0.1:80 .. 10.0.0.n:80 with ratio 1.
func members(n int) []MemberConfig {
	out := make([]MemberConfig, n)
	for i := range out {
		out[i] = MemberConfig{Addr: addr(i + 1), Ratio: 1}
	}
	return out
}

// testPool builds a pool with a fake clock (nil: real clock).
func testPool(t testing.TB, cfg Config, clk *fakeClock, prev *Pool) *Pool {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "web"
	}
	p := New(cfg, prev, slog.New(slog.DiscardHandler))
	if clk != nil {
		p.now = clk.Now
	}
	return p
}

// pickRelease picks n times, releasing each connection at once, and
// returns how many picks each member got.
func pickRelease(t testing.TB, p *Pool, n int, h Hint) map[netip.AddrPort]int {
	t.Helper()
	got := map[netip.AddrPort]int{}
	for range n {
		m, err := p.Pick(h)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[m.Addr()]++
		m.Release()
	}
	return got
}

// pickHold picks n times without releasing.
func pickHold(t testing.TB, p *Pool, n int) map[netip.AddrPort]int {
	t.Helper()
	got := map[netip.AddrPort]int{}
	for range n {
		m, err := p.Pick(Hint{})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[m.Addr()]++
	}
	return got
}

func releaseAll(p *Pool) {
	for _, m := range p.Members() {
		for m.Active() > 0 {
			m.Release()
		}
	}
}

func within(got, want, tol float64) bool { return got >= want-tol && got <= want+tol }

func share(counts map[netip.AddrPort]int, a netip.AddrPort) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	return float64(counts[a]) / float64(total)
}

func fmtCounts(counts map[netip.AddrPort]int) string {
	var b strings.Builder
	for i := 1; i <= 64; i++ {
		if c, ok := counts[addr(i)]; ok {
			fmt.Fprintf(&b, "%s=%d ", addr(i), c)
		}
	}
	return b.String()
}

func mustAddrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
