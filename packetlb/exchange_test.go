package packetlb

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
	"github.com/fulcrum-adc/fulcrum/lbsp"
	"golang.org/x/sys/unix"
)

// The seed's exchange figures on the wire, checked with tshark on the
// client's link: the first packet goes to the VIP with the client's
// identity and no server; the response (from the VIP, straight from the
// server: direct server return) names the serving server; the session's
// next connection goes straight to that server (the client helper's
// direct follow-up), with the option naming it, and the load balancer
// never sees it.
func TestExchangeOnTheWire(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (apt-get install tshark): the wire is not checked")
	}
	l := newPktLabWith(t, nil)
	for i, s := range l.servers {
		ipIn(t, s, "addr", "add", pVIP.Addr().String()+"/128", "dev", "lo", "nodad")
		var ln *lbsp.Listener
		if err := s.Do(func() error {
			var err error
			ln, err = lbsp.Listen(context.Background(), "[::]:80", pServer[i], 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		name := pServer[i].String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(name))
				c.Close()
			}
		}()
	}
	ipIn(t, l.client, "-6", "route", "add", "fd00:2::/64", "via", "fd00:1::1") // the servers are routable
	f := l.startForwarder(t)

	// Capture the client's link with a packet socket in its namespace (both
	// directions, IPv6 packets as they are), then let tshark decode the
	// pcap: no waiting for a capture process to attach.
	pcap := filepath.Join(t.TempDir(), "client.pcap")
	home := t.TempDir()
	capture := captureIPv6(t, l.client, "eth0")

	c1 := lbsp.ClientFromAddr(pClient)
	cl := &lbsp.Client{Identity: c1, Direct: true}
	var served []string
	var learnt netip.Addr
	for i := range 2 {
		var c *lbsp.ClientConn
		if err := l.client.Do(func() error {
			var err error
			c, err = cl.DialContext(context.Background(), pVIP.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, string(b))
		if i == 0 {
			var ok bool
			if learnt, ok = c.Learn(); !ok || learnt.String() != string(b) {
				t.Fatalf("learnt %v %v from the response, want %s", learnt, ok, b)
			}
		}
		if remote := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); (i == 0) != (remote == pVIP.Addr()) {
			t.Fatalf("connection %d went to %s", i, remote)
		}
		c.Close()
	}
	if served[1] != served[0] {
		t.Fatalf("served by %v", served)
	}
	time.Sleep(200 * time.Millisecond)
	writePcap(t, pcap, capture())
	if st := f.Stats(); st.NewFlows != 1 {
		t.Errorf("the load balancer saw %d flows, want only the first connection", st.NewFlows)
	}

	cmd := exec.Command("tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=|",
		"-e", "ipv6.src", "-e", "ipv6.dst", "-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "ipv6.opt.type", "-e", "ipv6.opt.experimental", "-e", "_ws.malformed")
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home)
	var rerr bytes.Buffer
	cmd.Stderr = &rerr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r: %v: %s", err, rerr.String())
	}
	want := func(a netip.Addr) string {
		c, s := c1, [16]byte{}
		if a.IsValid() {
			s = a.As16()
		}
		return hex.EncodeToString(c[:]) + hex.EncodeToString(s[:])
	}
	var firstSYN, response, directSYN bool
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 7 {
			continue
		}
		src, dst, syn, ack, data, malformed := f[0], f[1], f[2] == "1" || f[2] == "True", f[3] == "1" || f[3] == "True", strings.ReplaceAll(f[5], ":", ""), f[6]
		if malformed != "" {
			t.Errorf("tshark: malformed frame %s", line)
		}
		switch {
		case src == pClient.String() && dst == pVIP.Addr().String() && syn && !ack && data == want(netip.Addr{}):
			firstSYN = true
		case src == pVIP.Addr().String() && dst == pClient.String() && data == want(learnt):
			response = true
		case src == pClient.String() && dst == learnt.String() && syn && !ack && data == want(learnt):
			directSYN = true
		}
	}
	t.Logf("%d frames on the client's link", strings.Count(string(out), "\n"))
	if !firstSYN || !response || !directSYN {
		t.Fatalf("on the wire: first SYN to the VIP with C1 and no server %v; response naming %s %v; SYN straight to %s naming it %v\n%s",
			firstSYN, learnt, response, learnt, directSYN, out)
	}
}

// captureIPv6 captures the IPv6 packets crossing ifname (in ns) in both
// directions until the returned function is called, which returns them.
func captureIPv6(t *testing.T, ns *testnet.NS, ifname string) func() [][]byte {
	t.Helper()
	var fd int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// ETH_P_ALL: the kernel shows outgoing frames only to such taps.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50000})
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		pkts [][]byte
		stop atomic.Bool
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for !stop.Load() {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // the receive timeout: look at stop again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Protocol != htons(unix.ETH_P_IPV6) {
				continue
			}
			mu.Lock()
			pkts = append(pkts, append([]byte(nil), buf[:n]...))
			mu.Unlock()
		}
	}()
	return func() [][]byte {
		stop.Store(true)
		<-done
		unix.Close(fd)
		mu.Lock()
		defer mu.Unlock()
		return pkts
	}
}

// writePcap writes IPv6 packets as a pcap file (LINKTYPE_RAW).
func writePcap(t *testing.T, path string, pkts [][]byte) {
	t.Helper()
	var b bytes.Buffer
	for _, v := range []any{uint32(0xa1b2c3d4), uint16(2), uint16(4), int32(0), uint32(0), uint32(65535), uint32(101)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	for i, p := range pkts {
		for _, v := range []uint32{uint32(1700000000 + i), 0, uint32(len(p)), uint32(len(p))} {
			binary.Write(&b, binary.LittleEndian, v)
		}
		b.Write(p)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
