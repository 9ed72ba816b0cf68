package api

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestKillConnection(t *testing.T) {
	t.Parallel()
	fb := newFake()
	h := NewHandler(fb, nil, Options{})
	rec := do(t, h, "DELETE", "/api/v1/connections/1", "")
	wantStatus(t, rec, 200)
	if r := decode[DeleteResponse](t, rec); r.Deleted != 1 || r.Message != "connection 1 reset" {
		t.Errorf("answer %+v", r)
	}
	if len(fb.killed) != 1 || fb.killed[0] != 1 {
		t.Errorf("backend killed %v, want [1]", fb.killed)
	}
	wantError(t, do(t, h, "DELETE", "/api/v1/connections/1", ""), 404, "connection 1 not found")
	wantError(t, do(t, h, "DELETE", "/api/v1/connections/x", ""), 400, "not a number")
	// The collection itself cannot be deleted.
	wantError(t, do(t, h, "DELETE", "/api/v1/connections", ""), 405, "not allowed")
}

func TestDeletePersistence(t *testing.T) {
	t.Parallel()
	t.Run("by key", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		h := NewHandler(fb, nil, Options{})
		// A key holding "|", "/" and a space, path-escaped as the client does.
		key := "uni|web_vs|web|universal|/a/b c"
		rec := do(t, h, "DELETE", "/api/v1/persistence/"+url.PathEscape(key), "")
		wantStatus(t, rec, 200)
		if r := decode[DeleteResponse](t, rec); r.Deleted != 1 {
			t.Errorf("answer %+v", r)
		}
		if fb.lastDelete.Key != key {
			t.Errorf("backend got key %q, want %q", fb.lastDelete.Key, key)
		}
		wantError(t, do(t, h, "DELETE", "/api/v1/persistence/"+url.PathEscape(key), ""), 404, "not found")
		if len(fb.Persistence(PersistQuery{})) != 1 {
			t.Error("the other record went too")
		}
	})
	t.Run("by filter", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		h := NewHandler(fb, nil, Options{})
		rec := do(t, h, "DELETE", "/api/v1/persistence?member=127.0.0.1:8081", "")
		wantStatus(t, rec, 200)
		if r := decode[DeleteResponse](t, rec); r.Deleted != 1 || r.Message != "1 persistence record deleted" {
			t.Errorf("answer %+v", r)
		}
		rec = do(t, h, "DELETE", "/api/v1/persistence?all=true", "")
		wantStatus(t, rec, 200)
		if r := decode[DeleteResponse](t, rec); r.Deleted != 1 {
			t.Errorf("all: answer %+v", r)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		fb := newFake()
		h := NewHandler(fb, nil, Options{})
		wantError(t, do(t, h, "DELETE", "/api/v1/persistence", ""), 400, "say which records")
		wantError(t, do(t, h, "DELETE", "/api/v1/persistence?all=maybe", ""), 400, "want true or false")
		wantError(t, do(t, h, "DELETE", "/api/v1/persistence/k?pool=web", ""), 400, "not both")
		wantError(t, do(t, h, "DELETE", "/api/v1/persistence?pol=web", ""), 400, "unknown query parameter")
		if n := len(fb.Persistence(PersistQuery{})); n != 2 {
			t.Errorf("%d records left, want 2", n)
		}
	})
}

func TestLoadConfigSaysWhetherPersisted(t *testing.T) {
	t.Parallel()
	const yaml = "pools:\n  web:\n    members: [127.0.0.1:8081]\n"
	for _, tc := range []struct {
		name    string
		applied ConfigApplied
		want    []string
	}{
		{"saved", ConfigApplied{Persisted: true, File: "/etc/f.yaml", Backup: "/etc/f.yaml.bak"},
			[]string{"saved to /etc/f.yaml", "kept as /etc/f.yaml.bak"}},
		{"no file", ConfigApplied{}, []string{"runtime only", "not started from a configuration file"}},
		{"write failed", ConfigApplied{File: "/ro/f.yaml", Reason: "writing /ro/f.yaml: read-only file system"},
			[]string{"runtime only", "read-only file system", "restart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := newFake()
			fb.applied = tc.applied
			rec := do(t, NewHandler(fb, nil, Options{}), "POST", "/api/v1/config", yaml)
			wantStatus(t, rec, 200)
			r := decode[ConfigResponse](t, rec)
			if r.Status != "ok" || r.Persisted != tc.applied.Persisted || r.File != tc.applied.File || r.Backup != tc.applied.Backup {
				t.Errorf("answer %+v", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Message, w) {
					t.Errorf("message %q lacks %q", r.Message, w)
				}
			}
		})
	}
}

