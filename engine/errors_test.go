package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
)

func TestNewSecret(t *testing.T) {
	t.Parallel()
	boom := errors.New("entropy source gone")
	if s, err := newSecret(iotest.ErrReader(boom)); err == nil || !errors.Is(err, boom) || s != nil {
		t.Fatalf("newSecret(failing reader) = %x, %v; want nil and an error wrapping the cause", s, err)
	}
	// A short read is a failure too, never a short secret.
	if s, err := newSecret(bytes.NewReader(make([]byte, secretLen-1))); err == nil {
		t.Fatalf("newSecret(short reader) = %x, nil; want an error", s)
	}
	s, err := newSecret(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil || len(s) != secretLen {
		t.Fatalf("newSecret = %x, %v; want %d bytes", s, err, secretLen)
	}
}

// TestConfigErrorsStayTyped checks that a rejected configuration reaches
// the API as both api.ErrBadRequest (the 400) and config.Errors (each
// problem with its line), through LoadConfig and through Reload.
func TestConfigErrorsStayTyped(t *testing.T) {
	t.Parallel()
	const bad = "pools:\n  web:\n    members:\n      - address: nope\n"
	file := filepath.Join(t.TempDir(), "fulcrum.yaml")
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	e := New(Options{Log: testLogger(t), ConfigPath: file})
	defer e.Close(context.Background())

	_, loadErr := e.LoadConfig([]byte(bad))
	for name, err := range map[string]error{"LoadConfig": loadErr, "Reload": e.Reload()} {
		if !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("%s: %v does not wrap api.ErrBadRequest", name, err)
		}
		var errs config.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("%s: %T %v: errors.As(config.Errors) fails", name, err, err)
		}
		if len(errs) == 0 || errs[0].Line != 4 || errs[0].Path != "pools.web.members[0].address" {
			t.Errorf("%s: want the member address error on line 4, got %v", name, errs)
		}
	}
}
