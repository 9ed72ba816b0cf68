package isession

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// TestTunnelOverWAN carries compressible, incompressible and repetitive
// data, on many streams at once, through a tunnel across the WAN emulator
// (20 ms RTT, 1 % loss, 20 Mbit/s), each checked with SHA-256 at both ends.
func TestTunnelOverWAN(t *testing.T) {
	testnet.SkipIfNotRoot(t)
	wan := testnet.NewWAN(t, testnet.WANConfig{Delay: 10 * time.Millisecond, Loss: 0.01, RateBits: 20_000_000})
	ca := newCA(t)
	ln, err := wan.Server.Listen("tcp", wan.ServerAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan *Tunnel, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- nil
			return
		}
		tu, err := Server(context.Background(), c, settings(ca.tlsFor(t, "dc"), "dc"))
		if err != nil {
			t.Error(err)
		}
		srv <- tu
	}()
	conn, err := wan.Client.Dial(context.Background(), &net.Dialer{}, "tcp", netip.AddrPortFrom(wan.ServerAddr, uint16(ln.Addr().(*net.TCPAddr).Port)).String())
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Client(context.Background(), conn, settings(ca.tlsFor(t, "branch"), "branch"))
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	st := <-srv
	if st == nil {
		t.Fatal("no server tunnel")
	}
	defer st.Close()
	go serveSums(st)
	base := randomData(5, 1<<20)
	datas := [][]byte{textData(2 << 20), randomData(6, 1<<20)}
	for range 6 {
		datas = append(datas, base)
	}
	var wg sync.WaitGroup
	for i, d := range datas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendSum(ct, d); err != nil {
				t.Errorf("stream %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	s := ct.Stats()
	t.Logf("raw %d, wire %d, dedup refs %d of %d chunks; WAN %v", s.Mux.RawOut, s.Mux.WireOut, s.DedupOut.Refs, s.DedupOut.Chunks, wan.Stats())
	if s.DedupOut.Refs == 0 || s.Mux.WireOut > s.Mux.RawOut/2 {
		t.Fatalf("no reduction across the WAN: raw %d wire %d", s.Mux.RawOut, s.Mux.WireOut)
	}
}
