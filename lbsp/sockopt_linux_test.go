//go:build linux

package lbsp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// These tests talk only to ::1. The ones that send options need
// CAP_NET_RAW and skip without it.

func loopback6(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
}

// canSend skips the test unless this process may send Destination Options
// (CAP_NET_RAW) on IPv6 loopback.
func canSend(t *testing.T) {
	t.Helper()
	loopback6(t)
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := SetDestOpts(c.(*net.UDPConn), BuildDestOpts(0)); err != nil {
		if errors.Is(err, os.ErrPermission) {
			t.Skipf("cannot send Destination Options: %v", err)
		}
		t.Fatal(err)
	}
}

func mustParse(t *testing.T, p Parser, hdrs [][]byte) Result {
	t.Helper()
	if len(hdrs) != 1 {
		t.Fatalf("got %d Destination Options headers, want 1: %x", len(hdrs), hdrs)
	}
	r, err := p.Parse(hdrs[0])
	if err != nil {
		t.Fatalf("Parse(%x): %v", hdrs[0], err)
	}
	if !r.Found {
		t.Fatalf("no LBSP option in %x", hdrs[0])
	}
	return r
}

func listenTCP(t *testing.T, control func(network, address string, c syscall.RawConn) error) *net.TCPListener {
	t.Helper()
	lc := net.ListenConfig{Control: control}
	ln, err := lc.Listen(context.Background(), "tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func recvControl(network, address string, c syscall.RawConn) error { return EnableRecvDestOptsRaw(c) }

func rfc2292Control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_2292DSTOPTS, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func dialTCP(t *testing.T, addr net.Addr, hdr []byte) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Control: DialerControl(hdr), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp6", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func accept(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawPktOptionTypes returns the control-message types IPV6_2292PKTOPTIONS
// gives for c, to check which spelling the kernel used.
func rawPktOptionTypes(t *testing.T, c *net.TCPConn) []int32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, pktOptionsBufLen)
	var n int
	var errno syscall.Errno
	rc.Control(func(fd uintptr) {
		l := uint32(len(buf))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_IPV6, unix.IPV6_2292PKTOPTIONS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
		n = int(l)
	})
	if errno != 0 {
		t.Fatal(errno)
	}
	msgs, err := unix.ParseSocketControlMessage(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	var types []int32
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IPV6 {
			types = append(types, m.Header.Type)
		}
	}
	return types
}

// The client identity the tests send, and the address of the server
// (the listener on ::1).
const (
	testClientAddr = "2001:db8::c1"
	testServerAddr = "::1"
)

func testClient() netip.Addr { return netip.MustParseAddr(testClientAddr) }
func testServer() netip.Addr { return netip.MustParseAddr(testServerAddr) }

func TestTCPServerReadsSYNOption(t *testing.T) {
	canSend(t)
	for _, tc := range []struct {
		name     string
		control  func(string, string, syscall.RawConn) error
		cmsgType int32
	}{
		{"IPV6_RECVDSTOPTS", recvControl, unix.IPV6_DSTOPTS},
		{"IPV6_2292DSTOPTS", rfc2292Control, unix.IPV6_2292DSTOPTS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln := listenTCP(t, tc.control)
			const typ = 0x3E // another experimental type, to see it is honoured
			p := Parser{Type: typ}
			sent := BuildDestOpts(0, Option{Client: ClientFromAddr(testClient())}.Append(nil, typ))
			dialTCP(t, ln.Addr(), sent)
			s := accept(t, ln)

			hdrs, err := TCPDestOpts(s)
			if err != nil {
				t.Fatal(err)
			}
			r := mustParse(t, p, hdrs)
			if r.NextHeader != unix.IPPROTO_TCP {
				t.Errorf("Next Header %d, want 6 (the kernel fills it in)", r.NextHeader)
			}
			if r.Option.ClientAddr() != testClient() || r.Option.HasServer() {
				t.Errorf("got %v, want client %v and no server", r.Option, testClient())
			}
			if got := hdrs[0][2:]; string(got) != string(sent[2:]) {
				t.Errorf("header body %x, sent %x", got, sent[2:])
			}
			if got := rawPktOptionTypes(t, s); len(got) != 1 || got[0] != tc.cmsgType {
				t.Errorf("control message types %v, want [%d]", got, tc.cmsgType)
			}
		})
	}
}

