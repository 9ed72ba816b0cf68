package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("needs /proc/self/fd: ", err)
	}
	return len(ents)
}

func mustParse(t *testing.T, yamlText string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yamlText), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yamlText)
	}
	return cfg
}

// Reloads that add and remove an http and a tcp virtual, each carrying
// traffic, leave no goroutine or file descriptor behind: a removed
// listener is released once its connections have ended (before, its
// parker's epoll set and goroutines stayed until shutdown: about 3
// goroutines and 1 fd per listener per cycle).
func TestReloadCyclesReleaseRemovedListeners(t *testing.T) {
	b := startBackend(t, "a")
	keepPort, httpPort, tcpPort := freePort(t), freePort(t), freePort(t)
	conf := func(extra string) string {
		return fmtYAML(`pools:
	web:
		members:
			- address: %s
virtuals:
	vs_keep:
		destination: 127.0.0.1:%d
		type: http
		pool: web
%smanagement:
	address: "off"
`, b.addr, keepPort, extra)
	}
	base := conf("")
	with := conf(fmtYAML(`	vs_cycle_http:
		destination: 127.0.0.1:%d
		type: http
		pool: web
	vs_cycle_tcp:
		destination: 127.0.0.1:%d
		type: tcp
		pool: web
`, httpPort, tcpPort))
	baseCfg, withCfg := mustParse(t, base), mustParse(t, with)
	if len(withCfg.Virtuals) != 3 {
		t.Fatalf("cycle config has %d virtuals, want 3", len(withCfg.Virtuals))
	}
	e := startEngine(t, base)

	req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	cycle := func(i int) {
		t.Helper()
		if err := e.Apply(withCfg); err != nil {
			t.Fatalf("cycle %d add: %v", i, err)
		}
		for _, port := range []int{httpPort, tcpPort} {
			if got := rawRequest(t, fmt.Sprintf("127.0.0.1:%d", port), req, 5*time.Second); !strings.Contains(got, "\r\n\r\na") {
				t.Fatalf("cycle %d: port %d answered %q", i, port, got)
			}
		}
		if err := e.Apply(baseCfg); err != nil {
			t.Fatalf("cycle %d remove: %v", i, err)
		}
	}
	// Warm up: first use of pools, timers and the backend's connections.
	cycle(-2)
	cycle(-1)
	settle := func(cond func() bool) bool {
		end := time.Now().Add(10 * time.Second)
		for time.Now().Before(end) {
			if cond() {
				return true
			}
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
		}
		return cond()
	}
	const slack = 4
	draining := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.draining)
	}
	// Baseline: once nothing drains and the counts have held still for
	// three samples (the warm-up's connections are ending).
	g0, f0 := runtime.NumGoroutine(), openFDs(t)
	for same, end := 0, time.Now().Add(5*time.Second); same < 3 && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		g, f := runtime.NumGoroutine(), openFDs(t)
		if g == g0 && f == f0 && draining() == 0 {
			same++
		} else {
			same = 0
		}
		g0, f0 = g, f
	}
	for i := range 20 {
		cycle(i)
	}
	var g, f, n int
	if !settle(func() bool {
		n = draining()
		g, f = runtime.NumGoroutine(), openFDs(t)
		return n == 0 && g <= g0+slack && f <= f0+slack
	}) {
		t.Errorf("after 20 add/remove reloads: %d goroutines (baseline %d), %d fds (baseline %d), %d listeners draining", g, g0, f, f0, n)
		return
	}
	t.Logf("after 20 add/remove reloads: %d goroutines (baseline %d), %d fds (baseline %d)", g, g0, f, f0)
}

// A virtual whose port is taken fails Apply with a ListenError that tells
// the truth: at start-up nothing was started; on a reload the running
// configuration stays in force (and keeps serving).
func TestListenFailureSaysWhatIsRunning(t *testing.T) {
	hold, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	taken := hold.Addr().(*net.TCPAddr).Port
	b := startBackend(t, "a")
	e := New(Options{Log: testLogger(t)})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Close(ctx)
	}()

	err = e.Apply(mustParse(t, httpPoolYAML(taken, "round-robin", "", b)))
	var le *ListenError
	if !errors.As(err, &le) {
		t.Fatalf("start-up on a taken port: %v (%T), want a *ListenError", err, err)
	}
	if le.Virtual != "vs_web" || le.Line == 0 || le.Running || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("start-up ListenError = %+v", le)
	}
	if msg := err.Error(); strings.Contains(msg, "running configuration is unchanged") || !strings.Contains(msg, "nothing was started") {
		t.Errorf("start-up message: %s", msg)
	}

	good := freePort(t)
	if err := e.Apply(mustParse(t, httpPoolYAML(good, "round-robin", "", b))); err != nil {
		t.Fatal(err)
	}
	err = e.Apply(mustParse(t, httpPoolYAML(taken, "round-robin", "", b)))
	if !errors.As(err, &le) || !le.Running {
		t.Fatalf("reload on a taken port: %v, want a *ListenError with Running", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "the running configuration is unchanged") {
		t.Errorf("reload message: %s", msg)
	}
	if body, _ := get(t, httpClient(false), fmt.Sprintf("http://127.0.0.1:%d/", good)); body != "a" {
		t.Errorf("running configuration after a failed reload answered %q", body)
	}
}

