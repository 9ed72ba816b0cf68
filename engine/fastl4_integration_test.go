package engine

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/internal/sockmap"
)

// needKernelRelay skips tests of the kernel path where it cannot exist.
func needKernelRelay(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN) for the fastl4 kernel relay")
	}
	r, err := sockmap.New(sockmap.Options{Flows: 1})
	if err != nil {
		t.Skipf("no sockmap on this kernel: %v", err)
	}
	r.Close()
}

// stamp fills b with the stream's bytes from offset off: each 8-byte word
// holds its own offset, xored with seed.
func stamp(b []byte, off uint64, seed byte) {
	for i := range b {
		o := off + uint64(i)
		b[i] = byte((o&^7)>>(8*(o&7))) ^ seed
	}
}

func sendStamped(c *net.TCPConn, n int, seed byte) error {
	buf := make([]byte, 128<<10)
	c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	for off := 0; off < n; {
		k := min(len(buf), n-off)
		stamp(buf[:k], uint64(off), seed)
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		off += k
	}
	return c.CloseWrite()
}

func recvStamped(c *net.TCPConn, n int, seed byte) error {
	buf := make([]byte, 128<<10)
	want := make([]byte, len(buf))
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	off := 0
	for {
		k, err := c.Read(buf)
		if off+k > n {
			return fmt.Errorf("got %d bytes, want %d", off+k, n)
		}
		stamp(want[:k], uint64(off), seed)
		for i := range k {
			if buf[i] != want[i] {
				return fmt.Errorf("byte %d is %#x, want %#x", off+i, buf[i], want[i])
			}
		}
		off += k
		if err == io.EOF {
			if off != n {
				return fmt.Errorf("EOF after %d bytes, want %d", off, n)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", off, err)
		}
	}
}

// stampServer sends n stamped bytes (seed 2) on each connection while
// checking n stamped bytes (seed 1) from it; results go to errs.
func stampServer(t *testing.T, n int, errs chan<- error) string {
	return backendFunc(t, func(c *net.TCPConn) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); errs <- sendStamped(c, n, 2) }()
		errs <- recvStamped(c, n, 1)
		wg.Wait()
	})
}

// backendFunc serves each connection with serve on loopback.
func backendFunc(t *testing.T, serve func(*net.TCPConn)) string {
	return benchBackend(t, func(c net.Conn) { serve(c.(*net.TCPConn)) })
}

func dialTCP(t testing.TB, port int) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func fastl4Status(t *testing.T, e *Engine) *virtualFastL4 {
	for _, v := range e.Virtuals() {
		if v.Name == "vs" && v.FastL4 != nil {
			return &virtualFastL4{v.FastL4.Relay, v.FastL4.KernelFlows, v.FastL4.UserFlows, v.FastL4.Resets, v.BytesIn, v.BytesOut}
		}
	}
	t.Fatal("virtual vs has no fastl4 status")
	return nil
}

type virtualFastL4 struct {
	relay                string
	kernel, user, resets uint64
	in, out              uint64
}

// kernelVS is a fastl4 virtual with a profile of its own: profile adds
// lines to that profile (six spaces in), vs to the virtual (four). Tests of
// the kernel relay start the engine with startKernelEngine: the
// configuration refuses kernel_relay on while the relay has a known defect
// (docs/fastl4.md).
func kernelVS(members []string, profile, vs string) vsConf {
	return vsConf{typ: "fastl4", members: members, vs: "    fastl4_profile: kernel\n" + vs,
		top: "profiles:\n  fastl4:\n    kernel:\n      reset_on_timeout: true\n" + profile}
}

// startKernelEngine starts an engine whose fastl4 virtuals use the
// experimental kernel relay.
func startKernelEngine(t testing.TB, yamlText string) *Engine {
	t.Helper()
	return startEngineWith(t, yamlText, Options{ExperimentalKernelRelay: true})
}

