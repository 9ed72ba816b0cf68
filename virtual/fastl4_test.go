package virtual

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/sockmap"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// logCounter counts log records at warn and above whose message has sub.
type logCounter struct {
	slog.Handler
	mu  *sync.Mutex
	n   *int
	sub string
}

func (h logCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && strings.Contains(r.Message, h.sub) {
		h.mu.Lock()
		*h.n++
		h.mu.Unlock()
	}
	return nil
}

func (h logCounter) Enabled(context.Context, slog.Level) bool { return true }

// TestFastL4FallbackWhenKernelRelayFails: a kernel relay that cannot be
// created leaves the virtual relaying in user space, says so once, and
// shows the mode.
func TestFastL4FallbackWhenKernelRelayFails(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	var mu sync.Mutex
	var notices int
	log := slog.New(logCounter{slog.DiscardHandler, &mu, &notices, "user space"})
	member := addrPortOf(echo.Addr())
	p := &Plan{
		Name: "vs", Type: "fastl4", Destination: netip.MustParseAddrPort("127.0.0.1:0"),
		Pool:  pool.New(pool.Config{Name: "p", Members: []pool.MemberConfig{{Addr: member, Ratio: 1}}}, nil, log),
		Conns: conntrack.NewTable(), ConnectTimeout: time.Second, Stats: &Stats{}, Log: log,
		FastL4: FastL4Settings{KernelRelay: true, ResetOnTimeout: true},
		NewKernelRelay: func(sockmap.Options) (*sockmap.Relay, error) {
			return nil, errors.New("injected: no sockmap")
		},
	}
	l, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAndWait(l)
	for i := range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("ping"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
			t.Fatalf("flow %d: %q, %v", i, got, err)
		}
		c.Close()
	}
	if m := p.Stats.FastL4.RelayMode(); !strings.HasPrefix(m, "user: kernel relay unavailable: injected") {
		t.Errorf("mode %q", m)
	}
	if k, u := p.Stats.FastL4.KernelFlows.Load(), p.Stats.FastL4.UserFlows.Load(); k != 0 || u != 3 {
		t.Errorf("kernel %d, user %d flows; want 0 and 3", k, u)
	}
	l.Swap(p) // a reload that keeps the virtual does not try (or warn) again
	mu.Lock()
	defer mu.Unlock()
	if notices != 1 {
		t.Errorf("%d notices, want 1", notices)
	}
}
