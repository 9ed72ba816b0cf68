package engine

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"testing"
	"time"
)

func goHeap() (heap, stacks uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
}

// Idle http client connections (connected, nothing sent yet) hold no
// goroutine and a bounded amount of Go memory. The figure includes the
// test's own client side of each connection (about 300 B of net.Conn).
func TestIdleHTTPConnectionMemory(t *testing.T) {
	if os.Getenv("HEAPPROF") != "" {
		runtime.MemProfileRate = 1
		defer func() {
			f, _ := os.Create(os.Getenv("HEAPPROF"))
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}()
	}
	b := startBackend(t, "a")
	port := freePort(t)
	startEngine(t, httpPoolYAML(port, "round-robin", "", b))
	const n = 2000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	h0, s0, g0 := goHeap()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, "every connection accepted", 5*time.Second, func() bool {
		_, _, g := goHeap()
		return g-g0 < n/100
	})
	time.Sleep(200 * time.Millisecond)
	h1, s1, g1 := goHeap()
	heap, stacks, gs := (float64(h1)-float64(h0))/n, (float64(s1)-float64(s0))/n, float64(g1-g0)/n
	t.Logf("per idle connection (proxy and test client): heap %.0f B, stacks %.0f B, goroutines %.3f", heap, stacks, gs)
	if gs > 0.01 {
		t.Errorf("%.3f goroutines per idle connection, want none", gs)
	}
	if heap+stacks > 2048 {
		t.Errorf("an idle connection costs %.0f B of Go memory with its client side, want ≤ 2048 B", heap+stacks)
	}

	// After a request each, the keep-alive connections are parked again:
	// the worker goroutines that served them end after their idle second.
	buf := make([]byte, 4096)
	for i, c := range conns[:200] {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(buf); err != nil || n == 0 {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	waitFor(t, "keep-alive connections parked without goroutines", 5*time.Second, func() bool {
		_, _, g := goHeap()
		return g <= g1+2
	})
}
