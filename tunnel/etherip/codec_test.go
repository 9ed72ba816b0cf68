package etherip

import (
	"bytes"
	"errors"
	"testing"
)

func ethFrame(n int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(i*7 + 1)
	}
	return f
}

func TestEncap(t *testing.T) {
	t.Parallel()
	f := ethFrame(60)
	got := Encap(nil, f)
	if got[0] != 0x30 || got[1] != 0x00 || !bytes.Equal(got[2:], f) {
		t.Fatalf("Encap = % x…", got[:4])
	}
	// Appends to dst.
	got = Encap([]byte{0xaa}, f)
	if got[0] != 0xaa || got[1] != 0x30 || len(got) != 1+2+60 {
		t.Fatalf("Encap(dst) = % x…", got[:4])
	}
}

func TestDecap(t *testing.T) {
	t.Parallel()
	frame := ethFrame(14)
	with := func(h0, h1 byte, f []byte) []byte { return append([]byte{h0, h1}, f...) }
	tests := []struct {
		name     string
		pkt      []byte
		reversed bool
		want     DropReason
		ok       bool
	}{
		{"good", with(0x30, 0, frame), false, 0, true},
		{"good, reversed accepted", with(0x30, 0, frame), true, 0, true},
		{"empty", nil, false, DropShort, false},
		{"one byte", []byte{0x30}, false, DropShort, false},
		{"header only", []byte{0x30, 0}, false, DropRuntFrame, false},
		{"13-byte frame", with(0x30, 0, frame[:13]), false, DropRuntFrame, false},
		{"reversed", with(0x03, 0, frame), false, DropReversed, false},
		{"reversed accepted", with(0x03, 0, frame), true, 0, true},
		{"reversed accepted, runt", with(0x03, 0, frame[:3]), true, DropRuntFrame, false},
		{"reversed with pad bits", with(0x03, 1, frame), true, DropBadVersion, false},
		{"version 4", with(0x40, 0, frame), false, DropBadVersion, false},
		{"version 0", with(0x00, 0, frame), true, DropBadVersion, false},
		{"version 15", with(0xf0, 0, frame), false, DropBadVersion, false},
		{"reserved low nibble", with(0x31, 0, frame), false, DropReservedBits, false},
		{"reserved second byte", with(0x30, 0x80, frame), false, DropReservedBits, false},
		{"reserved both", with(0x3f, 0xff, frame), true, DropReservedBits, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decap(tt.pkt, tt.reversed)
			if tt.ok {
				if err != nil {
					t.Fatalf("Decap: %v", err)
				}
				if !bytes.Equal(got, tt.pkt[2:]) {
					t.Fatalf("frame = % x, want % x", got, tt.pkt[2:])
				}
				return
			}
			var r DropReason
			if !errors.As(err, &r) || r != tt.want {
				t.Fatalf("Decap error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Fatalf("frame %x returned with error", got)
			}
		})
	}
}

func TestDropReasonStrings(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for r := range NumDropReasons {
		s := r.String()
		if s == "unknown" || seen[s] {
			t.Errorf("DropReason(%d).String() = %q", r, s)
		}
		seen[s] = true
	}
	if NumDropReasons.String() != "unknown" {
		t.Errorf("out-of-range reason: %q", NumDropReasons.String())
	}
	if DropBadVersion.Error() != "etherip: dropped: bad_version" {
		t.Errorf("Error() = %q", DropBadVersion.Error())
	}
}

// A flood of malformed packets must cost no more than the check: no
// allocation per rejected packet, not even for the error.
func TestDecapAllocs(t *testing.T) {
	bad := [][]byte{{}, {0x30}, {0x03, 0, 1}, {0x45, 0, 1, 2}, {0x30, 1, 1}, append([]byte{0x30, 0}, make([]byte, 5)...)}
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range bad {
			if _, err := Decap(p, false); err == nil {
				panic("accepted")
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run of rejected packets", allocs)
	}
}

func BenchmarkDecap(b *testing.B) {
	pkt := Encap(nil, ethFrame(1514))
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := Decap(pkt, false); err != nil {
			b.Fatal(err)
		}
	}
}
