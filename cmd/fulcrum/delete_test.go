package main

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
)

func TestDeleteCommand(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	del := func(c *apiCLI, a []string) int { return c.delete(a) }

	r := runCLI(t, b, "", nil, del, "connection", "42")
	if r.code != 0 || r.stdout != "connection 42 reset\n" || len(b.killed) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q, killed %v", r.code, r.stdout, r.stderr, b.killed)
	}
	r = runCLI(t, b, "", nil, del, "connection", "43")
	if r.code != 1 || !strings.Contains(r.stderr, "connection 43 not found") {
		t.Errorf("unknown connection: exit %d, %q", r.code, r.stderr)
	}
	r = runCLI(t, b, "", nil, del, "persistence", "k1")
	if r.code != 0 || r.stdout != "1 persistence record deleted\n" {
		t.Errorf("by key: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// Flags after the arguments too.
	r = runCLI(t, b, "", nil, del, "persistence", "-pool", "web", "-member", "127.0.0.1:8081")
	if r.code != 0 || r.stdout != "2 persistence records deleted\n" {
		t.Errorf("by filter: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if got := b.deleted[len(b.deleted)-1]; got != (api.PersistDelete{Pool: "web", Member: "127.0.0.1:8081"}) {
		t.Errorf("backend got %+v", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "delete what?"},
		{[]string{"pools"}, `cannot delete "pools"`},
		{[]string{"connection"}, "want one connection ID"},
		{[]string{"connection", "x"}, `connection id "x" is not a number`},
		{[]string{"connection", "1", "-pool", "web"}, "apply to persistence only"},
		{[]string{"persistence"}, "which records?"},
		{[]string{"persistence", "k", "-all"}, "not both"},
		{[]string{"persistence", "a", "b"}, `unexpected argument "b"`},
	} {
		r := runCLI(t, b, "", nil, del, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "usage: fulcrum delete") {
			t.Errorf("delete %q: exit %d, stderr %q, want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	// Through main's switch, with help.
	var out, errb bytes.Buffer
	if code := run([]string{"delete", "-h"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "usage: fulcrum delete") || errb.Len() != 0 {
		t.Errorf("delete -h: exit %d, stdout %q, stderr %q (help asked for goes to stdout)", code, out.String(), errb.String())
	}
}

// TestConfigFileGivesAPIAddressAndToken: `-c FILE` finds the API and its
// token where the configuration puts them, with flags before or after the
// noun, and a flag still beats the file.
func TestConfigFileGivesAPIAddressAndToken(t *testing.T) {
	t.Parallel()
	b := newShowBackend()
	srv := httptest.NewServer(api.NewHandler(b, nil, api.Options{Token: "s3cret"}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().String()[strings.LastIndex(srv.Listener.Addr().String(), ":")+1:]
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600)
	cfg := filepath.Join(dir, "f.yaml")
	// The rest of the file is not read: an invalid pool does not matter.
	os.WriteFile(cfg, []byte(fmt.Sprintf("management:\n  address: 0.0.0.0:%s\n  token_file: token\npools: {web: {members: [nope]}}\n", port)), 0o600)

	runArgs := func(env map[string]string, args ...string) cliResult {
		var out, errOut bytes.Buffer
		c := &apiCLI{stdout: &out, stderr: &errOut, now: func() time.Time { return tShow },
			getenv: func(k string) string { return env[k] }}
		var code int
		switch args[0] {
		case "show":
			code = c.show(args[1:])
		case "member":
			code = c.member(args[1:])
		case "reload":
			code = c.reload(args[1:])
		case "delete":
			code = c.delete(args[1:])
		}
		return cliResult{code, out.String(), errOut.String()}
	}
	// The environment points elsewhere: -c wins over it.
	env := map[string]string{"FULCRUM_API": "127.0.0.1:1", "FULCRUM_TOKEN": "wrong"}
	for _, args := range [][]string{
		{"show", "-c", cfg, "pools"},
		{"show", "pools", "-c", cfg},
		{"show", "-o", "json", "-c=" + cfg, "pools", "web"},
		{"member", "-c", cfg, "web", "127.0.0.1:8081", "disable"},
		{"member", "web", "127.0.0.1:8081", "enable", "-c", cfg},
		{"reload", "-c", cfg},
		{"delete", "-c", cfg, "connection", "42"},
	} {
		if r := runArgs(env, args...); r.code != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	// -api beats the file.
	if r := runArgs(nil, "show", "pools", "-c", cfg, "-api", "127.0.0.1:1"); r.code != 1 ||
		!strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("-api did not win: exit %d, %q", r.code, r.stderr)
	}
	// A configuration without a management API says so.
	off := filepath.Join(dir, "off.yaml")
	os.WriteFile(off, []byte("management:\n  address: \"off\"\n"), 0o600)
	if r := runArgs(nil, "show", "pools", "-c", off); r.code != 2 || !strings.Contains(r.stderr, "management.address is off") {
		t.Errorf("off: exit %d, %q", r.code, r.stderr)
	}
	if r := runArgs(nil, "show", "pools", "-c", filepath.Join(dir, "missing.yaml")); r.code != 2 ||
		!strings.Contains(r.stderr, "missing.yaml") {
		t.Errorf("missing file: exit %d, %q", r.code, r.stderr)
	}
}

// TestShellQuote: a key holds client-chosen text; what `show persistence`
// prints for it must reach `fulcrum delete persistence` unchanged when
// pasted into a shell, and never run anything.
func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"src|vs|web|source_addr|10.0.0.1": `'src|vs|web|source_addr|10.0.0.1'`,
		"u|*|*|universal|$(touch x) `id`": "'u|*|*|universal|$(touch x) `id`'",
		"it's":                            `'it'\''s'`,
		"bad\x01":                         "(unprintable: see -o json)",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if _, err := exec.LookPath("sh"); err != nil {
		return
	}
	key := "u|*|*|universal|$(echo pwned) `echo pwned` it's \\ \"q\" ;&"
	out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(key)).Output()
	if err != nil || string(out) != key {
		t.Errorf("through sh: %q, %v; want %q", out, err, key)
	}
}

func TestShowConfig(t *testing.T) {
	t.Parallel()
	r := runCLI(t, newShowBackend(), "", nil, show, "config")
	if want := "management:\n  token: \"" + api.Redacted + "\"\n"; r.code != 0 || r.stdout != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
}

func TestSplitNoun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		noun string
		rest string
	}{
		{[]string{"pools", "web"}, "pools", "[web]"},
		{[]string{"-c", "f.yaml", "pools", "web"}, "pools", "[-c f.yaml web]"},
		{[]string{"-o=json", "pools"}, "pools", "[-o=json]"},
		{[]string{"-h", "pools"}, "pools", "[-h]"},
		{[]string{"-api", "x"}, "", "[-api x]"},
		{[]string{"--", "pools"}, "pools", "[]"},
	} {
		noun, rest, _ := splitNoun(tc.args)
		if noun != tc.noun || fmt.Sprint(rest) != tc.rest {
			t.Errorf("splitNoun(%q) = %q, %v; want %q, %s", tc.args, noun, rest, tc.noun, tc.rest)
		}
	}
}
