package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/virtual"
)

// connDetail returns the detail of the only connection of the engine.
func connDetail(t *testing.T, e *Engine) virtual.ConnDetail {
	t.Helper()
	var d virtual.ConnDetail
	waitFor(t, "a connection with both sides in the table", 5*time.Second, func() bool {
		cs := e.Connections(api.ConnQuery{})
		if len(cs) != 1 || cs[0].Server == "" {
			return false
		}
		cd, err := e.Connection(cs[0].ID)
		if err != nil {
			return false
		}
		return json.Unmarshal(cd.Detail, &d) == nil && d.Serverside.Applied != nil
	})
	return d
}

// TestTCPProfilesAppliedOnBothSides proxies a real connection through a
// virtual with different clientside and serverside profiles and reads every
// option back from the proxy's two sockets.
func TestTCPProfilesAppliedOnBothSides(t *testing.T) {
	m1, _ := echoServer(t, "one")
	port := freePort(t)
	e := startEngine(t, (`
profiles:
  tcp:
    front:
      parent: tcp-wan-optimized
      nagle: true
      keepalive_interval: 75s
      congestion_control: reno
      send_buffer: 48KiB
      receive_window: 40KiB
      user_timeout: 7s
      fin_wait_2_timeout: 11s
      notsent_lowat: 64KiB
      ip_tos: 40
      link_qos: 2
      delayed_ack: false
    back:
      parent: tcp-lan-optimized
      congestion_control: bbr
      syn_max_retrans: 2
      send_buffer: 96KiB
      receive_window: 80KiB
      keepalive_interval: 0
      mss: 1200
      pacing_rate: 100MB/s
      min_rto: 50ms
`)+tcpVirtualYAML(port, "    clientside_tcp: front\n    serverside_tcp: back\n", m1))
	c, br := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port))
	if got := roundTrip(t, c, br, "hi"); got != "one:hi" {
		t.Fatal(got)
	}
	d := connDetail(t, e)
	cs, ss := d.Clientside, d.Serverside
	if cs.Profile != "front" || ss.Profile != "back" {
		t.Fatalf("profiles in force: %q / %q", cs.Profile, ss.Profile)
	}
	ca, sa := cs.Applied, ss.Applied
	checks := []struct {
		what      string
		got, want any
	}{
		{"client congestion control", ca.CongestionControl, "reno"},
		{"server congestion control", sa.CongestionControl, "bbr"},
		{"client Nagle on (nodelay off)", ca.NoDelay, false},
		{"server Nagle off (nodelay on)", sa.NoDelay, true},
		{"client keep-alive", ca.KeepAlive, true},
		{"client keep-alive interval", ca.KeepIdle, 75},
		{"server keep-alive off", sa.KeepAlive, false},
		{"client send buffer (kernel doubles)", ca.SendBuffer, 2 * 48 << 10},
		{"server send buffer", sa.SendBuffer, 2 * 96 << 10},
		{"client receive buffer", ca.ReceiveBuffer, 2 * 40 << 10},
		{"server receive buffer", sa.ReceiveBuffer, 2 * 80 << 10},
		{"client user timeout", ca.UserTimeoutMS, 7000},
		{"client FIN_WAIT_2", ca.Linger2, 11},
		{"client notsent lowat", ca.NotSentLowat, int64(64 << 10)},
		{"client ToS", ca.TOS, 40},
		{"client priority", ca.Priority, 2},
		{"server SYN retries", sa.SynCnt, 2},
		{"server pacing", sa.MaxPacingRate, uint64(100_000_000)},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: read back %v, want %v", c.what, c.got, c.want)
		}
	}
	if sa.MaxSeg > 1200 {
		t.Errorf("server MSS %d above the profile's 1200", sa.MaxSeg)
	}
	if sa.RTOMinUS >= 0 && (sa.RTOMinUS < 40000 || sa.RTOMinUS > 60000) {
		t.Errorf("server min RTO %d µs, want about 50 ms", sa.RTOMinUS)
	}
	if cs.Info == nil || ss.Info == nil || cs.Info.State != "ESTABLISHED" || ss.Info.RTT <= 0 || ss.Info.Cwnd == 0 {
		t.Errorf("TCP_INFO missing or implausible: client %+v server %+v", cs.Info, ss.Info)
	}
	// The proxy buffers come from the profiles: toward the client the
	// clientside's (wan: low = high), toward the server the serverside's.
	if d.ToClient.High != 131072 || d.ToClient.Low != 131072 || d.ToServer.High != 131072 || d.ToServer.Low != 98304 {
		t.Errorf("proxy buffers: to client %+v, to server %+v", d.ToClient, d.ToServer)
	}
}

// TestTCPProfileCloseWaitTimer: the client half-closes and the server never
// answers or closes; the clientside CLOSE_WAIT timer ends the connection.
func TestTCPProfileCloseWaitTimer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c // read nothing, never close
		}
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	port := freePort(t)
	e := startEngine(t, (`
profiles:
  tcp:
    short_close:
      close_wait_timeout: 1s
      fin_wait_timeout: 30s
`)+tcpVirtualYAML(port, "    clientside_tcp: short_close\n", ln.Addr().String()))
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "connection in the table", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 1 })
	start := time.Now()
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	took := time.Since(start)
	if took < 800*time.Millisecond || took > 5*time.Second {
		t.Errorf("connection ended %v after the client's FIN, want about the 1 s close_wait_timeout (err %v)", took, err)
	}
	waitFor(t, "connection table empty", 5*time.Second, func() bool { return len(e.Connections(api.ConnQuery{})) == 0 })
}

