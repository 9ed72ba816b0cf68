package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCheckReportsEveryProblemWithLines(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`pools:
  web:
    lb_method: fastest-ever
    members:
      - address: 127.0.0.1:99999
virtuals:
  vs:
    destination: 127.0.0.1:8080
    type: http
    pool: missing
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", bad}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, errb.String())
	}
	for _, want := range []string{bad + ":3:", bad + ":5:", bad + ":10:", "missing"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errb.String())
		}
	}
	good := filepath.Join("..", "..", "examples", "http-basic.yaml")
	out.Reset()
	errb.Reset()
	if code := run([]string{"check", "-c", good}, &out, &errb); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}
	if code := run([]string{"bogus"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

// TestDemo runs `fulcrum demo` as a user would, curls it, and stops it with SIGTERM.
func TestDemo(t *testing.T) {
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"demo"}, &out, io.Discard) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C") {
		select {
		case code := <-done:
			t.Fatalf("demo exited with %d: %s", code, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		resp, err := c.Get("http://127.0.0.1:8080/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[strings.SplitN(string(body), "\n", 2)[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("demo did not balance over two backends: %v", seen)
	}
	resp, err := c.Get("http://127.0.0.1:9090/api/v1/pools")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("demo API status %d", resp.StatusCode)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exit %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop on SIGTERM")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunReloadsOnSIGHUP runs `fulcrum run`, rewrites the file, sends SIGHUP,
// then sends a broken file and checks that the running configuration stays.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	backend := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	a, b := backend("a"), backend("b")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	file := filepath.Join(t.TempDir(), "f.yaml")
	write := func(member string) {
		os.WriteFile(file, []byte(fmt.Sprintf("management:\n  address: \"off\"\npools:\n  p:\n    members:\n      - address: %s\nvirtuals:\n  v:\n    destination: 127.0.0.1:%d\n    type: http\n    pool: p\n", member, port)), 0o600)
	}
	write(a)
	var logs syncBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"run", "-c", file}, io.Discard, &logs) }()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	fetch := func() string {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
	}
	waitUntil("first configuration serving", func() bool { return fetch() == "a" })
	write(b)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil("reloaded configuration serving", func() bool { return fetch() == "b" })
	os.WriteFile(file, []byte("pools: [this is not a pool\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitUntil("refused reload logged", func() bool { return strings.Contains(logs.String(), "reload refused") })
	if got := fetch(); got != "b" {
		t.Errorf("after a refused reload: %q", got)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop on SIGTERM")
	}
}
