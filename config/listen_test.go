package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
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

// TestListenerClashesMatchKernel binds every pair of loopback and wildcard
// listeners the way `run` would and checks that `check` (the validator)
// reports a clash exactly when this kernel refuses the second bind: check
// catches every listener clash run would hit, and invents none. The binds
// happen in a fresh network namespace that has only a loopback, so the
// wildcard listeners expose nothing.
func TestListenerClashesMatchKernel(t *testing.T) {
	ns := testnet.TempNS(t, fmt.Sprintf("fulcrum-cfg-listen-%d", os.Getpid()))
	addrs := []string{"127.0.0.1", "127.0.0.2", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"}
	type side struct{ kind, addr string }
	type pair struct {
		first, second side
		port          uint16
		clash         bool // the kernel refused the second bind
	}
	var pairs []pair
	for _, a := range addrs {
		for _, b := range addrs {
			for _, kinds := range [][2]string{{"tcp", "http"}, {"udp", "udp"}, {"tcp", "udp"}} {
				pairs = append(pairs, pair{first: side{kinds[0], a}, second: side{kinds[1], b}})
			}
			for _, k := range []string{"http", "udp"} {
				pairs = append(pairs, pair{first: side{k, a}, second: side{"management", b}})
			}
		}
	}
	err := ns.Do(func() error {
		for i := range pairs {
			p := &pairs[i]
			p.port = uint16(20000 + i) // the namespace is new: every port is free
			apA := netip.AddrPortFrom(netip.MustParseAddr(p.first.addr), p.port)
			apB := netip.AddrPortFrom(netip.MustParseAddr(p.second.addr), p.port)
			closeA, err := bindLike(p.first.kind, apA)
			if err != nil {
				return fmt.Errorf("bind %s %s: %w", p.first.kind, apA, err)
			}
			closeB, err := bindLike(p.second.kind, apB)
			closeA()
			p.clash = err != nil
			if closeB != nil {
				closeB()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		first, second := p.first, p.second
		dest := func(a string) string { return netip.AddrPortFrom(netip.MustParseAddr(a), p.port).String() }
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
		if checked != p.clash {
			t.Errorf("%s %s then %s %s on port %d: kernel clash %v, check reports clash %v",
				first.kind, first.addr, second.kind, second.addr, p.port, p.clash, checked)
		}
	}
}
