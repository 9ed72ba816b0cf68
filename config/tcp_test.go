package config

import (
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/profile/tcp"
)

// TestTCPProfiles parses user TCP profiles with inheritance and checks the
// resolved values, the virtual's defaults and the notices.
func TestTCPProfiles(t *testing.T) {
	t.Parallel()
	c := mustParse(t, poolWeb+`
virtuals:
  vs:
    type: http
    destination: 127.0.0.1:8080
    pool: web
    clientside_tcp: wan-clients
    serverside_tcp: tcp-lan-optimized
  vt:
    type: tcp
    destination: 127.0.0.1:8081
    pool: web
    clientside_tcp: long-lived
  vw:
    type: tcp
    destination: 127.0.0.1:8082
    pool: web
    clientside_tcp: tcp-wan-optimized
profiles:
  tcp:
    wan-clients:
      parent: tcp-wan-optimized
      send_buffer: auto
      receive_window: 256KiB
      proxy_buffer_high: 512KiB
      proxy_buffer_low: 256KiB
      auto_buffer_ceiling: 512KiB
      pacing_rate: 100Mbps
      idle_timeout: 600
    long-lived:
      parent: wan-clients
      idle_timeout: indefinite
      keepalive_interval: 30s
      selective_acks: false
`)
	w := c.TCP["wan-clients"]
	if w == nil || !w.AutoSendBuffer || w.ReceiveWindow != 256<<10 || w.ProxyBufferHigh != 512<<10 || w.PacingRate != 12_500_000 ||
		!w.Nagle /* from tcp-wan-optimized */ || w.IdleTimeout != 600*time.Second {
		t.Fatalf("wan-clients = %+v", w)
	}
	l := c.TCP["long-lived"]
	if l.IdleTimeout != 0 || l.KeepAliveInterval != 30*time.Second || l.ReceiveWindow != 256<<10 || l.SACK || !l.Explicit["selective_acks"] {
		t.Fatalf("long-lived = %+v", l)
	}
	for _, b := range []string{"tcp", "tcp-lan-optimized", "tcp-wan-optimized", "tcp-mobile-optimized", "tcp-progressive"} {
		if c.TCP[b] == nil {
			t.Errorf("built-in %s missing from Config.TCP", b)
		}
	}
	// A tcp or http virtual takes its clientside profile's idle timeout.
	if c.Virtuals["vs"].IdleTimeout != Duration(600*time.Second) || c.Virtuals["vt"].IdleTimeout != Indefinite {
		t.Errorf("idle timeouts = %s, %s", c.Virtuals["vs"].IdleTimeout, c.Virtuals["vt"].IdleTimeout)
	}
	if c.Virtuals["vt"].ServersideTCP != "long-lived" {
		t.Errorf("serverside_tcp = %q, want the clientside's", c.Virtuals["vt"].ServersideTCP)
	}
	want := map[string]bool{
		"virtuals.vw: TCP profile \"tcp-wan-optimized\" (both sides)":                                                                     false, // rule 3: low = high
		"virtuals.vs: serverside TCP profile \"tcp-lan-optimized\": proxy_buffer_low (98304) is smaller than the receive_window (262144)": false, // rule 2
		"profiles.tcp.long-lived: TCP profile \"long-lived\": selective_acks":                                                             false,
	}
	sys, err := tcp.ReadSystem()
	if err != nil || !sys.SACK {
		delete(want, "profiles.tcp.long-lived: TCP profile \"long-lived\": selective_acks")
	}
	for _, n := range c.Notices {
		t.Logf("notice: %s", n)
		for prefix := range want {
			if strings.Contains(n, prefix) {
				want[prefix] = true
			}
		}
		if strings.Contains(n, "virtuals.vs: clientside") {
			t.Errorf("unexpected notice for vs's clientside (wan-clients keeps the three rules): %s", n)
		}
	}
	for prefix, seen := range want {
		if !seen {
			t.Errorf("no notice starting %q in %q", prefix, c.Notices)
		}
	}
}
