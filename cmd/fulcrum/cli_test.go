package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/accesslog"
)

// TestEveryCommandHasHelp: `fulcrum CMD --help` (and -h, and `fulcrum help
// CMD`) describes the command and exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, cmd := range []string{"run", "check", "demo", "version", "show", "member", "reload", "delete"} {
		for _, args := range [][]string{{cmd, "--help"}, {cmd, "-h"}, {"help", cmd}} {
			var out, errb bytes.Buffer
			code := run(args, &out, &errb)
			text := out.String()
			if code != 0 || errb.Len() != 0 {
				t.Errorf("%v: exit %d, stderr %q; want 0 and the help on stdout:\n%s", args, code, errb.String(), text)
			}
			if !strings.Contains(text, "usage: fulcrum "+cmd) {
				t.Errorf("%v: no usage line:\n%s", args, text)
			}
			if strings.Count(text, "\n") < 3 {
				t.Errorf("%v: help is too thin:\n%s", args, text)
			}
		}
	}
	var out bytes.Buffer
	run([]string{"run", "--help"}, &out, io.Discard)
	for _, want := range []string{"fulcrum run FILE", "-c FILE", "SIGHUP", "SIGUSR1", "Exit status"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run --help lacks %q:\n%s", want, out.String())
		}
	}
	var errb bytes.Buffer
	if code := run([]string{"run", "-bogus"}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "usage: fulcrum run") {
		t.Errorf("run -bogus: exit %d:\n%s", code, errb.String())
	}
}

func TestCheckAndRunTakeTheFilePositionally(t *testing.T) {
	good := filepath.Join("..", "..", "examples", "http-basic.yaml")
	for _, args := range [][]string{
		{"check", good},
		{"check", "-c", good},
		{"check", good, "-c", good}, // the same file twice is fine
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || !strings.Contains(out.String(), good+": OK") {
			t.Errorf("%v: exit %d: %s%s", args, code, out.String(), errb.String())
		}
	}
	other := filepath.Join("..", "..", "examples", "demo.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "a configuration file is required"},
		{[]string{"check", good, other}, "one configuration file, got 2"},
		{[]string{"check", good, "-c", other}, "two configuration files"},
		{[]string{"run"}, "a configuration file is required"},
		{[]string{"run", good, other}, "one configuration file"},
	} {
		var errb bytes.Buffer
		if code := run(tc.args, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, errb.String())
		}
	}
	// run FILE reaches the configuration (an invalid one: exit 1, problems listed).
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("pools: {p: {lb_method: nope, members: [{address: 127.0.0.1:1}]}}\n"), 0o600)
	var errb bytes.Buffer
	if code := run([]string{"run", bad}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), bad+":1:") {
		t.Errorf("run FILE with an invalid file: exit %d:\n%s", code, errb.String())
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"version"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"fulcrum dev\n", "commit:", "built:", "go version: " + runtime.Version()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}

	bi := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0635134abcdef"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	got := versionText("dev", "", "", bi)
	for _, want := range []string{"fulcrum dev\n", "commit:     0635134abcdef (modified)\n", "built:      2026-12-01T10:00:00Z\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("from build info: lacks %q:\n%s", want, got)
		}
	}
	// -ldflags values win over the build information.
	got = versionText("1.2.0", "feedbeef", "2026-12-02T00:00:00Z", bi)
	for _, want := range []string{"fulcrum 1.2.0\n", "commit:     feedbeef (modified)\n", "built:      2026-12-02T00:00:00Z\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("from ldflags: lacks %q:\n%s", want, got)
		}
	}
	// go install module@v1.3.0 records the module version.
	if got := versionText("dev", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}); !strings.HasPrefix(got, "fulcrum v1.3.0\n") || !strings.Contains(got, "commit:     unknown") {
		t.Errorf("module version: %s", got)
	}
	if code := run([]string{"version", "extra"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("version extra: exit %d", code)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestStartFailureSaysNothingRuns: when a listener cannot be opened at
// start, fulcrum says it could not start (nothing was running).
func TestStartFailureSaysNothingRuns(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	for _, tc := range []struct{ name, cfg, want string }{
		{"virtual", fmt.Sprintf("management: {address: \"off\"}\npools: {p: {members: [{address: 127.0.0.1:1}]}}\nvirtuals: {v: {type: tcp, destination: %q, pool: p}}\n", busy.Addr()),
			"virtuals.v.destination: cannot listen on"},
		{"management", fmt.Sprintf("management: {address: %q}\n", busy.Addr()), "management.address " + busy.Addr().String()},
	} {
		file := filepath.Join(dir, tc.name+".yaml")
		os.WriteFile(file, []byte(tc.cfg), 0o600)
		var errb bytes.Buffer
		code := run([]string{"run", file}, io.Discard, &errb)
		first := strings.SplitN(errb.String(), "\n", 2)[0]
		if code != 1 || !strings.HasPrefix(first, "fulcrum: cannot start: ") || !strings.Contains(first, tc.want) {
			t.Errorf("%s: exit %d, stderr:\n%s", tc.name, code, errb.String())
		}
	}
}

// runningInstance starts `fulcrum run FILE` with an http virtual in front of
// one backend and returns the virtual's URL; it stops at the end of the test.
func runningInstance(t *testing.T, logSection string) (url string, logs *syncBuffer) {
	t.Helper()
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	go backend.Serve(bln)
	t.Cleanup(func() { backend.Close() })
	port := freePort(t)
	file := filepath.Join(t.TempDir(), "f.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("management:\n  address: \"off\"\n%spools:\n  p:\n    members:\n      - address: %s\nvirtuals:\n  v:\n    destination: 127.0.0.1:%d\n    type: http\n    pool: p\n",
		logSection, bln.Addr(), port)), 0o600)
	logs = &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", file}, io.Discard, logs) }()
	t.Cleanup(func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d; logs:\n%s", code, logs.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not stop on SIGTERM")
		}
	})
	url = fmt.Sprintf("http://127.0.0.1:%d/", port)
	waitFor(t, "the virtual to serve", logs, func() bool { return get(url) == "hello" })
	return url, logs
}

