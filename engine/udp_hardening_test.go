package engine

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
)

// udpAsk sends msg on c and waits up to wait for a reply ("" when none).
func udpAsk(t *testing.T, c net.Conn, msg string, wait time.Duration) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// Issue 7, item 6: a flood of source ports fills a udp virtual's flow table
// up to its connection_limit and no further; a new client is refused while it
// is full and served once the flood's flows have idled out; every member slot
// comes back.
func TestUDPFloodBoundedAndExpires(t *testing.T) {
	const limit = 20
	member := udpEcho(t, "m")
	port := freeUDPPort(t)
	e := startEngine(t, fmt.Sprintf(`
pools:
  dns:
    members:
      - address: %s
virtuals:
  vs_udp:
    destination: 127.0.0.1:%d
    type: udp
    pool: dns
    idle_timeout: 2s
    connection_limit: %d
management:
  address: "off"
`, member, port, limit))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dial := func() net.Conn {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// The flood: limit+10 source ports, one datagram each, sent at once
	// (well within the idle timeout), then the replies collected.
	flood := make([]net.Conn, limit+10)
	for i := range flood {
		flood[i] = dial()
		if _, err := flood[i].Write([]byte("f")); err != nil {
			t.Fatal(err)
		}
	}
	var served int
	until := time.Now().Add(300 * time.Millisecond)
	buf := make([]byte, 64)
	for _, c := range flood {
		c.SetReadDeadline(until)
		if _, err := c.Read(buf); err == nil {
			served++
		}
	}
	if served != limit {
		t.Errorf("%d flood clients served, want the limit %d", served, limit)
	}
	if n := len(e.Connections(api.ConnQuery{Virtual: "vs_udp"})); n != limit {
		t.Errorf("flow table holds %d flows, want %d", n, limit)
	}
	late := dial()
	if got := udpAsk(t, late, "late", 200*time.Millisecond); got != "" {
		t.Fatalf("new client served with a full table: %q", got)
	}
	if r := e.Virtuals()[0].Rejected; r != 11 {
		t.Errorf("rejected = %d, want 11 (10 flood clients over the limit, then the late one)", r)
	}
	waitFor(t, "the flood's flows to idle out", 5*time.Second, func() bool {
		return len(e.Connections(api.ConnQuery{})) == 0
	})
	if got := udpAsk(t, late, "late", 2*time.Second); got != "m:late" {
		t.Fatalf("new client after the flood expired: %q", got)
	}
	if a := e.Pools()[0].Members[0].Active; a != 1 {
		t.Errorf("member active connections %d with one flow", a)
	}
	waitFor(t, "the last flow to idle out", 5*time.Second, func() bool {
		return len(e.Connections(api.ConnQuery{})) == 0
	})
	if a := e.Pools()[0].Members[0].Active; a != 0 {
		t.Errorf("member active connections %d after every flow ended", a)
	}
	if a := e.Virtuals()[0].Active; a != 0 {
		t.Errorf("virtual active %d after every flow ended", a)
	}
}