func TestTCPSYNOptionNeedsListenerSetting(t *testing.T) {
	canSend(t)
	ln := listenTCP(t, nil) // nothing enabled on the listener
	hdr := BuildDestOpts(0, Option{Client: ClientFromAddr(testClient())}.Append(nil, DefaultType))
	c := dialTCP(t, ln.Addr(), hdr)
	s := accept(t, ln)
	if err := EnableRecvDestOpts(s); err != nil {
		t.Fatal(err)
	}
	if hdrs, err := TCPDestOpts(s); err != nil || len(hdrs) != 0 {
		t.Fatalf("enabled after accept: got %x, %v; want nothing (the SYN was not kept)", hdrs, err)
	}
	// Later segments are kept once enabled.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	readN(t, s, 1)
	mustParse(t, Parser{}, tcpDestOpts(t, s))
}

func TestTCPOptionFollowsLatestSegment(t *testing.T) {
	canSend(t)
	ln := listenTCP(t, recvControl)
	hdr := BuildDestOpts(0, Option{Client: ClientFromAddr(testClient())}.Append(nil, DefaultType))
	c := dialTCP(t, ln.Addr(), hdr)
	s := accept(t, ln)

	// A segment carrying the (sticky) header keeps it readable.
	if _, err := c.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	readN(t, s, 1)
	mustParse(t, Parser{}, tcpDestOpts(t, s))

	// A segment without one clears it.
	if err := SetDestOpts(c, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	readN(t, s, 1)
	if hdrs := tcpDestOpts(t, s); len(hdrs) != 0 {
		t.Fatalf("after a segment without options: %x, want nothing", hdrs)
	}
}

// TestTCPRoundTrip is the seed's exchange: the client sends (C, ::) on its
// SYN, the server answers with (C, S) on its first data segment, and the
// client reads S.
func TestTCPRoundTrip(t *testing.T) {
	canSend(t)
	ln := listenTCP(t, recvControl)
	c := dialTCP(t, ln.Addr(), BuildDestOpts(0, Option{Client: ClientFromAddr(testClient())}.Append(nil, DefaultType)))
	s := accept(t, ln)

	// Nothing from the server yet: its SYN-ACK had no header.
	if hdrs := tcpDestOpts(t, c); len(hdrs) != 0 {
		t.Fatalf("client after connect: %x, want nothing", hdrs)
	}

	got := mustParse(t, Parser{}, tcpDestOpts(t, s)).Option
	reply := Option{Client: got.Client, Server: testServer()}
	if err := SetDestOpts(s, BuildDestOpts(0, reply.Append(nil, DefaultType))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	readN(t, c, 2)
	r := mustParse(t, Parser{}, tcpDestOpts(t, c))
	if r.Option != reply {
		t.Fatalf("client read %v, want %v", r.Option, reply)
	}
}

// TestTCPSynAckCarriesListenerOption: the SYN-ACK carries the listener's
// sticky header (the same for every client), and accepted sockets start
// with a copy of it.
func TestTCPSynAckCarriesListenerOption(t *testing.T) {
	canSend(t)
	ln := listenTCP(t, recvControl)
	lopt := Option{Server: testServer()}
	if err := SetDestOpts(ln, BuildDestOpts(0, lopt.Append(nil, DefaultType))); err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, ln.Addr(), nil)
	// connect has returned: only the SYN-ACK has arrived.
	if r := mustParse(t, Parser{}, tcpDestOpts(t, c)); r.Option != lopt {
		t.Fatalf("from the SYN-ACK: %v, want %v", r.Option, lopt)
	}
	s := accept(t, ln)
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	readN(t, c, 1)
	if r := mustParse(t, Parser{}, tcpDestOpts(t, c)); r.Option != lopt {
		t.Fatalf("from the accepted socket: %v, want the listener's %v", r.Option, lopt)
	}
}

func TestUDPRoundTrip(t *testing.T) {
	canSend(t)
	for _, tc := range []struct {
		name     string
		control  func(string, string, syscall.RawConn) error
		cmsgType int32
	}{
		{"IPV6_RECVDSTOPTS", recvControl, unix.IPV6_DSTOPTS},
		{"IPV6_2292DSTOPTS", rfc2292Control, unix.IPV6_2292DSTOPTS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lc := net.ListenConfig{Control: tc.control}
			pc, err := lc.ListenPacket(context.Background(), "udp6", "[::1]:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			srv := pc.(*net.UDPConn)

			d := net.Dialer{Control: DialerControl(BuildDestOpts(0, Option{Client: ClientFromAddr(testClient())}.Append(nil, DefaultType)))}
			cc, err := d.Dial("udp6", srv.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			cli := cc.(*net.UDPConn)
			if _, err := cli.Write([]byte("req")); err != nil {
				t.Fatal(err)
			}

			buf, oob := make([]byte, 64), make([]byte, 4096)
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, oobn, _, from, err := srv.ReadMsgUDP(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil || len(msgs) != 1 || msgs[0].Header.Type != tc.cmsgType {
				t.Fatalf("control messages %+v, %v; want one of type %d", msgs, err, tc.cmsgType)
			}
			hdrs, err := DestOptsFromCmsg(oob[:oobn])
			if err != nil {
				t.Fatal(err)
			}
			r := mustParse(t, Parser{KernelChecked: true}, hdrs)
			if r.NextHeader != unix.IPPROTO_UDP || r.Option.ClientAddr() != testClient() || r.Option.HasServer() {
				t.Fatalf("server read %+v", r)
			}

			// The unconnected server answers this client with a
			// per-datagram header.
			reply := Option{Client: r.Option.Client, Server: testServer()}
			oobw := AppendDestOptsCmsg(nil, BuildDestOpts(0, reply.Append(nil, DefaultType)))
			if _, _, err := srv.WriteMsgUDP([]byte("resp"), oobw, from); err != nil {
				t.Fatal(err)
			}
			cli.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, oobn, _, _, err = cli.ReadMsgUDP(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			hdrs, err = DestOptsFromCmsg(oob[:oobn])
			if err != nil {
				t.Fatal(err)
			}
			if r := mustParse(t, Parser{}, hdrs); r.Option != reply {
				t.Fatalf("client read %v, want %v", r.Option, reply)
			}
		})
	}
}

// TestSetDestOptsWithoutCapNetRaw drops CAP_NET_RAW from the effective set
// of one locked OS thread (the kernel checks the calling thread) and checks
// the error. The thread is never unlocked, so it exits with the goroutine.
func TestSetDestOptsWithoutCapNetRaw(t *testing.T) {
	loopback6(t)
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hdr := BuildDestOpts(0, Option{}.Append(nil, DefaultType))

	errc := make(chan error, 2)
	go func() {
		runtime.LockOSThread() // no unlock: the thread dies with us
		hd := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hd, &data[0]); err != nil {
			errc <- err
			errc <- err
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_RAW
		if err := unix.Capset(&hd, &data[0]); err != nil {
			errc <- err
			errc <- err
			return
		}
		errc <- SetDestOpts(c.(*net.UDPConn), hdr)
		// The per-datagram form needs it too (to ourselves, on ::1).
		uc := c.(*net.UDPConn)
		_, _, err := uc.WriteMsgUDP([]byte("x"), AppendDestOptsCmsg(nil, hdr), uc.LocalAddr().(*net.UDPAddr))
		errc <- err
	}()
	err = <-errc
	if err == nil {
		t.Fatal("SetDestOpts without CAP_NET_RAW succeeded")
	}
	if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Fatalf("got %v; want a permission error naming CAP_NET_RAW", err)
	}
	if err := <-errc; !errors.Is(err, unix.EPERM) {
		t.Fatalf("sendmsg with an IPV6_DSTOPTS control message: %v, want EPERM", err)
	}
}

func TestSetDestOptsRefusesMalformedHeader(t *testing.T) {
	loopback6(t)
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	legacy := legacyHeader()
	err = SetDestOpts(c.(*net.UDPConn), legacy)
	if !errors.Is(err, ErrLegacy) {
		t.Fatalf("got %v, want ErrLegacy", err)
	}
}

func TestDestOptsFromCmsg(t *testing.T) {
	h1 := BuildDestOpts(17, Option{Client: ClientFromAddr(testClient())}.Append(nil, DefaultType))
	h2 := BuildDestOpts(43)
	// An unrelated message (IPV6_HOPLIMIT) between the two.
	oob := AppendDestOptsCmsg(nil, h1)
	n := len(oob)
	oob = append(oob, make([]byte, unix.CmsgSpace(4))...)
	hl := (*unix.Cmsghdr)(unsafe.Pointer(&oob[n]))
	hl.Level, hl.Type = unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT
	hl.SetLen(unix.CmsgLen(4))
	oob = AppendDestOptsCmsg(oob, h2)

	hdrs, err := DestOptsFromCmsg(oob)
	if err != nil {
		t.Fatal(err)
	}
	if len(hdrs) != 2 || string(hdrs[0]) != string(h1) || string(hdrs[1]) != string(h2) {
		t.Fatalf("got %x, want %x and %x", hdrs, h1, h2)
	}
	if hdrs, err := DestOptsFromCmsg(nil); hdrs != nil || err != nil {
		t.Fatalf("empty: %x, %v", hdrs, err)
	}
	if _, err := DestOptsFromCmsg(oob[:20]); err == nil { // header says 56 octets
		t.Fatal("truncated control message accepted")
	}
}

func tcpDestOpts(t *testing.T, c *net.TCPConn) [][]byte {
	t.Helper()
	hdrs, err := TCPDestOpts(c)
	if err != nil {
		t.Fatal(err)
	}
	return hdrs
}

func readN(t *testing.T, c *net.TCPConn, n int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

// TestKernelPacketDissectedByTshark captures, on lo, the datagram the kernel
// builds from a sticky header, checks that the kernel sent our bytes with
// only Next Header filled in, and has tshark dissect it.
func TestKernelPacketDissectedByTshark(t *testing.T) {
	canSend(t)
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed (apt-get install tshark): dissection not checked")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo: %v", err)
	}
	var pb [2]byte
	binary.BigEndian.PutUint16(pb[:], unix.ETH_P_IPV6)
	protoBE := int(binary.NativeEndian.Uint16(pb[:])) // htons(ETH_P_IPV6)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, protoBE)
	if err != nil {
		t.Skipf("no packet socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(protoBE), Ifindex: lo.Index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	srv, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	port := uint16(srv.LocalAddr().(*net.UDPAddr).Port)
	opt := Option{Client: ClientFromAddr(testClient())}
	d := net.Dialer{Control: DialerControl(BuildDestOpts(0, opt.Append(nil, DefaultType)))}
	c, err := d.Dial("udp6", srv.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}

	buf := make([]byte, 2048)
	var pkt []byte
	for pkt == nil {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("capturing on lo: %v", err)
		}
		p := buf[:n]
		if n >= 40+HeaderLen+8 && p[6] == 60 && binary.BigEndian.Uint16(p[40+HeaderLen+2:]) == port {
			pkt = append([]byte(nil), p...)
		}
	}
	if want := BuildDestOpts(unix.IPPROTO_UDP, opt.Append(nil, DefaultType)); !bytes.Equal(pkt[40:40+HeaderLen], want) {
		t.Fatalf("kernel sent header %x, want %x", pkt[40:40+HeaderLen], want)
	}
	f := filepath.Join(t.TempDir(), "lo.pcap")
	writePcap(t, f, pkt)
	rows := tsharkRows(t, f)
	if len(rows) != 1 {
		t.Fatalf("tshark printed %d frames", len(rows))
	}
	checkDissection(t, rows[0], DefaultType, opt)
}
