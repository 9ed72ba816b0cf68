package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// bindLike opens a socket the way `run` does for a listener of kind
// ("tcp", "http", "udp" virtuals; "management" for the API) on ap. Virtuals
// listen in one family only: tcp4/udp4 for IPv4 (and IPv4-mapped)
// addresses, tcp6/udp6 (IPV6_V6ONLY, which Go sets for the "6" networks)
// for IPv6; the management API uses net.Listen("tcp", address).
func bindLike(kind string, ap netip.AddrPort) (func(), error) {
	fam := "6"
	if ap.Addr().Unmap().Is4() {
		fam = "4"
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	switch kind {
	case "udp":
		pc, err := net.ListenPacket("udp"+fam, ap.String())
		if err != nil {
			return nil, err
		}
		return func() { pc.Close() }, nil
	case "management":
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			return nil, err
		}
		return func() { ln.Close() }, nil
	default:
		ln, err := net.Listen("tcp"+fam, ap.String())
		if err != nil {
			return nil, err
		}
		return func() { ln.Close() }, nil
	}
}

// freePort returns a port that is free for TCP and UDP in both families
// right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "[::]:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestListenerClashesMatchKernel binds every pair of loopback and wildcard
// listeners the way `run` would and checks that `check` (the validator)
// reports a clash exactly when this kernel refuses the second bind: check
// catches every listener clash run would hit, and invents none.
func TestListenerClashesMatchKernel(t *testing.T) {
	addrs := []string{"127.0.0.1", "127.0.0.2", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"}
	type side struct{ kind, addr string }
	var pairs [][2]side
	for _, a := range addrs {
		for _, b := range addrs {
			for _, kinds := range [][2]string{{"tcp", "http"}, {"udp", "udp"}, {"tcp", "udp"}} {
				pairs = append(pairs, [2]side{{kinds[0], a}, {kinds[1], b}})
			}
			for _, k := range []string{"http", "udp"} {
				pairs = append(pairs, [2]side{{k, a}, {"management", b}})
			}
		}
	}
	for _, p := range pairs {
		first, second := p[0], p[1]
		var clash bool
		var port uint16
		for try := 0; ; try++ {
			port = freePort(t)
			apA := netip.AddrPortFrom(netip.MustParseAddr(first.addr), port)
			apB := netip.AddrPortFrom(netip.MustParseAddr(second.addr), port)
			closeA, err := bindLike(first.kind, apA)
			if err != nil {
				if try < 5 {
					continue // the port was taken meanwhile
				}
				t.Fatalf("bind %s %s: %v", first.kind, apA, err)
			}
			closeB, err := bindLike(second.kind, apB)
			closeA()
			clash = err != nil
			if closeB != nil {
				closeB()
			}
			break
		}
		dest := func(a string) string { return netip.AddrPortFrom(netip.MustParseAddr(a), port).String() }
		src := poolWeb + fmt.Sprintf("virtuals:\n  first:\n    type: %s\n    destination: %q\n    pool: web\n", first.kind, dest(first.addr))
		if second.kind == "management" {
			src += fmt.Sprintf("management:\n  address: %q\n  token: secret-token\n", dest(second.addr))
		} else {
			src += fmt.Sprintf("  second:\n    type: %s\n    destination: %q\n    pool: web\nmanagement:\n  address: \"off\"\n", second.kind, dest(second.addr))
		}
		errs := parseErrors(t, src)
		checked := false
		for _, e := range errs {
			if strings.Contains(e.Msg, "overlaps") {
				checked = true
			} else {
				t.Errorf("%s %s / %s %s: unexpected error %v", first.kind, first.addr, second.kind, second.addr, e)
			}
		}
		if checked != clash {
			t.Errorf("%s %s then %s %s on port %d: kernel clash %v, check reports clash %v",
				first.kind, first.addr, second.kind, second.addr, port, clash, checked)
		}
	}
}
