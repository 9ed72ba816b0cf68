package testnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BuildFulcrum builds the fulcrum binary into dir and returns its path:
// for labs that run Fulcrum as a process inside their namespaces (its
// sockets must be created there, which one process shared with the test
// cannot guarantee).
func BuildFulcrum(dir string) (string, error) {
	bin := filepath.Join(dir, "fulcrum")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/fulcrum-adc/fulcrum/cmd/fulcrum").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building fulcrum: %v\n%s", err, out)
	}
	return bin, nil
}

// MainWithFulcrum is the body of a lab's TestMain: as root it builds the
// fulcrum binary into a temporary directory, sets *bin and runs the tests;
// otherwise the tests run without it (and skip). It returns the exit code.
func MainWithFulcrum(m *testing.M, bin *string) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "fulcrum-lab-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildFulcrum(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// StartFulcrum runs `bin run cfg` inside ns, its output in cfg + ".log",
// and waits (15 s at most) until its management API answers on
// 127.0.0.1:9090; it returns an HTTP client that reaches that API. The
// process is stopped (SIGTERM, then SIGKILL after 10 s) at the test's
// cleanup, and its log printed if the test failed.
func StartFulcrum(tb testing.TB, ns *NS, bin, cfg string) *http.Client {
	tb.Helper()
	logPath := cfg + ".log"
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := ns.Command(context.Background(), bin, "run", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatal(err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	logOf := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if tb.Failed() {
			tb.Logf("fulcrum log (%s):\n%s", cfg, logOf())
		}
	})
	api := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ns.Dial(ctx, &net.Dialer{}, network, addr)
	}}}
	tb.Cleanup(api.CloseIdleConnections)
	for deadline := time.Now().Add(15 * time.Second); ; {
		if r, err := api.Get("http://127.0.0.1:9090/api/v1/virtuals"); err == nil {
			r.Body.Close()
			return api
		}
		select {
		case <-done:
			tb.Fatalf("fulcrum (%s) exited at start:\n%s", cfg, logOf())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("fulcrum (%s): API not up after 15s:\n%s", cfg, logOf())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