// TestFastL4ByteExact: 64 MiB each way at once through a fastl4 virtual,
// every byte checked at the far end, the FINs after the data, the flow
// relayed by the kernel and counted.
func TestFastL4ByteExact(t *testing.T) {
	if os.Getenv("FULCRUM_SOCKMAP_DEFECT") == "" {
		t.Skip("known defect of the kernel relay: a two-way stream is occasionally delivered with bytes twice (docs/fastl4.md); FULCRUM_SOCKMAP_DEFECT=1 runs it")
	}
	needKernelRelay(t)
	const n = 64 << 20
	errs := make(chan error, 4)
	port := freePort(t)
	e := startKernelEngine(t, kernelVS([]string{stampServer(t, n, errs)}, "", "").yaml(port))
	c := dialTCP(t, port)
	go func() { errs <- sendStamped(c, n, 1) }()
	go func() { errs <- recvStamped(c, n, 2) }()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the virtual's byte counters", 10*time.Second, func() bool { st := fastl4Status(t, e); return st.in == n && st.out == n })
	if st := fastl4Status(t, e); st.relay != "kernel" || st.kernel != 1 || st.user != 0 {
		t.Fatalf("status %+v, want one kernel flow", st)
	}
}

// TestFastL4HalfClose: the client half-closes and the server keeps sending
// and then closes; and the reverse.
func TestFastL4HalfClose(t *testing.T) {
	needKernelRelay(t)
	for _, clientFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("clientFirst=%v", clientFirst), func(t *testing.T) {
			errs := make(chan error, 2)
			srv := backendFunc(t, func(c *net.TCPConn) {
				if clientFirst {
					if err := recvStamped(c, 2<<20, 1); err != nil {
						errs <- err
						return
					}
					errs <- sendStamped(c, 8<<20, 2)
				} else {
					if err := sendStamped(c, 2<<20, 2); err != nil {
						errs <- err
						return
					}
					errs <- recvStamped(c, 8<<20, 1)
				}
			})
			port := freePort(t)
			startKernelEngine(t, kernelVS([]string{srv}, "", "").yaml(port))
			c := dialTCP(t, port)
			if clientFirst {
				if err := sendStamped(c, 2<<20, 1); err != nil {
					t.Fatal(err)
				}
				if err := recvStamped(c, 8<<20, 2); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := recvStamped(c, 2<<20, 2); err != nil {
					t.Fatal(err)
				}
				if err := sendStamped(c, 8<<20, 1); err != nil {
					t.Fatal(err)
				}
				// The server closes after reading: the client sees the end.
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Fatalf("after the server closed: %d, %v; want EOF", n, err)
				}
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFastL4Reset: a client's reset resets the server side, counted.
func TestFastL4Reset(t *testing.T) {
	needKernelRelay(t)
	got := make(chan error, 1)
	srv := backendFunc(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		got <- err
	})
	port := freePort(t)
	e := startKernelEngine(t, kernelVS([]string{srv}, "", "").yaml(port))
	c := dialTCP(t, port)
	c.Write([]byte("hello"))
	time.Sleep(50 * time.Millisecond)
	c.SetLinger(0)
	c.Close()
	select {
	case err := <-got:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("server saw %v, want a reset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server saw nothing")
	}
	waitFor(t, "the reset counter", 10*time.Second, func() bool { return fastl4Status(t, e).resets == 1 })
}

// TestFastL4IdleTimeout: a kernel-relayed flow that keeps moving bytes
// outlives the fastl4 profile's idle timeout; an idle one is reset.
func TestFastL4IdleTimeout(t *testing.T) {
	needKernelRelay(t)
	srv := backendFunc(t, func(c *net.TCPConn) { io.Copy(c, c) })
	port := freePort(t)
	startKernelEngine(t, kernelVS([]string{srv}, "      idle_timeout: 2s\n", "").yaml(port))
	active, idle := dialTCP(t, port), dialTCP(t, port)
	buf := make([]byte, 4)
	for i := range 10 { // 5 s of traffic every 0.5 s
		active.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := active.Write([]byte("ping")); err != nil {
			t.Fatalf("active flow, round %d: %v", i, err)
		}
		if _, err := io.ReadFull(active, buf); err != nil {
			t.Fatalf("active flow, round %d: %v", i, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("idle flow: %v, want a reset (reset_on_timeout)", err)
	}
}

// TestFastL4Concurrent: 1,000 flows at once, each checked.
func TestFastL4Concurrent(t *testing.T) {
	if os.Getenv("FULCRUM_SOCKMAP_DEFECT") == "" {
		t.Skip("known defect of the kernel relay: under a loaded parallel test run a flow is occasionally ended early (EOF or RST; twice in about eight full runs, 2026-12-03; docs/fastl4.md); FULCRUM_SOCKMAP_DEFECT=1 runs it")
	}
	needKernelRelay(t)
	const flows, n = 1000, 64 << 10
	srv := backendFunc(t, func(c *net.TCPConn) { io.Copy(c, c); c.CloseWrite() })
	port := freePort(t)
	e := startKernelEngine(t, kernelVS([]string{srv}, "", "").yaml(port))
	errs := make(chan error, flows)
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			tc := c.(*net.TCPConn)
			tc.SetDeadline(time.Now().Add(60 * time.Second))
			// The FIN only after the echo: a socket that has its peer's
			// FIN cannot join a sockmap (such flows go to user space).
			out, in := make([]byte, n), make([]byte, n)
			stamp(out, 0, byte(i))
			if _, err := tc.Write(out); err != nil {
				errs <- err
				return
			}
			if _, err := io.ReadFull(tc, in); err != nil {
				errs <- fmt.Errorf("flow %d: %w", i, err)
				return
			}
			if string(in) != string(out) {
				errs <- fmt.Errorf("flow %d: the echo differs", i)
				return
			}
			tc.CloseWrite()
			if k, err := tc.Read(in[:1]); k != 0 || err != io.EOF {
				errs <- fmt.Errorf("flow %d: after the echo: %d, %v; want EOF", i, k, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := fastl4Status(t, e); st.kernel != flows {
		t.Fatalf("%d kernel flows (%d in user space), want %d", st.kernel, st.user, flows)
	}
}

// TestFastL4KernelRelayOff: kernel_relay off relays in user space and
// says so.
func TestFastL4KernelRelayOff(t *testing.T) {
	const n = 4 << 20
	errs := make(chan error, 4)
	port := freePort(t)
	e := startEngine(t, vsConf{typ: "fastl4", members: []string{stampServer(t, n, errs)}, vs: "    fastl4_profile: user\n",
		top: "profiles:\n  fastl4:\n    user:\n      kernel_relay: \"off\"\n"}.yaml(port))
	c := dialTCP(t, port)
	go func() { errs <- sendStamped(c, n, 1) }()
	go func() { errs <- recvStamped(c, n, 2) }()
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := fastl4Status(t, e); st.relay != "user: kernel_relay off" || st.user != 1 || st.kernel != 0 {
		t.Fatalf("status %+v, want one user-space flow", st)
	}
}

// TestFastL4ReloadKeepsFlows: a reload that keeps the virtual keeps its
// kernel relay and the flows on it.
func TestFastL4ReloadKeepsFlows(t *testing.T) {
	needKernelRelay(t)
	srv := backendFunc(t, func(c *net.TCPConn) { io.Copy(c, c) })
	port := freePort(t)
	e := startKernelEngine(t, kernelVS([]string{srv}, "", "").yaml(port))
	c := dialTCP(t, port)
	echo := func(msg string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(msg))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q, %v", msg, got, err)
		}
	}
	echo("before")
	l := e.Listener("vs")
	cfg, err := config.Parse([]byte(kernelVS([]string{srv}, "", "    connect_timeout: 3s\n").yaml(port)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if e.Listener("vs") != l {
		t.Fatal("the reload replaced the listener")
	}
	echo("after")
	c2 := dialTCP(t, port)
	c2.Write([]byte("new"))
	got := make([]byte, 3)
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c2, got); err != nil {
		t.Fatal(err)
	}
	if st := fastl4Status(t, e); st.kernel != 2 {
		t.Fatalf("status %+v, want two kernel flows", st)
	}
}