func TestRunningConfig(t *testing.T) {
	t.Parallel()
	fb := newFake()
	h := NewHandler(fb, nil, Options{Token: "tok"})
	auth := []string{"Authorization", "Bearer tok"}
	wantError(t, do(t, h, "GET", "/api/v1/config", "", auth...), 404, "no configuration has been applied")
	wantError(t, do(t, h, "GET", "/api/v1/config", ""), 401, "token")

	src := "# the API\nmanagement:\n  address: 127.0.0.1:9090\n  token: s3cret-token\nprofiles:\n  persistence:\n    ck:\n      type: cookie_insert\n      secret: &s hmac-key\n    ck2:\n      type: cookie_insert\n      secret: *s\n"
	fb.running = ConfigSource{File: "/etc/fulcrum.yaml", YAML: []byte(src)}
	rec := do(t, h, "GET", "/api/v1/config", "", auth...)
	wantStatus(t, rec, 200)
	body := rec.Body.String()
	if strings.Contains(body, "s3cret-token") || strings.Contains(body, "hmac-key") {
		t.Fatalf("secret shown:\n%s", body)
	}
	if strings.Count(body, Redacted) < 2 || !strings.Contains(body, "# the API") || !strings.Contains(body, "address: 127.0.0.1:9090") {
		t.Errorf("redacted configuration lost something:\n%s", body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("Content-Type %q", ct)
	}
	if f := rec.Header().Get("X-Fulcrum-Config-File"); f != "/etc/fulcrum.yaml" {
		t.Errorf("X-Fulcrum-Config-File %q", f)
	}
	// Without secrets the source comes back byte for byte.
	plain := "pools:   # odd spacing kept\n    web: {members: [127.0.0.1:1]}\n"
	fb.running = ConfigSource{YAML: []byte(plain)}
	if got := do(t, h, "GET", "/api/v1/config", "", auth...).Body.String(); got != plain {
		t.Errorf("got %q, want %q", got, plain)
	}
}

func TestClientWriteRoundTrips(t *testing.T) {
	t.Parallel()
	fb := newFake()
	fb.applied = ConfigApplied{Persisted: true, File: "/etc/f.yaml"}
	srv := newServer(t, fb, "tok")
	ctx := context.Background()
	c := &Client{Base: srv.URL, Token: "tok"}

	if err := c.KillConnection(ctx, 2); err != nil || len(fb.killed) != 1 || fb.killed[0] != 2 {
		t.Fatalf("KillConnection: %v, killed %v", err, fb.killed)
	}
	if err := c.KillConnection(ctx, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second KillConnection: %v", err)
	}
	key := "uni|web_vs|web|universal|/a/b c"
	if n, err := c.DeletePersistence(ctx, PersistDelete{Key: key}); err != nil || n != 1 || fb.lastDelete.Key != key {
		t.Fatalf("DeletePersistence by key: %d, %v (backend got %+v)", n, err, fb.lastDelete)
	}
	if _, err := c.DeletePersistence(ctx, PersistDelete{Key: key}); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a gone key: %v", err)
	}
	if n, err := c.DeletePersistence(ctx, PersistDelete{Pool: "web", Member: "127.0.0.1:8081"}); err != nil || n != 1 {
		t.Errorf("DeletePersistence by filter: %d, %v", n, err)
	}
	r, err := c.LoadConfig(ctx, []byte("pools: {}\n"))
	if err != nil || !r.Persisted || r.File != "/etc/f.yaml" {
		t.Fatalf("LoadConfig: %+v, %v", r, err)
	}
	got, err := c.RunningConfig(ctx)
	if err != nil || string(got) != "pools: {}\n" {
		t.Fatalf("RunningConfig: %q, %v", got, err)
	}
}
