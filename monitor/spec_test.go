package monitor

import (
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseDestination(t *testing.T) {
	t.Parallel()
	member4 := netip.MustParseAddrPort("10.0.0.5:8080")
	member6 := netip.MustParseAddrPort("[2001:db8::5]:8080")
	tests := []struct {
		in      string
		want4   string // resolved against member4
		want6   string // resolved against member6
		str     string // Destination.String()
		wantErr string
	}{
		{in: "", want4: "10.0.0.5:8080", want6: "[2001:db8::5]:8080", str: "*:*"},
		{in: "*:*", want4: "10.0.0.5:8080", want6: "[2001:db8::5]:8080", str: "*:*"},
		{in: "*:9000", want4: "10.0.0.5:9000", want6: "[2001:db8::5]:9000", str: "*:9000"},
		{in: "192.0.2.1:80", want4: "192.0.2.1:80", want6: "192.0.2.1:80", str: "192.0.2.1:80"},
		{in: "192.0.2.1:*", want4: "192.0.2.1:8080", want6: "192.0.2.1:8080", str: "192.0.2.1:*"},
		{in: "[2001:db8::1]:443", want4: "[2001:db8::1]:443", want6: "[2001:db8::1]:443", str: "[2001:db8::1]:443"},
		{in: "[::ffff:192.0.2.1]:80", want4: "192.0.2.1:80", want6: "192.0.2.1:80", str: "192.0.2.1:80"},
		{in: "*", wantErr: "write *:*"},
		{in: "*:0", wantErr: "port"},
		{in: "*:65536", wantErr: "port"},
		{in: "*:http", wantErr: "port"},
		{in: "host.example:80", wantErr: "not an IP address"},
		{in: "2001:db8::1:80", wantErr: "brackets"},
		{in: "0.0.0.0:80", wantErr: "unspecified"},
		{in: "[fe80::1%eth0]:80", wantErr: "zoned"},
		{in: "192.0.2.1", wantErr: "write *:*"},
		{in: "[::]:80", wantErr: "unspecified"},
		{in: "*:-1", wantErr: "port"},
		{in: "[192.0.2.1]:80", wantErr: "not an IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDestination(tt.in)
			if tt.wantErr != "" {
				var de *DestinationError
				if !errors.As(err, &de) || de.Dest != tt.in || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDestination(%q) error = %v, want a *DestinationError containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDestination(%q): %v", tt.in, err)
			}
			if got := d.Resolve(member4).String(); got != tt.want4 {
				t.Errorf("Resolve(%v) = %s, want %s", member4, got, tt.want4)
			}
			if got := d.Resolve(member6).String(); got != tt.want6 {
				t.Errorf("Resolve(%v) = %s, want %s", member6, got, tt.want6)
			}
			if got := d.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			// String output parses back to the same destination.
			back, err := ParseDestination(d.String())
			if err != nil || back != d {
				t.Errorf("round trip of %q: %v, %v", d.String(), back, err)
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile("ok")
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"tcp", Spec{Type: "tcp"}, ""},
		{"http status", Spec{Type: "http", Status: []int{200, 301}}, ""},
		{"udp receive reverse", Spec{Type: "udp", Receive: re, Reverse: true}, ""},
		{"empty type", Spec{}, "type is empty"},
		{"bad type", Spec{Type: "icmp"}, `unknown monitor type "icmp"`},
		{"negative interval", Spec{Type: "tcp", Interval: -time.Second}, "interval -1s is negative"},
		{"reverse without receive", Spec{Type: "tcp", Reverse: true}, "reverse needs a receive"},
		{"status on tcp", Spec{Type: "tcp", Status: []int{200}}, "only to http"},
		{"bad status", Spec{Type: "https", Status: []int{99}}, "outside 100..599"},
		{"bad destination", Spec{Type: "tcp", Destination: "*:x"}, "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		interval, timeout, want time.Duration
	}{
		{0, 0, 5 * time.Second}, // F5 defaults 5s / 16s
		{time.Second, 3 * time.Second, time.Second},
		{10 * time.Second, 2 * time.Second, 2 * time.Second},
		{10 * time.Millisecond, time.Second, MinAttemptTimeout},
	}
	for _, tt := range tests {
		s := Spec{Interval: tt.interval, Timeout: tt.timeout}
		if got := s.AttemptTimeout(); got != tt.want {
			t.Errorf("AttemptTimeout(interval %v, timeout %v) = %v, want %v", tt.interval, tt.timeout, got, tt.want)
		}
	}
}

func TestEqualSpec(t *testing.T) {
	t.Parallel()
	base := Spec{Name: "m", Type: "http", Receive: regexp.MustCompile("ok"), Status: []int{200}}
	same := base
	same.Receive = regexp.MustCompile("ok") // different pointer, same pattern
	same.Status = []int{200}
	if !equalSpec(base, same) {
		t.Error("specs with equal fields and equal regexp source compare different")
	}
	for name, mod := range map[string]func(*Spec){
		"receive":  func(s *Spec) { s.Receive = regexp.MustCompile("ko") },
		"nil recv": func(s *Spec) { s.Receive = nil },
		"status":   func(s *Spec) { s.Status = []int{200, 204} },
		"interval": func(s *Spec) { s.Interval = time.Second },
		"dest":     func(s *Spec) { s.Destination = "*:81" },
	} {
		c := base
		c.Status = append([]int(nil), base.Status...)
		mod(&c)
		if equalSpec(base, c) {
			t.Errorf("changing %s not detected", name)
		}
	}
}