func get(url string) string {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, logs *syncBuffer, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestSignalsReopenTheAccessLog does what logrotate does: rename the file,
// then SIGUSR1 (reopen only) or SIGHUP (reload and reopen); the next
// request's line must be in a new file at the configured path.
func TestSignalsReopenTheAccessLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	url, logs := runningInstance(t, fmt.Sprintf("log:\n  access_log: %s\n  access_log_format: text\n", path))
	waitFor(t, "the first access-log line", logs, func() bool { return strings.Contains(readFile(path), "[v]") })
	if line := readFile(path); !strings.Contains(line, ` 200 `) || !strings.Contains(line, `"GET /"`) {
		t.Errorf("text access-log line: %q", line)
	}
	for i, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGHUP} {
		name := map[syscall.Signal]string{syscall.SIGUSR1: "usr1", syscall.SIGHUP: "hup"}[sig]
		rotated := fmt.Sprintf("%s.%d", path, i+1)
		if err := os.Rename(path, rotated); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(os.Getpid(), sig)
		waitFor(t, sig.String()+" to reopen the access log", logs, func() bool { _, err := os.Stat(path); return err == nil })
		before := readFile(rotated)
		if got := get(url + "after-" + name); got != "hello" {
			t.Fatalf("after %v: %q", sig, got)
		}
		waitFor(t, "the line in the new file", logs, func() bool { return strings.Contains(readFile(path), "/after-"+name) })
		if readFile(rotated) != before {
			t.Errorf("after %v the rotated file still grew", sig)
		}
	}
	if n := strings.Count(logs.String(), "access log reopened"); n != 2 {
		t.Errorf("%d reopen log lines, want 2:\n%s", n, logs.String())
	}
}

// TestAccessLogToSyslog: access_log: syslog sends one datagram per request
// to the configured local socket.
func TestAccessLogToSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log.sock")
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url, _ := runningInstance(t, fmt.Sprintf("log:\n  access_log: syslog\n  syslog_socket: %s\n", sock))
	get(url + "syslog-probe")
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	for {
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatalf("no access-log datagram: %v", err)
		}
		msg := string(buf[:n])
		if !strings.Contains(msg, "syslog-probe") {
			continue // the readiness probe's request
		}
		if !strings.HasPrefix(msg, "<134>") || !strings.Contains(msg, " fulcrum[") || !strings.Contains(msg, `"target":"/syslog-probe"`) {
			t.Errorf("datagram: %q", msg)
		}
		return
	}
}

type droppingDest struct {
	accesslog.Destination
	n uint64
}

func (d *droppingDest) Dropped() uint64 { return d.n }

func TestReportDropsLogsOnlyNewDrops(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d := &droppingDest{}
	if got := reportDrops(d, 0, log); got != 0 || logs.Len() != 0 {
		t.Errorf("no drops: %d, %q", got, logs.String())
	}
	d.n = 7
	if got := reportDrops(d, 0, log); got != 7 || !strings.Contains(logs.String(), "dropped=7 total=7") {
		t.Errorf("7 drops: %d, %q", got, logs.String())
	}
	logs.Reset()
	if got := reportDrops(d, 7, log); got != 7 || logs.Len() != 0 {
		t.Errorf("no new drops: %d, %q", got, logs.String())
	}
	if got := reportDrops(nil, 3, log); got != 3 {
		t.Errorf("no destination: %d", got)
	}
}