// 0.0.0.0:P and [::1]:P in one configuration both listen, and each takes
// its own family (before, 0.0.0.0 bound a dual-stack [::] socket and the
// second virtual failed at run although check passed).
func TestIPv4WildcardAndIPv6LoopbackShareAPort(t *testing.T) {
	a, b := startBackend(t, "four"), startBackend(t, "six")
	var port int
	for try := 0; ; try++ {
		port = freePort(t)
		ln, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
		if err == nil {
			ln.Close()
			break
		}
		if try == 20 {
			t.Fatal("no port free on both 127.0.0.1 and ::1")
		}
	}
	startEngine(t, fmtYAML(`pools:
	four:
		members:
			- address: %s
	six:
		members:
			- address: %s
virtuals:
	vs4:
		destination: 0.0.0.0:%d
		type: http
		pool: four
	vs6:
		destination: "[::1]:%d"
		type: http
		pool: six
management:
	address: "off"
`, a.addr, b.addr, port, port))
	c := httpClient(false)
	if body, _ := get(t, c, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != "four" {
		t.Errorf("127.0.0.1 reached %q, want the 0.0.0.0 virtual", body)
	}
	if body, _ := get(t, c, fmt.Sprintf("http://[::1]:%d/", port)); body != "six" {
		t.Errorf("::1 reached %q, want the [::1] virtual", body)
	}
}

// A removed virtual with a connection still open drains: it is released
// as soon as that connection ends, without waiting for shutdown.
func TestDrainingListenerReleasedWhenLastConnectionEnds(t *testing.T) {
	b := startBackend(t, "a")
	port := freePort(t)
	e := startEngine(t, httpPoolYAML(port, "round-robin", "", b))
	l := e.Listener("vs_web")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// One request on a keep-alive connection, then the start of another:
	// the connection is busy (an idle one would be ended by the drain).
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 4096)
	if n, err := c.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
		t.Fatalf("response %q %v", buf[:n], err)
	}
	fmt.Fprint(c, "GET / HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
	other := freePort(t)
	if err := e.Apply(mustParse(t, strings.Replace(httpPoolYAML(other, "round-robin", "", b), "vs_web", "vs_other", 1))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-l.Done():
		t.Fatal("listener released while its connection is open")
	default:
	}
	c.Close()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("draining listener not released 5s after its last connection closed")
	}
	waitFor(t, "draining set empty", 2*time.Second, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.draining) == 0
	})
}

// Close while a removed listener is still draining: Close ends within its
// deadline, the listener is released, and Apply is refused afterwards.
func TestCloseWhileDraining(t *testing.T) {
	b := startBackend(t, "a")
	port := freePort(t)
	cfg := mustParse(t, httpPoolYAML(port, "round-robin", "", b))
	e := New(Options{Log: testLogger(t)})
	if err := e.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	l := e.Listener("vs_web")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := e.Apply(mustParse(t, strings.Replace(httpPoolYAML(freePort(t), "round-robin", "", b), "vs_web", "vs_other", 1))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	e.Close(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v with a 300ms deadline", d)
	}
	select {
	case <-l.Done():
	default:
		t.Error("draining listener not released by Close")
	}
	if err := e.Apply(cfg); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply after Close: %v, want ErrClosed", err)
	}
}

// A reload that removes an http virtual ends its idle keep-alive clients at
// once (parked or about to be), instead of keeping them, and the listener,
// for the whole keep-alive timeout.
func TestRemovedVirtualEndsIdleKeepAliveClients(t *testing.T) {
	b := startBackend(t, "a")
	port := freePort(t)
	conf := func(withVirtual bool) string {
		v := ""
		if withVirtual {
			v = fmtYAML("  vs:\n    destination: 127.0.0.1:%d\n    type: http\n    pool: web\n", port)
		}
		return fmtYAML("pools:\n  web:\n    members:\n      - address: %s\nvirtuals:\n%s  other:\n    destination: 127.0.0.1:%d\n    type: tcp\n    pool: web\nmanagement:\n  address: \"off\"\n",
			b.addr, v, freePort(t))
	}
	e := startEngine(t, conf(true))
	var clients []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: v\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		clients = append(clients, c)
		if i == 0 {
			time.Sleep(1500 * time.Millisecond) // the first one is parked by now
		}
	}
	if err := e.Apply(mustParse(t, conf(false))); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(3 * time.Second)) // keep-alive timeout is 60s
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("idle client %d of the removed virtual: read %d, %v; want the connection closed", i, n, err)
		}
	}
	waitFor(t, "the removed listener drained", 3*time.Second, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.draining) == 0
	})
}