// TestTCPProfileResetOnIdleTimeout: idle expiry sends RST with
// reset_on_timeout, FIN without.
func TestTCPProfileResetOnIdleTimeout(t *testing.T) {
	m1, _ := echoServer(t, "one")
	for _, tc := range []struct {
		reset bool
		want  string
	}{{true, "reset"}, {false, "EOF"}} {
		t.Run(tc.want, func(t *testing.T) {
			port := freePort(t)
			startEngine(t, fmt.Sprintf(`
profiles:
  tcp:
    idle1:
      idle_timeout: 1s
      reset_on_timeout: %v
`, tc.reset)+tcpVirtualYAML(port, "    clientside_tcp: idle1\n", m1))
			c, br := dialLine(t, fmt.Sprintf("127.0.0.1:%d", port))
			roundTrip(t, c, br, "hi")
			c.SetReadDeadline(time.Now().Add(8 * time.Second))
			_, err := br.ReadByte()
			switch {
			case tc.reset && !errors.Is(err, syscall.ECONNRESET):
				t.Errorf("idle expiry with reset_on_timeout: read error %v, want connection reset", err)
			case !tc.reset && err != io.EOF:
				t.Errorf("idle expiry without reset_on_timeout: read error %v, want EOF", err)
			}
		})
	}
}

// TestTCPProfileZeroWindowTimeout: a client that stops reading keeps its
// window shut; the zero-window timer ends the connection.
func TestTCPProfileZeroWindowTimeout(t *testing.T) {
	port := freePort(t)
	e := startEngine(t, (`
profiles:
  tcp:
    zw:
      zero_window_timeout: 1s
      send_buffer: 16KiB
`)+tcpVirtualYAML(port, "    clientside_tcp: zw\n", blaster(t, 0)))
	dialSlowClient(t, fmt.Sprintf("127.0.0.1:%d", port))
	// Never read: the proxy's writes to us stall.
	waitFor(t, "the stalled connection to be ended by the zero-window timer", 10*time.Second, func() bool {
		return len(e.Connections(api.ConnQuery{})) == 0
	})
}

// TestProxyBufferResumesAtLowMark uses a small clientside send buffer so the
// proxy buffer drains in small steps, and checks reading resumes only below
// the low mark and never holds more than the high mark.
func TestProxyBufferResumesAtLowMark(t *testing.T) {
	const total = 8 << 20
	port := freePort(t)
	e := startEngine(t, (`
profiles:
  tcp:
    slowclient:
      send_buffer: 8KiB
      proxy_buffer_high: 256KiB
      proxy_buffer_low: 128KiB
`)+tcpVirtualYAML(port, "    clientside_tcp: slowclient\n", blaster(t, total)))
	c := dialSlowClient(t, fmt.Sprintf("127.0.0.1:%d", port))
	buf := make([]byte, 4096)
	var last virtual.BufferSnapshot
	resumeLevels := map[int64]bool{}
	for got := 0; got < total; {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if got%(64<<10) < 4096 {
			if b := toClientBuffer(e); b.Pauses > 0 {
				resumeLevels[b.LastResume] = true
				last = b
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("proxy buffer toward the client: %+v; resume levels seen %v", last, resumeLevels)
	if last.Pauses == 0 {
		t.Fatal("the fast server was never paused")
	}
	if last.MaxHeld > 256<<10 {
		t.Errorf("held %d bytes, above the 256 KiB high mark", last.MaxHeld)
	}
	for lvl := range resumeLevels {
		if lvl >= 128<<10 {
			t.Errorf("reading resumed with %d bytes held, not below the 128 KiB low mark", lvl)
		}
	}
}

// TestTCPLargeBuffersDoNotStall moves a large stream through a tcp virtual
// whose sockets have multi-megabyte buffers on both sides, in each
// direction, and fails if the flow ever stops for two seconds. (A splice(2)
// data path stalled exactly here.)
func TestTCPLargeBuffersDoNotStall(t *testing.T) {
	const total = 512 << 20
	profile := `
profiles:
  tcp:
    huge:
      send_buffer: 4MiB
      receive_window: 4MiB
`
	extra := "    clientside_tcp: huge\n    serverside_tcp: huge\n"
	t.Run("download", func(t *testing.T) {
		port := freePort(t)
		startEngine(t, profile+tcpVirtualYAML(port, extra, blaster(t, total)))
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		for got := 0; got < total; {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Read(buf)
			got += n
			if err != nil {
				t.Fatalf("after %d MiB the flow stopped: %v", got>>20, err)
			}
		}
	})
	t.Run("upload", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		received := make(chan int64, 1)
		go func() {
			s, err := ln.Accept()
			if err != nil {
				received <- -1
				return
			}
			defer s.Close()
			n, _ := io.Copy(io.Discard, s)
			received <- n
		}()
		port := freePort(t)
		startEngine(t, profile+tcpVirtualYAML(port, extra, ln.Addr().String()))
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		for sent := 0; sent < total; sent += len(buf) {
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(buf); err != nil {
				t.Fatalf("after %d MiB the flow stopped: %v", sent>>20, err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case n := <-received:
			if n != total {
				t.Errorf("member received %d bytes, want %d", n, total)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the member never saw the end of the upload")
		}
	})
}
