package isession

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/isession/codec"
	"github.com/fulcrum-adc/fulcrum/isession/mux"
)

// testCA issues device certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// tlsFor returns a TLS configuration for device name with a certificate
// from ca, trusting ca.
func (ca *testCA) tlsFor(t testing.TB, name string) *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool, ClientCAs: ca.pool, ServerName: "dc",
	}
}

func settings(tc *tls.Config, name string) *Settings {
	return &Settings{TLS: tc, Device: name, Codecs: []codec.Codec{codec.Zstd, codec.S2, codec.Deflate},
		Adaptive: true, Dedup: true, DedupCache: 64 << 20, PortTransparency: true}
}

// tunnelPair sets up a tunnel over loopback between a branch end (client)
// and a data-center end (server).
func tunnelPair(t testing.TB, cs, ss *Settings) (*Tunnel, *Tunnel, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		t   *Tunnel
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		tu, err := Server(context.Background(), c, ss)
		ch <- res{tu, err}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ct, cerr := Client(context.Background(), conn, cs)
	r := <-ch
	if ct != nil {
		t.Cleanup(func() { ct.Close() })
	}
	if r.t != nil {
		t.Cleanup(func() { r.t.Close() })
	}
	return ct, r.t, errors.Join(cerr, r.err)
}

// serveEcho answers each stream with the sha256 of what it received.
func serveSums(tu *Tunnel) {
	for {
		st, err := tu.Accept()
		if err != nil {
			return
		}
		go func() {
			h := sha256.New()
			if _, err := io.Copy(h, st); err != nil {
				st.Reset(mux.CodeCancel)
				return
			}
			st.Write(h.Sum(nil))
			st.Close()
		}()
	}
}

// sendSum sends data on a new stream and checks the sum that comes back.
func sendSum(tu *Tunnel, data []byte) error {
	st, err := tu.Open(context.Background(), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := st.Write(data)
		if err == nil {
			err = st.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got, want[:]) {
		return fmt.Errorf("sum mismatch for %d bytes", len(data))
	}
	return nil
}

func randomData(seed uint64, n int) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	mrand.NewChaCha8(key).Read(b)
	return b
}

func textData(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox jumps over the lazy dog, request id %x\n", i, i*7919)
	}
	return b.Bytes()[:n]
}

func TestTunnelByteExact(t *testing.T) {
	ca := newCA(t)
	ct, st, err := tunnelPair(t, settings(ca.tlsFor(t, "branch"), "branch"), settings(ca.tlsFor(t, "dc"), "dc"))
	if err != nil {
		t.Fatal(err)
	}
	if ct.Peer != "dc" || st.Peer != "branch" {
		t.Fatalf("peers %q %q", ct.Peer, st.Peer)
	}
	if ct.Outcome.String() != st.Outcome.String() || ct.Outcome.Dedup == "" || len(ct.Outcome.Codecs) != 3 {
		t.Fatalf("outcomes %v / %v", ct.Outcome, st.Outcome)
	}
	go serveSums(st)
	base := randomData(1, 1<<20)
	for name, data := range map[string][]byte{
		"compressible":   textData(4 << 20),
		"incompressible": randomData(2, 4<<20),
		"empty":          nil,
	} {
		before := ct.Stats().Mux.WireOut
		if err := sendSum(ct, data); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d bytes, %d on the wire", name, len(data), ct.Stats().Mux.WireOut-before)
	}
	// Repetitive: the same megabyte five times on five streams.
	before := ct.Stats().Mux.WireOut
	for range 5 {
		if err := sendSum(ct, base); err != nil {
			t.Fatal(err)
		}
	}
	wire := ct.Stats().Mux.WireOut - before
	if wire > 2<<20 {
		t.Fatalf("5 × 1 MiB of repeated data took %d bytes on the wire", wire)
	}
	s := ct.Stats()
	if s.DedupOut.Refs == 0 || st.Stats().DedupIn.Refs != s.DedupOut.Refs {
		t.Fatalf("dedup refs: sent %d, received %d", s.DedupOut.Refs, st.Stats().DedupIn.Refs)
	}
	if s.Skipped == 0 {
		t.Fatal("incompressible blocks were compressed")
	}
}

func TestTunnelManyStreams(t *testing.T) {
	ca := newCA(t)
	ct, st, err := tunnelPair(t, settings(ca.tlsFor(t, "branch"), "branch"), settings(ca.tlsFor(t, "dc"), "dc"))
	if err != nil {
		t.Fatal(err)
	}
	go serveSums(st)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := randomData(uint64(i%20), 64<<10+i*1024) // streams share content
			if err := sendSum(ct, data); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := ct.Stats().Mux.StreamsOpened; n != 200 {
		t.Fatalf("%d streams opened", n)
	}
}

