package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/mirror"
)

// mirrorStatus is device n's GET /api/v1/mirroring for tg1.
func (l *lab) mirrorStatus(n string) (mirror.GroupStatus, error) {
	resp, err := l.devs[n].api.Get("http://127.0.0.1:9090/api/v1/mirroring")
	if err != nil {
		return mirror.GroupStatus{}, err
	}
	defer resp.Body.Close()
	var st mirror.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return mirror.GroupStatus{}, err
	}
	for _, g := range st.Groups {
		if g.Name == "tg1" {
			return g, nil
		}
	}
	return mirror.GroupStatus{}, fmt.Errorf("no tg1 in %+v", st)
}

// sourceAddr is the i-th client source address (10.79.0.0/16).
func sourceAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 79, byte(i >> 8), byte(i)})
}

// visit connects to the virtual server from each source address in
// [0, n) (workers at a time) and returns "DEVICE MEMBER" per source ("" :
// no answer).
func (l *lab) visit(t *testing.T, n, workers int) []string {
	t.Helper()
	out := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	addr := netip.AddrPortFrom(vip, uint16(vipPort)).String()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceAddr(i).AsSlice()}, Timeout: 2 * time.Second}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				c, err := l.client.Dial(ctx, d, "tcp", addr)
				cancel()
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(2 * time.Second))
				b := make([]byte, 16)
				k, _ := io.ReadAtLeast(c, b, 3)
				c.Close()
				out[i] = strings.TrimSpace(string(b[:k]))
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// TestPersistenceMirroring: 10,000 clients (distinct source addresses)
// get source-address persistence records on the active device; the
// records are mirrored to the standby; the active is killed; on the new
// active every client reaches the member it had. The old active, back,
// receives a full resynchronisation.
func TestPersistenceMirroring(t *testing.T) {
	t.Parallel()
	const clients = 10000
	l := newLabWith(t, "hm", ciSettings, "", persistMirrored)
	l.start("a")
	l.start("b")
	p := l.startProber()
	l.waitActive(p, "a", 5*time.Second)
	p.stop() // the prober's own source address would be one more record

	start := time.Now()
	before := l.visit(t, clients, 8)
	took := time.Since(start)
	perMember := map[string]int{}
	for i, r := range before {
		if !strings.HasPrefix(r, "a ") {
			t.Fatalf("client %d (%s) got %q before the failover, want device a", i, sourceAddr(i), r)
		}
		perMember[r]++
	}
	if len(perMember) != 2 {
		t.Fatalf("the clients went to %v: the test needs both members used", perMember)
	}
	var sa, sb mirror.GroupStatus
	if !eventually(10*time.Second, func() bool {
		var err1, err2 error
		sa, err1 = l.mirrorStatus("a")
		sb, err2 = l.mirrorStatus("b")
		return err1 == nil && err2 == nil && sa.Lag == 0 && sb.Received >= clients
	}) {
		t.Fatalf("mirroring did not catch up: a %+v, b %+v", sa, sb)
	}
	t.Logf("%d connections in %s, each a new record on a; b received %d records, a's lag %d, a connected to %s",
		clients, took.Round(time.Millisecond), sb.Received, sa.Lag, sa.Connected)

	// Unplanned failover: kill -9.
	l.signal("a", syscall.SIGKILL)
	if !eventually(ciSettings.deadTime+5*time.Second, func() bool { return l.group("b").State == "active" }) {
		t.Fatal("b did not take over")
	}
	after := l.visit(t, clients, 8)
	kept, lost, unanswered := 0, 0, 0
	for i := range after {
		switch {
		case after[i] == "":
			unanswered++
		case strings.TrimPrefix(after[i], "b ") == strings.TrimPrefix(before[i], "a "):
			kept++
		default:
			lost++
			if lost <= 3 {
				t.Errorf("client %s: member %q before, %q after the failover", sourceAddr(i), before[i], after[i])
			}
		}
	}
	t.Logf("after kill -9 of the active: %d of %d clients reached their member on b, %d another member, %d no answer", kept, clients, lost, unanswered)
	if kept != clients {
		t.Fatalf("%d of %d persistence records honoured after the failover", kept, clients)
	}

	// a returns as standby and gets the whole table from b.
	l.start("a")
	var ra mirror.GroupStatus
	if !eventually(10*time.Second, func() bool {
		var err error
		ra, err = l.mirrorStatus("a")
		return err == nil && ra.Received >= clients
	}) {
		t.Fatalf("the returning device was not resynchronised: %+v", ra)
	}
	if sb, _ := l.mirrorStatus("b"); sb.Role != "sending" || sb.Resyncs < 1 {
		t.Errorf("b's mirroring: %+v", sb)
	}
}
