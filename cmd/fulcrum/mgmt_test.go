package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testMgmt starts a management server with lim in front of a small handler
// (including the real pprof profile handler) and returns its address.
func testMgmt(t *testing.T, lim mgmtLimits) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv, addr, err := startManagement("127.0.0.1:0", mux, lim, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return addr.String()
}

func shortLimits() mgmtLimits {
	return mgmtLimits{
		maxConns: 8, reserveFDs: 0,
		readHeader: 300 * time.Millisecond, read: 600 * time.Millisecond, write: 600 * time.Millisecond,
		idle: 400 * time.Millisecond, maxHeaderBytes: 4096, maxProfile: 5 * time.Second,
	}
}

// closedWithin reports whether the server closes c within d (reading and
// discarding whatever it sends first).
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

func TestManagementServerTimeouts(t *testing.T) {
	addr := testMgmt(t, shortLimits())

	// A client that never finishes its request head is closed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	if !closedWithin(c, 3*time.Second) {
		t.Error("a client trickling its request head was still connected after 3s")
	}

	// A client that sends a head but trickles the body is closed.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
	if !closedWithin(c2, 3*time.Second) {
		t.Error("a client trickling its body was still connected after 3s")
	}

	// An idle keep-alive connection is closed.
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	io.WriteString(c3, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c3)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !closedWithin(c3, 3*time.Second) {
		t.Error("an idle keep-alive connection was still open after 3s")
	}

	// An oversized head is refused.
	c4, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	fmt.Fprintf(c4, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
	c4.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c4), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB header with a 4 KiB limit: %v %v", resp, err)
	}
}

// TestManagementProfileOutlivesWriteTimeout: a CPU profile longer than the
// ordinary write and read timeouts runs its full length.
func TestManagementProfileOutlivesWriteTimeout(t *testing.T) {
	addr := testMgmt(t, shortLimits())
	start := time.Now()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/debug/pprof/profile?seconds=2")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("profile: status %d, %d bytes, %v: %s", resp.StatusCode, len(body), err, body)
	}
	if el := time.Since(start); el < 1900*time.Millisecond {
		t.Errorf("a 2s profile ended after %v: cut short by a timeout", el)
	}
	resp, err = c.Get("http://" + addr + "/debug/pprof/profile?seconds=6")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a profile longer than the maximum: status %d, want 400", resp.StatusCode)
	}
}

// TestManagementConnectionCap: past max_connections a client waits until a
// connection closes.
func TestManagementConnectionCap(t *testing.T) {
	lim := shortLimits()
	lim.maxConns = 2
	lim.idle = 30 * time.Second
	lim.read = 30 * time.Second
	addr := testMgmt(t, lim)
	keepAlive := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	request := func(c net.Conn, br *bufio.Reader, wait time.Duration) error {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	a, abr := keepAlive()
	b, bbr := keepAlive()
	if err := request(a, abr, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := request(b, bbr, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	third, tbr := keepAlive()
	if err := request(third, tbr, 300*time.Millisecond); err == nil {
		t.Fatal("a third connection was served with a cap of 2")
	}
	a.Close()
	third.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(tbr, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served after one closed: %v", err)
	}
	resp.Body.Close()
}

const fdChildEnv = "FULCRUM_TEST_FD_CHILD_CONFIG"

// TestManagementAnswersWhenDescriptorsRunOut runs `fulcrum run` in a child
// process, uses up every file descriptor there (as a data-plane flood
// would), and checks from here that the management API still answers, more
// times than the reserve holds (it is refilled).
func TestManagementAnswersWhenDescriptorsRunOut(t *testing.T) {
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "f.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("management:\n  address: 127.0.0.1:%d\n", port)), 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDExhaustedChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fdChildEnv+"="+cfg, fmt.Sprintf("FULCRUM_TEST_FD_CHILD_PORT=%d", port))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	defer func() {
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	filled := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "FILLED") {
				filled <- sc.Text()
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case line := <-filled:
		t.Log(line)
	case <-time.After(30 * time.Second):
		t.Fatalf("the child did not use up its descriptors; stderr:\n%s", stderr.String())
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 8; i++ { // twice the reserve
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			t.Fatalf("request %d with the child's descriptors used up: %v; child stderr:\n%s", i+1, err, stderr.String())
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i+1, resp.StatusCode)
		}
	}
}

// TestFDExhaustedChild is the child of
// TestManagementAnswersWhenDescriptorsRunOut; it does nothing in a normal
// run.
func TestFDExhaustedChild(t *testing.T) {
	cfg := os.Getenv(fdChildEnv)
	if cfg == "" {
		t.Skip("helper process for TestManagementAnswersWhenDescriptorsRunOut")
	}
	// A low limit keeps the flood small and quick.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: 256}); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(1)
	}
	go run([]string{"run", cfg}, io.Discard, os.Stderr)
	url := "http://127.0.0.1:" + os.Getenv("FULCRUM_TEST_FD_CHILD_PORT") + "/healthz"
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(end) {
			fmt.Fprintln(os.Stderr, "management API did not start:", err)
			os.Exit(1)
		}
	}
	var hold []*os.File
	for i := 0; i < 100000; i++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				fmt.Fprintln(os.Stderr, "open:", err)
				os.Exit(1)
			}
			break
		}
		hold = append(hold, f)
	}
	fmt.Fprintf(os.Stdout, "FILLED %d descriptors\n", len(hold))
	io.Copy(io.Discard, os.Stdin) // until the parent is done
	os.Exit(0)
}