func TestNegotiationOutcomes(t *testing.T) {
	ca := newCA(t)
	for _, c := range []struct {
		name   string
		mod    func(c, s *Settings)
		expect string
	}{
		{"all on", func(c, s *Settings) {}, "compression [zstd s2 deflate] adaptive, dedup fastcdc-gmac-v2/2048/8192/65536 cache 64 MiB, port transparency on"},
		{"codec subset", func(c, s *Settings) { s.Codecs = []codec.Codec{codec.Deflate} }, "compression [deflate] adaptive, dedup fastcdc-gmac-v2/2048/8192/65536 cache 64 MiB, port transparency on"},
		{"compression off on one end", func(c, s *Settings) { c.Codecs = nil }, "compression off, dedup fastcdc-gmac-v2/2048/8192/65536 cache 64 MiB, port transparency on"},
		{"dedup off on one end", func(c, s *Settings) { s.Dedup = false }, "compression [zstd s2 deflate] adaptive, dedup off, port transparency on"},
		{"dedup schemes differ", func(c, s *Settings) { s.DedupParams.Min, s.DedupParams.Avg, s.DedupParams.Max = 1024, 4096, 32768 },
			"compression [zstd s2 deflate] adaptive, dedup off (schemes differ), port transparency on"},
		{"smaller cache wins", func(c, s *Settings) { s.DedupCache = 16 << 20 }, "compression [zstd s2 deflate] adaptive, dedup fastcdc-gmac-v2/2048/8192/65536 cache 16 MiB, port transparency on"},
		{"not adaptive", func(c, s *Settings) { c.Adaptive = false }, "compression [zstd s2 deflate], dedup fastcdc-gmac-v2/2048/8192/65536 cache 64 MiB, port transparency on"},
		{"nothing", func(c, s *Settings) { c.Codecs, c.Dedup, c.PortTransparency = nil, false, false }, "compression off, dedup off, port transparency off"},
	} {
		cs, ss := settings(ca.tlsFor(t, "branch"), "branch"), settings(ca.tlsFor(t, "dc"), "dc")
		c.mod(cs, ss)
		ct, st, err := tunnelPair(t, cs, ss)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := ct.Outcome.String(); got != c.expect || st.Outcome.String() != got {
			t.Errorf("%s: client %q server %q, want %q", c.name, got, st.Outcome.String(), c.expect)
		}
		// Whatever was negotiated carries data intact.
		go serveSums(st)
		if err := sendSum(ct, append(textData(300<<10), textData(300<<10)...)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestUntrustedPeerRefused(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	// The branch presents a certificate from another CA.
	_, _, err := tunnelPair(t, settings(other.tlsFor(t, "branch"), "branch"), settings(ca.tlsFor(t, "dc"), "dc"))
	if !errors.Is(err, ErrUntrusted) {
		t.Fatalf("client certificate of another CA: %v", err)
	}
	// The data center presents one.
	cs := settings(ca.tlsFor(t, "branch"), "branch")
	_, _, err = tunnelPair(t, cs, settings(other.tlsFor(t, "dc"), "dc"))
	if !errors.Is(err, ErrUntrusted) {
		t.Fatalf("server certificate of another CA: %v", err)
	}
	// No client certificate at all.
	nocert := ca.tlsFor(t, "branch")
	nocert.Certificates = nil
	if _, _, err = tunnelPair(t, settings(nocert, "branch"), settings(ca.tlsFor(t, "dc"), "dc")); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestTunnelKilledMidTransfer(t *testing.T) {
	ca := newCA(t)
	cs, ss := settings(ca.tlsFor(t, "branch"), "branch"), settings(ca.tlsFor(t, "dc"), "dc")
	ct, st, err := tunnelPair(t, cs, ss)
	if err != nil {
		t.Fatal(err)
	}
	go serveSums(st)
	errc := make(chan error, 8)
	for i := range 8 {
		go func() { errc <- sendSum(ct, randomData(uint64(i), 16<<20)) }()
	}
	for deadline := time.Now().Add(10 * time.Second); ct.Stats().Mux.RawOut < 1<<20; {
		if time.Now().After(deadline) {
			t.Fatal("no data sent")
		}
		time.Sleep(time.Millisecond)
	}
	ct.raw.Close() // the tunnel connection dies mid-transfer
	for range 8 {
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("a stream completed on a dead tunnel")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a stream hung on a dead tunnel")
		}
	}
	// A new tunnel works.
	ct2, st2, err := tunnelPair(t, cs, ss)
	if err != nil {
		t.Fatal(err)
	}
	go serveSums(st2)
	if err := sendSum(ct2, textData(1<<20)); err != nil {
		t.Fatal(err)
	}
}

func TestNotAnISessionPeer(t *testing.T) {
	ca := newCA(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		cfg := ca.tlsFor(t, "dc")
		cfg.NextProtos = []string{"h2"}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		tc := tls.Server(c, cfg)
		tc.Handshake()
		io.Copy(io.Discard, tc)
	}()
	conn, _ := net.Dial("tcp", ln.Addr().String())
	if _, err := Client(context.Background(), conn, settings(ca.tlsFor(t, "branch"), "branch")); err == nil {
		t.Fatal("a TLS server without the iSession protocol was accepted")
	}
}
