package units

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Duration
		ok   bool
	}{
		{"5s", Duration(5 * time.Second), true},
		{"30", Duration(30 * time.Second), true},
		{"indefinite", Indefinite, true},
		{"-1", 0, false},
		{"x", 0, false},
		{"99999999999999999", 0, false},
	} {
		got, err := ParseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{{"64KiB", 65536, true}, {"65535", 65535, true}, {"1MB", 1e6, true}, {"-3", 0, false}, {"auto", 0, false}} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"12500000", 12_500_000, true}, {"100Mbps", 12_500_000, true}, {"1Gbit", 125_000_000, true},
		{"10MB/s", 10_000_000, true}, {"1MiB/s", 1 << 20, true}, {"8bps", 1, true}, {"fast", 0, false}, {"-1Mbps", 0, false},
	} {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestYAML(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
		S Size     `yaml:"s"`
		R Rate     `yaml:"r"`
	}
	if err := yaml.Unmarshal([]byte("d: 250ms\ns: 1MiB\nr: 1Mbit\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.D != Duration(250*time.Millisecond) || v.S != 1<<20 || v.R != 125000 {
		t.Fatalf("%+v", v)
	}
	if err := yaml.Unmarshal([]byte("r: lots\n"), &v); err == nil {
		t.Fatal("bad rate accepted")
	}
}
