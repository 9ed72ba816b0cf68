package isession

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/fulcrum-adc/fulcrum/isession/codec"
)

func testHello() *Hello {
	return &Hello{Device: "a", InitialWindow: 256 << 10, MaxWindow: 16 << 20, MaxStreams: 1024}
}

func TestNegotiate(t *testing.T) {
	both := func(mod func(c, s *Hello)) Outcome {
		c, s := testHello(), testHello()
		mod(c, s)
		o, err := Negotiate(c, s)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	cases := []struct {
		name string
		mod  func(c, s *Hello)
		want Outcome
	}{
		{"nothing enabled", func(c, s *Hello) {}, Outcome{}},
		{"codec intersection in client order", func(c, s *Hello) {
			c.Codecs = []string{"zstd", "s2", "deflate"}
			s.Codecs = []string{"deflate", "zstd"}
		}, Outcome{Codecs: []codec.Codec{codec.Zstd, codec.Deflate}}},
		{"unknown codec ignored", func(c, s *Hello) {
			c.Codecs = []string{"lzo", "s2"}
			s.Codecs = []string{"lzo", "s2"}
		}, Outcome{Codecs: []codec.Codec{codec.S2}}},
		{"compression on one side only", func(c, s *Hello) {
			c.Codecs = []string{"zstd"}
			c.Adaptive = true
		}, Outcome{}},
		{"adaptive needs both", func(c, s *Hello) {
			c.Codecs, s.Codecs = []string{"s2"}, []string{"s2"}
			c.Adaptive, s.Adaptive = true, false
		}, Outcome{Codecs: []codec.Codec{codec.S2}}},
		{"adaptive both", func(c, s *Hello) {
			c.Codecs, s.Codecs = []string{"s2"}, []string{"s2"}
			c.Adaptive, s.Adaptive = true, true
		}, Outcome{Codecs: []codec.Codec{codec.S2}, Adaptive: true}},
		{"dedup smaller cache", func(c, s *Hello) {
			c.Dedup, s.Dedup = "x", "x"
			c.DedupCache, s.DedupCache = 64<<20, 32<<20
		}, Outcome{Dedup: "x", DedupCache: 32 << 20}},
		{"dedup one side", func(c, s *Hello) {
			c.Dedup, c.DedupCache = "x", 1<<20
		}, Outcome{}},
		{"dedup schemes differ", func(c, s *Hello) {
			c.Dedup, s.Dedup = "x", "y"
			c.DedupCache, s.DedupCache = 1<<20, 1<<20
		}, Outcome{DedupMismatch: true}},
		{"port transparency needs both", func(c, s *Hello) {
			c.PortTransparency = true
		}, Outcome{}},
		{"port transparency both", func(c, s *Hello) {
			c.PortTransparency, s.PortTransparency = true, true
		}, Outcome{PortTransparency: true}},
	}
	for _, tc := range cases {
		if got := both(tc.mod); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestHelloRoundTrip(t *testing.T) {
	h := testHello()
	h.Codecs, h.Adaptive, h.Dedup, h.DedupCache = []string{"zstd"}, true, "x", 1<<20
	h.DedupKey = bytes.Repeat([]byte{7}, 16)
	var buf bytes.Buffer
	if err := writeHello(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := readHello(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("got %+v want %+v", got, h)
	}
}

func TestHelloRefused(t *testing.T) {
	framed := func(js string) string { return "FIS1" + string([]byte{byte(len(js) >> 8), byte(len(js))}) + js }
	for name, in := range map[string]string{
		"dedup without key": framed(`{"initial_window":65536,"max_window":65536,"max_streams":1,"dedup":"x","dedup_cache":1}`),
		"dedup short key":   framed(`{"initial_window":65536,"max_window":65536,"max_streams":1,"dedup":"x","dedup_cache":1,"dedup_key":"AAAA"}`),
		"not iSession":      "GET / HTTP/1.1\r\n",
		"version":           "FIS2\x00\x02{}",
		"too long":          "FIS1\xff\xff",
		"truncated":         "FIS1\x00\x10{}",
		"bad json":          "FIS1\x00\x02{]",
		"zero windows":      "FIS1\x00\x02{}",
		"huge window":       `FIS1` + "\x00\x40" + `{"initial_window":65536,"max_window":9999999999,"max_streams":1}`,
		"empty":             "",
		"short head":        "FIS",
		"negative dedup":    "FIS1\x00\x4b" + `{"initial_window":65536,"max_window":65536,"max_streams":1,"dedup_cache":-1}`,
	} {
		_, err := readHello(strings.NewReader(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTargetRoundTrip(t *testing.T) {
	for _, tg := range []Target{
		{Dst: netip.MustParseAddrPort("10.0.0.1:80"), Src: netip.MustParseAddrPort("192.0.2.7:40000"), Virtual: "web"},
		{Dst: netip.MustParseAddrPort("[2001:db8::1]:443"), Src: netip.MustParseAddrPort("[2001:db8::2]:1"), Virtual: ""},
		{Dst: netip.MustParseAddrPort("10.0.0.1:0"), Src: netip.MustParseAddrPort("[::ffff:10.0.0.2]:5")},
	} {
		b, err := AppendTarget(nil, tg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseTarget(b)
		if err != nil {
			t.Fatal(err)
		}
		tg.Src = netip.AddrPortFrom(tg.Src.Addr().Unmap(), tg.Src.Port())
		if got != tg {
			t.Errorf("got %v want %v", got, tg)
		}
		for i := range b {
			if _, err := ParseTarget(b[:i]); !errors.Is(err, ErrHeader) {
				t.Errorf("truncated at %d: %v", i, err)
			}
		}
		if _, err := ParseTarget(append(b, 0)); !errors.Is(err, ErrHeader) {
			t.Errorf("trailing byte accepted")
		}
	}
	if _, err := AppendTarget(nil, Target{}); err == nil {
		t.Error("empty target accepted")
	}
}

func FuzzParseTarget(f *testing.F) {
	b, _ := AppendTarget(nil, Target{Dst: netip.MustParseAddrPort("10.0.0.1:80"), Src: netip.MustParseAddrPort("[2001:db8::2]:1"), Virtual: "v"})
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		tg, err := ParseTarget(in)
		if err != nil {
			return
		}
		out, err := AppendTarget(nil, tg)
		if err != nil {
			t.Fatalf("parsed %v does not encode: %v", tg, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("re-encoded %x, parsed from %x", out, in)
		}
	})
}

func FuzzReadHello(f *testing.F) {
	var buf bytes.Buffer
	_ = writeHello(&buf, testHello())
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := readHello(bytes.NewReader(in))
		if err != nil {
			return
		}
		if err := h.validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := Negotiate(h, h); err != nil {
			t.Fatal(err)
		}
	})
}
