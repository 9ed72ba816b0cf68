package tcp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func decode(t *testing.T, src string) map[string]*Settings {
	t.Helper()
	var m map[string]*Settings
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBuiltinsReference checks the values the reference gives.
func TestBuiltinsReference(t *testing.T) {
	b := Builtins()
	for _, name := range []string{BuiltinTCP, BuiltinLAN, BuiltinWAN} {
		p := b[name]
		if p.SendBuffer != 65535 || p.ReceiveWindow != 65535 || p.ProxyBufferHigh != 131072 {
			t.Errorf("%s: send %d recv %d high %d, want 65535 65535 131072", name, p.SendBuffer, p.ReceiveWindow, p.ProxyBufferHigh)
		}
		if p.FinWaitTimeout != 5*time.Second || p.CloseWaitTimeout != 5*time.Second || p.IdleTimeout != 300*time.Second || p.SynMaxRetrans != 3 {
			t.Errorf("%s: timers %+v", name, p)
		}
	}
	if b[BuiltinLAN].ProxyBufferLow != 98304 || b[BuiltinWAN].ProxyBufferLow != 131072 {
		t.Errorf("proxy_buffer_low lan %d wan %d, want 98304 131072", b[BuiltinLAN].ProxyBufferLow, b[BuiltinWAN].ProxyBufferLow)
	}
	if b[BuiltinTCP].AckOnPush || !b[BuiltinLAN].AckOnPush {
		t.Error("ack_on_push: off in tcp, on in tcp-lan-optimized (reference)")
	}
	if b[BuiltinTCP].ECN || b[BuiltinTCP].DSACK != true || !b[BuiltinTCP].LimitedTransmit {
		t.Error("system-wide defaults should describe a default Linux host")
	}
	// Fresh copies: changing one does not change the next.
	b[BuiltinTCP].Nagle = true
	if Builtins()[BuiltinTCP].Nagle {
		t.Error("Builtins returned a shared profile")
	}
	// The built-ins used alone keep the three rules, except
	// tcp-wan-optimized, whose low = high (reference) breaks rule 3.
	for name, p := range Builtins() {
		n := RuleNotices(p, p)
		if name == BuiltinWAN {
			if len(n) != 1 || !strings.Contains(n[0], "rule 3") {
				t.Errorf("%s: %q, want one rule-3 notice", name, n)
			}
		} else if len(n) != 0 {
			t.Errorf("%s: %q", name, n)
		}
		if n := SystemNotices(p, System{}); len(n) != 0 {
			t.Errorf("%s: a built-in gives system notices %q", name, n)
		}
	}
}

func TestResolveInheritance(t *testing.T) {
	all, err := Resolve(decode(t, `
a:
  parent: tcp-lan-optimized
  send_buffer: 128KiB
  nagle: true
b:
  parent: a
  receive_window: auto
  idle_timeout: indefinite
  pacing_rate: 8Mbit
c:
  parent: b
  send_buffer: 96KiB
  proxy_buffer_high: auto
  proxy_buffer_low: auto
d: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c, d := all["a"], all["b"], all["c"], all["d"]
	if a.SendBuffer != 128<<10 || !a.Nagle || !a.AckOnPush || a.ProxyBufferLow != 98304 || a.Name != "a" {
		t.Errorf("a = %+v", a)
	}
	if b.SendBuffer != 128<<10 || !b.AutoReceiveWindow || b.ReceiveWindow != 0 || b.IdleTimeout != 0 || b.PacingRate != 1_000_000 || !b.Nagle {
		t.Errorf("b = %+v", b)
	}
	if c.SendBuffer != 96<<10 || !c.AutoReceiveWindow || !c.AutoProxyBuffer || c.ProxyBufferHigh != 0 || !c.Explicit["nagle"] || !c.Explicit["pacing_rate"] {
		t.Errorf("c = %+v", c)
	}
	if d.Name != "d" || d.SendBuffer != 65535 || len(d.Explicit) != 0 {
		t.Errorf("d = %+v (default parent tcp)", d)
	}
	if all[BuiltinTCP].Nagle {
		t.Error("a child changed its parent")
	}
}

func TestResolveErrors(t *testing.T) {
	cases := []struct {
		src, profile, key, msg string
	}{
		{"x: {parent: y}\ny: {parent: z}\nz: {parent: x}\n", "x", "parent", "inheritance cycle: x → y → z → x"},
		{"x: {parent: x}\n", "x", "parent", "its own parent"},
		{"x: {parent: nope}\n", "x", "parent", `parent "nope" does not exist`},
		{"tcp: {nagle: true}\n", "tcp", "", "built-in profile"},
		{"x: {receive_window: 1000}\n", "x", "receive_window", "out of range"},
		{"x: {proxy_buffer_high: 64KiB, proxy_buffer_low: 65KiB}\n", "x", "proxy_buffer_low", "must not be larger"},
		{"x: {proxy_buffer_high: auto, proxy_buffer_low: 64KiB}\n", "x", "proxy_buffer_low", "auto together"},
		{"x: {parent: tcp-mobile-optimized, proxy_buffer_high: 256KiB}\n", "x", "proxy_buffer_high", "write both"},
		{"x: {keepalive_interval: 1500ms}\n", "x", "keepalive_interval", "whole seconds"},
		{"x: {fin_wait_2_timeout: 300s}\n", "x", "fin_wait_2_timeout", "120"},
		{"x: {min_rto: 1s}\n", "x", "min_rto", "200 ms"},
		{"x: {syn_max_retrans: 0}\n", "x", "syn_max_retrans", "1 to 127"},
		{"x: {mss: 40}\n", "x", "mss", "out of range"},
		{"x: {ip_tos: 46}\n", "x", "ip_tos", "ECN bits"},
		{"x: {ipv6_tclass: 256}\n", "x", "ipv6_tclass", "out of range"},
		{"x: {link_qos: 8}\n", "x", "link_qos", "0 to 7"},
		{"x: {congestion_control: 'b b'}\n", "x", "congestion_control", "not a congestion-control name"},
		{"x: {user_timeout: indefinite}\n", "x", "user_timeout", "cannot be indefinite"},
		{"x: {auto_buffer_ceiling: 1KiB}\n", "x", "auto_buffer_ceiling", "out of range"},
		{"x: {idle_timeout: 0}\n", "x", "idle_timeout", "indefinite"},
	}
	for _, tc := range cases {
		_, err := Resolve(decode(t, tc.src))
		var errs Errors
		if !errors.As(err, &errs) || len(errs) != 1 {
			t.Errorf("%q: got %v, want one error", tc.src, err)
			continue
		}
		e := errs[0]
		if e.Profile != tc.profile || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%q: got %s / %s: %s, want %s / %s: …%s…", tc.src, e.Profile, e.Key, e.Msg, tc.profile, tc.key, tc.msg)
		}
	}
}

func TestRuleNotices(t *testing.T) {
	all, err := Resolve(decode(t, `
small: {proxy_buffer_high: 48KiB, proxy_buffer_low: 32KiB}
big-window: {receive_window: 1MiB, proxy_buffer_high: 2MiB, proxy_buffer_low: 1MiB}
`))
	if err != nil {
		t.Fatal(err)
	}
	n := RuleNotices(all["small"], all["big-window"])
	var rules []string
	for _, m := range n {
		rules = append(rules, m[strings.LastIndex(m, "(")+1:])
	}
	// small: 48K < send 65535 (1), 32K < peer window 1MiB (2), gap 16K (3).
	// big-window: its peer window is 65535 ≤ 1MiB, gap 1MiB: clean.
	want := []string{"proxy-buffer rule 1)", "proxy-buffer rule 2)", "proxy-buffer rule 3)"}
	if strings.Join(rules, ",") != strings.Join(want, ",") {
		t.Fatalf("notices:\n%s", strings.Join(n, "\n"))
	}
	if !strings.HasPrefix(n[0], `clientside TCP profile "small"`) || !strings.Contains(n[1], `the serverside profile "big-window"`) {
		t.Errorf("notices name the wrong sides:\n%s", strings.Join(n, "\n"))
	}
	// Auto proxy buffers are not checked; an auto receive window counts at its ceiling.
	if n := RuleNotices(Builtins()[BuiltinMobile], Builtins()[BuiltinTCP]); len(n) != 1 || !strings.Contains(n[0], "(4194304)") {
		t.Errorf("tcp beside an auto window: %q", n)
	}
}

func TestSystemNotices(t *testing.T) {
	all, err := Resolve(decode(t, `
x:
  selective_acks: false
  timestamps: true
  ecn: true
  limited_transmit: false
  time_wait_timeout: 2s
  time_wait_recycle: true
  init_cwnd: 16
  min_rto: 50ms
  delayed_ack: false
  congestion_control: cubic
`))
	if err != nil {
		t.Fatal(err)
	}
	sys := System{SACK: true, Timestamps: true, ECN: 2, TWReuse: 2, TWReuseDelay: time.Second, Allowed: []string{"reno", "bbr"}}
	n := SystemNotices(all["x"], sys)
	joined := strings.Join(n, "\n")
	for _, want := range []string{
		"selective_acks: false cannot be set per socket", "ecn: true", "limited_transmit: false",
		"TIME_WAIT for a fixed 60 s", "tcp_tw_reuse_delay (1s", "tcp_tw_reuse=1 (this host has 2, loopback only)",
		"ip route change <route> initcwnd 16", "no TCP_RTO_MIN_US", "no TCP_DELACK_MAX_US", `"cubic" is not in net.ipv4.tcp_allowed_congestion_control`,
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "timestamps") {
		t.Errorf("timestamps matches the host but has a notice:\n%s", joined)
	}
	sys.Privileged, sys.RTOMinPerSocket, sys.DelackMaxPerSocket = true, true, true
	if n2 := SystemNotices(all["x"], sys); len(n2) != len(n)-3 {
		t.Errorf("with the per-socket options and privileges, %d notices, want %d:\n%s", len(n2), len(n)-3, strings.Join(n2, "\n"))
	}
}

func TestCheckCongestionControl(t *testing.T) {
	avail, err := AvailableCongestionControls()
	if err != nil || len(avail) == 0 {
		t.Fatalf("AvailableCongestionControls = %v, %v", avail, err)
	}
	if err := CheckCongestionControl(avail[0], avail); err != nil {
		t.Error(err)
	}
	if err := CheckCongestionControl("nosuch", avail); err == nil || !strings.Contains(err.Error(), avail[0]) {
		t.Errorf("error %v does not list the available algorithms", err)
	}
	sys, _ := ReadSystem()
	if sys.CongestionControl == "" || len(sys.Available) == 0 {
		t.Errorf("ReadSystem: %+v", sys)
	}
}

func TestAutoProxyBuffer(t *testing.T) {
	slow := Info{DeliveryRate: 1_250_000, MinRTT: 100 * time.Millisecond} // 10 Mbit/s × 100 ms = 125 KB
	fast := Info{DeliveryRate: 125_000_000, MinRTT: time.Millisecond}     // 1 Gbit/s × 1 ms = 125 KB
	lan := Info{DeliveryRate: 125_000_000, MinRTT: 100 * time.Microsecond}
	for _, tc := range []struct {
		to, from Info
		ceiling  int
	}{{slow, fast, 8 << 20}, {fast, slow, 8 << 20}, {lan, lan, 8 << 20}, {Info{}, Info{}, 8 << 20}, {slow, slow, 128 << 10}} {
		high, low := AutoProxyBuffer(tc.to, tc.from, tc.ceiling)
		if high > max(tc.ceiling, MinCeiling) || high-low < RuleGap || low <= 0 {
			t.Errorf("AutoProxyBuffer(%d, %d, %d) = %d, %d", tc.to.BDP(), tc.from.BDP(), tc.ceiling, high, low)
			continue
		}
		if high < 2*tc.ceiling/2 && (high < Headroom*tc.to.BDP() || low < min(Headroom*tc.from.BDP(), high-RuleGap)) {
			t.Errorf("rules broken: to BDP %d from BDP %d → high %d low %d", tc.to.BDP(), tc.from.BDP(), high, low)
		}
	}
	if got := autoTarget(1<<30, 1<<20); got != 1<<20 {
		t.Errorf("autoTarget over the ceiling = %d", got)
	}
	if got := autoTarget(0, 1<<20); got != AutoInitial {
		t.Errorf("autoTarget with nothing measured = %d", got)
	}
}

// FuzzSettings decodes arbitrary profile YAML and resolves it: no panics,
// and every resolved profile keeps its invariants.
func FuzzSettings(f *testing.F) {
	f.Add("x: {send_buffer: auto, receive_window: 64KiB, pacing_rate: 1Gbit}\n")
	f.Add("a: {parent: b}\nb: {parent: a}\n")
	f.Add("x: {proxy_buffer_high: auto, proxy_buffer_low: auto, idle_timeout: indefinite}\n")
	f.Add("x: {ip_tos: 184, link_qos: 7, mss: 1400, min_rto: 50ms}\n")
	f.Fuzz(func(t *testing.T, src string) {
		var m map[string]*Settings
		if err := yaml.Unmarshal([]byte(src), &m); err != nil {
			return
		}
		all, err := Resolve(m)
		if err != nil {
			return
		}
		for name, p := range all {
			if p.Name != name {
				t.Fatalf("profile %q named %q", name, p.Name)
			}
			if !p.AutoProxyBuffer && (p.ProxyBufferLow > p.ProxyBufferHigh || p.ProxyBufferLow < MinBuffer) {
				t.Fatalf("%s: proxy buffers %d/%d", name, p.ProxyBufferHigh, p.ProxyBufferLow)
			}
			if (p.AutoSendBuffer && p.SendBuffer != 0) || (!p.AutoSendBuffer && (p.SendBuffer < MinBuffer || p.SendBuffer > MaxBuffer)) {
				t.Fatalf("%s: send buffer %d auto %t", name, p.SendBuffer, p.AutoSendBuffer)
			}
		}
	})
}

func FuzzParseBufferSize(f *testing.F) {
	for _, s := range []string{"auto", "64KiB", "65535", "1MB", "-1", " auto ", "9999999999999999999KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseBufferSize(s)
		if err == nil && v < 0 && v != Auto {
			t.Fatalf("ParseBufferSize(%q) = %d", s, v)
		}
	})
}

// The default of a virtual that names no profile sizes every buffer from
// the path: a fixed SO_SNDBUF/SO_RCVBUF turns Linux's autotuning off and
// caps one stream at 64 KB in flight. Everything else is the reference's.
func TestProgressiveIsTCPWithAutoBuffers(t *testing.T) {
	b := Builtins()
	p, ref := b[BuiltinProgressive], b[BuiltinTCP]
	if p == nil || !IsBuiltin(BuiltinProgressive) {
		t.Fatal("tcp-progressive is not a built-in")
	}
	if !p.AutoSendBuffer || !p.AutoReceiveWindow || !p.AutoProxyBuffer || p.SendBuffer != 0 || p.ReceiveWindow != 0 {
		t.Fatalf("buffers not auto: %+v", p)
	}
	q := *p
	q.Name = ref.Name
	q.SendBuffer, q.ReceiveWindow, q.ProxyBufferHigh, q.ProxyBufferLow = ref.SendBuffer, ref.ReceiveWindow, ref.ProxyBufferHigh, ref.ProxyBufferLow
	q.AutoSendBuffer, q.AutoReceiveWindow, q.AutoProxyBuffer = false, false, false
	if !reflect.DeepEqual(&q, ref) {
		t.Fatalf("tcp-progressive differs from tcp beyond its buffers:\n%+v\n%+v", &q, ref)
	}
}
