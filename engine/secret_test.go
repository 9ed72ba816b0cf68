package engine

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
)

// TestSecretSeed: with a device group's seed, the cookie_insert secret of
// a profile that sets none is the same on every engine (device, restart);
// without one it is random per engine.
func TestSecretSeed(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	seed := []byte("group secret, same on every device")
	a := New(Options{Log: log, SecretSeed: seed})
	b := New(Options{Log: log, SecretSeed: seed})
	c := New(Options{Log: log})
	d := New(Options{Log: log})
	for _, e := range []*Engine{a, b, c, d} {
		defer e.Close(t.Context())
	}
	sa, _ := a.secretFor("p")
	sb, _ := b.secretFor("p")
	sq, _ := a.secretFor("q")
	if !bytes.Equal(sa, sb) || len(sa) < 16 {
		t.Errorf("seeded secrets differ: %x %x", sa, sb)
	}
	if bytes.Equal(sa, sq) {
		t.Error("two profiles share a seeded secret")
	}
	sc, _ := c.secretFor("p")
	sd, _ := d.secretFor("p")
	if bytes.Equal(sc, sd) || bytes.Equal(sc, sa) {
		t.Error("unseeded secrets are not random per engine")
	}
}
