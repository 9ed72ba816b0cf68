package engine

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Hot-path benchmarks on loopback, with allocations (-benchmem). CI runs
// them for a few iterations so they cannot rot; measure with e.g.
//
//	go test ./engine -run '^$' -bench 'HTTPRequestCycle|TCPRelay' -benchmem -benchtime 3s

// BenchmarkHTTPRequestCycle is one keep-alive request and response through
// an http virtual (OneConnect on) to a minimal backend: parse, balance,
// reuse a server connection, forward both ways. Time and allocations are
// the whole process's: the benchmark's own client and backend (net/http's
// parsers) are in them too.
func BenchmarkHTTPRequestCycle(b *testing.B) {
	srv := benchBackend(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		bw := bufio.NewWriter(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
			if br.Buffered() == 0 {
				if bw.Flush() != nil {
					return
				}
			}
		}
	})
	port := freePort(b)
	startEngine(b, oneMemberYAML(port, srv))
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkTCPRelay moves bytes through a tcp virtual (default profile) to
// a member that discards them; the figure is the relay's throughput.
func BenchmarkTCPRelay(b *testing.B) {
	srv := benchBackend(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	port := freePort(b)
	startEngine(b, vsConf{typ: "tcp", members: []string{srv}}.yaml(port))
	benchWrites(b, port)
}

// BenchmarkFastL4Relay is BenchmarkTCPRelay through a fastl4 virtual: the
// bytes move socket to socket in the kernel (eBPF sockmap) when this
// process may load BPF programs, else through the user-space relay (the
// fallback; the benchmark logs which).
func BenchmarkFastL4Relay(b *testing.B) {
	srv := benchBackend(b, func(c net.Conn) { io.Copy(io.Discard, c) })
	port := freePort(b)
	e := startKernelEngine(b, kernelVS([]string{srv}, "", "").yaml(port))
	for _, v := range e.Virtuals() {
		if v.FastL4 != nil {
			b.Logf("relay: %s", v.FastL4.Relay)
		}
	}
	benchWrites(b, port)
}

// benchWrites writes 64 KiB chunks to the virtual on port, b.N times.
func benchWrites(b *testing.B, port int) {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// benchBackend serves each connection with serve on a loopback listener
// closed (with its connections) at the end.
func benchBackend(b testing.TB, serve func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); serve(c) }()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
