package trust

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// domain makes a trust domain with devices a (where init ran), b and c
// issued into their own directories.
func domain(t *testing.T) (root string, dirs map[string]string) {
	t.Helper()
	root = t.TempDir()
	dirs = map[string]string{"a": filepath.Join(root, "a")}
	if err := Init(dirs["a"], "a"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		dirs[d] = filepath.Join(root, d)
		if err := Issue(dirs["a"], d, dirs[d]); err != nil {
			t.Fatal(err)
		}
	}
	return root, dirs
}

func load(t *testing.T, dir, local string, group ...string) *Store {
	t.Helper()
	s, err := Load(dir, local, group)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInitIssueLoad(t *testing.T) {
	_, dirs := domain(t)
	if _, err := os.Stat(filepath.Join(dirs["b"], CAKeyFile)); err == nil {
		t.Error("Issue copied the CA key to another device")
	}
	st, err := os.Stat(filepath.Join(dirs["b"], KeyFile("b")))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("device key mode: %v %v", st.Mode().Perm(), err)
	}
	if err := Init(dirs["a"], "a"); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second Init: %v", err)
	}
	if err := Issue(dirs["a"], "b", dirs["b"]); err == nil {
		t.Error("Issue overwrote b's certificate")
	}
	if err := Issue(dirs["b"], "d", t.TempDir()); err == nil || !strings.Contains(err.Error(), "CA key") {
		t.Errorf("Issue without the CA key: %v", err)
	}
	if err := Init(t.TempDir(), "../x"); err == nil {
		t.Error("Init accepted a device name with a path in it")
	}
	// A certificate loaded under another device's name is refused.
	if err := os.Rename(filepath.Join(dirs["b"], CertFile("b")), filepath.Join(dirs["b"], CertFile("x"))); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dirs["b"], KeyFile("b")), filepath.Join(dirs["b"], KeyFile("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dirs["b"], "x", []string{"a"}); err == nil || !strings.Contains(err.Error(), `issued to "b"`) {
		t.Errorf("renamed certificate: %v", err)
	}
	// A key file others can read is refused.
	if err := os.Chmod(filepath.Join(dirs["c"], KeyFile("c")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dirs["c"], "c", []string{"a"}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	// A device certificate from another domain's CA is refused.
	other := t.TempDir()
	if err := Init(other, "a"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CertFile("a"), KeyFile("a")} {
		b, _ := os.ReadFile(filepath.Join(other, f))
		if err := os.WriteFile(filepath.Join(dirs["a"], f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Load(dirs["a"], "a", []string{"b"}); err == nil || !strings.Contains(err.Error(), "not signed by this trust domain") {
		t.Errorf("foreign device certificate: %v", err)
	}
}

func TestHeartbeatMAC(t *testing.T) {
	_, dirs := domain(t)
	a := load(t, dirs["a"], "a", "a", "b")
	b := load(t, dirs["b"], "b", "a", "b")
	c := load(t, dirs["c"], "c", "a", "b", "c")
	msg := []byte("heartbeat body")
	sealed := a.Seal(append([]byte(nil), msg...))
	if len(sealed) != len(msg)+MACSize {
		t.Fatalf("sealed length %d", len(sealed))
	}
	if body, ok := b.Open("a", sealed); !ok || string(body) != string(msg) {
		t.Fatalf("b cannot open a's heartbeat: %q %v", body, ok)
	}
	if _, ok := b.Open("b", sealed); ok {
		t.Error("a's heartbeat verified as sent by b")
	}
	if _, ok := b.Open("c", c.Seal([]byte("x"))); ok {
		t.Error("b accepted a heartbeat from c, which is not in its group")
	}
	for i := range sealed {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 1
		if _, ok := b.Open("a", bad); ok {
			t.Fatalf("a heartbeat with byte %d flipped verified", i)
		}
	}
	if _, ok := b.Open("a", sealed[:MACSize-1]); ok {
		t.Error("a short datagram verified")
	}
	// Another trust domain's heartbeat key never verifies.
	other := t.TempDir()
	if err := Init(other, "a"); err != nil {
		t.Fatal(err)
	}
	o := load(t, other, "a", "a", "b")
	if _, ok := b.Open("a", o.Seal([]byte("x"))); ok {
		t.Error("a heartbeat from another trust domain verified")
	}
}

// handshake runs server s (expecting any device of its group) and client c
// dialing it as peer, over loopback; it returns the device name the server
// saw and each side's error.
func handshake(t *testing.T, s *Store, c *Store, peer string) (seen string, serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, s.ServerTLS())
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if serr = tc.Handshake(); serr == nil {
			seen = PeerDevice(tc.ConnectionState())
			// Read the client's byte so a client-side refusal of the
			// server (after the server finished) shows as an error here.
			var b [1]byte
			_, serr = tc.Read(b[:])
		}
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, c.ClientTLS(peer))
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if cerr = tc.Handshake(); cerr == nil {
		_, cerr = tc.Write([]byte{1})
	}
	tc.Close()
	<-done
	return seen, serr, cerr
}

func TestMutualTLS(t *testing.T) {
	_, dirs := domain(t)
	a := load(t, dirs["a"], "a", "a", "b")
	b := load(t, dirs["b"], "b", "a", "b")
	seen, serr, cerr := handshake(t, a, b, "a")
	if serr != nil || cerr != nil || seen != "b" {
		t.Fatalf("a<-b: server %v, client %v, saw %q", serr, cerr, seen)
	}
	// c has a certificate from the same CA but is not in a's group.
	c := load(t, dirs["c"], "c", "a", "b", "c")
	_, serr, _ = handshake(t, a, c, "a")
	if !errors.Is(serr, ErrUnknownDevice) {
		t.Errorf("a accepted c, not a device of its group: %v", serr)
	}
	// b dialing "a" but reaching c (which trusts b) is refused by b.
	c2 := load(t, dirs["c"], "c", "a", "b", "c")
	_, _, cerr = handshake(t, c2, b, "a")
	if cerr == nil {
		t.Error("b accepted c in place of a")
	}
	// A device of another trust domain is refused by the chain check.
	other := t.TempDir()
	if err := Init(other, "b"); err != nil {
		t.Fatal(err)
	}
	o := load(t, other, "b", "a", "b")
	_, serr, _ = handshake(t, a, o, "a")
	if serr == nil {
		t.Error("a accepted b's namesake from another trust domain")
	}
}

func TestInspect(t *testing.T) {
	_, dirs := domain(t)
	in, err := Inspect(dirs["a"])
	if err != nil {
		t.Fatal(err)
	}
	if !in.HasCAKey || len(in.Devices) != 1 || in.Devices[0].Name != "a" || len(in.Problems) != 0 || in.HeartbeatKey == "" {
		t.Errorf("a: %+v", in)
	}
	ib, err := Inspect(dirs["b"])
	if err != nil {
		t.Fatal(err)
	}
	if ib.HasCAKey || ib.HeartbeatKey != in.HeartbeatKey || ib.CA.Fingerprint != in.CA.Fingerprint {
		t.Errorf("b: %+v, a: %+v", ib, in)
	}
}

func TestGroupSecret(t *testing.T) {
	_, dirs := domain(t)
	a := load(t, dirs["a"], "a", "a", "b")
	b := load(t, dirs["b"], "b", "a", "b")
	if string(a.Secret("x")) != string(b.Secret("x")) || len(a.Secret("x")) != 32 {
		t.Error("the group secret differs between devices of one group")
	}
	if string(a.Secret("x")) == string(a.Secret("y")) {
		t.Error("two purposes share a secret")
	}
	other := t.TempDir()
	if err := Init(other, "a"); err != nil {
		t.Fatal(err)
	}
	if string(load(t, other, "a", "a").Secret("x")) == string(a.Secret("x")) {
		t.Error("two trust domains share a secret")
	}
}
