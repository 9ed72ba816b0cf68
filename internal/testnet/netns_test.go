package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func uniqueName(tag string) string {
	return fmt.Sprintf("fwt-%d-%s-%d", os.Getpid(), tag, time.Now().UnixNano()%1e6)
}

func TestNamespaceHelpers(t *testing.T) {
	SkipIfNotRoot(t)
	start := time.Now()
	a := TempNS(t, uniqueName("a"))
	b := TempNS(t, uniqueName("b"))

	if err := AddVeth(a, "va", b, "vb", VethOptions{MTU: 1400}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		ns  *NS
		dev string
		p4  string
		p6  string
	}{{a, "va", "198.18.7.1/24", "2001:db8:7::1/64"}, {b, "vb", "198.18.7.2/24", "2001:db8:7::2/64"}} {
		if err := step.ns.AddAddr(step.dev, netip.MustParsePrefix(step.p4)); err != nil {
			t.Fatal(err)
		}
		if err := step.ns.AddAddr(step.dev, netip.MustParsePrefix(step.p6)); err != nil {
			t.Fatal(err)
		}
		if err := step.ns.LinkUp(step.dev); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.WaitUp("va", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitUp("vb", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A route to a further prefix via the peer, and an address there on b.
	if err := b.AddAddr("lo", netip.MustParsePrefix("198.19.9.9/32")); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRoute(netip.MustParsePrefix("198.19.9.0/24"), netip.MustParseAddr("198.18.7.2"), "va"); err != nil {
		t.Fatal(err)
	}

	// Offloads: set, read back.
	if err := a.SetOffloads("va", Offloads{}); err != nil {
		t.Fatal(err)
	}
	if o, err := a.GetOffloads("va"); err != nil || o != (Offloads{}) {
		t.Fatalf("offloads after disabling: %+v, %v", o, err)
	}

	// Sysctls are per namespace.
	if err := a.SetSysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := a.Sysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Fatalf("ip_forward in a = %q, %v", v, err)
	}
	if v, err := b.Sysctl("net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Fatalf("ip_forward in b = %q, %v (leaked from a?)", v, err)
	}
	if err := a.SetSysctl("kernel.hostname", "x"); err == nil {
		t.Fatal("non-net sysctl accepted")
	}

	// Commands run inside.
	out, err := a.Run(context.Background(), "ip", "-o", "addr", "show", "dev", "va")
	if err != nil || !strings.Contains(string(out), "198.18.7.1/24") || !strings.Contains(string(out), "2001:db8:7::1/64") {
		t.Fatalf("ip addr in %s: %v\n%s", a.Name(), err, out)
	}
	if out, _ := a.Run(context.Background(), "ip", "link", "show", "va"); !strings.Contains(string(out), "mtu 1400") {
		t.Fatalf("mtu not applied: %s", out)
	}

	// TCP over IPv4 (through the route) and IPv6, sockets made in Do.
	for _, addr := range []string{"198.19.9.9:0", "[2001:db8:7::2]:0"} {
		ln, err := b.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("hello from " + b.Name()))
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := a.Dial(ctx, nil, "tcp", ln.Addr().String())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := c.Read(buf)
		c.Close()
		ln.Close()
		if string(buf[:n]) != "hello from "+b.Name() {
			t.Fatalf("%s: got %q", addr, buf[:n])
		}
	}

	// Only Do's thread is in the namespace: here, va does not exist, while
	// inside it does.
	if _, err := net.InterfaceByName("va"); err == nil {
		t.Fatal("interface va visible outside its namespace")
	}
	if err := a.Do(func() error { _, err := net.InterfaceByName("va"); return err }); err != nil {
		t.Fatalf("inside %s: %v", a.Name(), err)
	}

	// Panics propagate; the NS keeps working.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic in Do not propagated")
			}
		}()
		_ = a.Do(func() error { panic("boom") })
	}()
	if err := a.Do(func() error { return errors.New("x") }); err == nil || err.Error() != "x" {
		t.Fatalf("Do error = %v", err)
	}

	t.Logf("setup and traffic took %v", time.Since(start))
	// Close deletes, is idempotent, and later calls fail cleanly.
	name := a.Name()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("namespace %s still present after Close: %v", name, err)
	}
	if err := a.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v", err)
	}
	// Deleting a removes the veth pair, so b loses vb (the kernel tears a
	// namespace down asynchronously).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := b.LinkMAC("vb"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peer veth survived its namespace's deletion")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := NewNS(b.Name()); err == nil {
		t.Error("NewNS accepted an existing name")
	}
}
