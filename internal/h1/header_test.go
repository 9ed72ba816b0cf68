package h1

import (
	"slices"
	"strings"
	"testing"
)

// TestTokenTable checks the tchar bitmaps against RFC 9110 §5.6.2 spelled
// out literally.
func TestTokenTable(t *testing.T) {
	t.Parallel()
	const rfc = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(rfc, byte(c)) >= 0
		if got := isTchar(byte(c)); got != want {
			t.Errorf("isTchar(%#02x) = %v, want %v", c, got, want)
		}
	}
}

func TestEqualFold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"Content-Length", "content-length", true},
		{"HOST", "host", true},
		{"host", "hosts", false},
		{"a", "b", false},
		{"K", "\u212a", false}, // Kelvin sign must not fold to K in field names
		{"[", "{", false},      // 0x5b vs 0x7b differ by 0x20 but are not letters
		{"", "", true},
	}
	for _, tt := range tests {
		if got := equalFold(tt.a, tt.b); got != tt.want {
			t.Errorf("equalFold(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestHeaderMethods(t *testing.T) {
	t.Parallel()
	h := Header{
		{"Host", "a"},
		{"X-Thing", "1"},
		{"Accept", "*/*"},
		{"x-thing", "2"},
		{"X-THING", "3"},
	}
	if v, ok := h.Get("X-THING"); !ok || v != "1" {
		t.Fatalf("Get = %q, %v; want first value 1", v, ok)
	}
	if _, ok := h.Get("missing"); ok {
		t.Fatal("Get(missing) reported ok")
	}
	if got := h.Values("x-thing"); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("Values = %q", got)
	}
	if h.Values("missing") != nil {
		t.Fatal("Values(missing) not nil")
	}
	if !h.Has("accept") || h.Has("cookie") {
		t.Fatal("Has wrong")
	}

	// Set keeps the position of the first occurrence and removes the others.
	h.Set("X-Thing", "new")
	want := Header{{"Host", "a"}, {"X-Thing", "new"}, {"Accept", "*/*"}}
	if !slices.Equal(h, want) {
		t.Fatalf("after Set: %q, want %q", h, want)
	}
	h.Set("Via", "1.1 fulcrum") // absent: appended
	h.Add("Via", "1.1 other")
	want = append(want, Field{"Via", "1.1 fulcrum"}, Field{"Via", "1.1 other"})
	if !slices.Equal(h, want) {
		t.Fatalf("after Set/Add: %q, want %q", h, want)
	}
	h.Del("VIA")
	h.Del("missing")
	want = want[:3]
	if !slices.Equal(h, want) {
		t.Fatalf("after Del: %q, want %q", h, want)
	}

	var empty Header // zero value usable
	empty.Set("A", "1")
	empty.Add("a", "2")
	empty.Del("A")
	if len(empty) != 0 {
		t.Fatalf("zero Header after Set/Add/Del: %q", empty)
	}
}

func TestForEachListElem(t *testing.T) {
	t.Parallel()
	var got []string
	forEachListElem(" a ,, b\t,c,", func(e string) bool {
		got = append(got, e)
		return true
	})
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("got %q", got)
	}
}

// TestValidFieldValue checks the word-at-a-time fast path against the plain
// definition for every byte value at every position of a 17-byte value.
func TestValidFieldValue(t *testing.T) {
	t.Parallel()
	ref := func(v string) bool {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return false
			}
		}
		return true
	}
	base := []byte("abcdefgh\xff\x80ijklmno~")
	for pos := range base {
		for c := 0; c < 256; c++ {
			v := append([]byte(nil), base...)
			v[pos] = byte(c)
			if got, want := validFieldValue(string(v)), ref(string(v)); got != want {
				t.Fatalf("validFieldValue(%q) = %v, want %v", v, got, want)
			}
		}
	}
}
