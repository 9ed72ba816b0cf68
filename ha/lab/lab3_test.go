package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

// newLab3 is a three-device lab: a, b and c on the LAN bridge (one HA
// path), the same client, virtual server and floating address.
func newLab3(t *testing.T, prefix string, s settings) *lab {
	t.Helper()
	l := newLabBase(t, prefix)
	addr := map[string]string{"a": "10.77.0.1", "b": "10.77.0.2", "c": "10.77.0.3"}
	for _, n := range []string{"a", "b", "c"} {
		l.addDevice(n, "q"+n, addr[n], 1) // "pc" is the client's port
	}
	l.plug(l.client, "pc", client)
	must(t, trust.Init(filepath.Join(l.dir, "trust-a"), "a"))
	for _, n := range []string{"b", "c"} {
		must(t, trust.Issue(filepath.Join(l.dir, "trust-a"), n, filepath.Join(l.dir, "trust-"+n)))
	}
	for _, n := range []string{"a", "b", "c"} {
		d := l.devs[n]
		d.config = filepath.Join(l.dir, n+".yaml")
		cfg := fmt.Sprintf(`local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [%s]}
  b: {ha_addresses: [%s]}
  c: {ha_addresses: [%s]}
failover: {interval: %s, dead_time: %s, garp_count: 3, garp_interval: 50ms}
config_sync: {mode: automatic, interval: 200ms}
traffic_groups:
  tg1:
    addresses: [{address: %s/24, interface: eth0}]
management: {address: "127.0.0.1:9090"}
pools:
  p: {members: [{address: "127.0.0.1:9000"}]}
virtuals:
  v: {destination: "%s:%d", type: tcp, pool: p}
`, n, filepath.Join(l.dir, "trust-"+n), addr["a"], addr["b"], addr["c"], s.interval, s.deadTime, vip, vip, vipPort)
		must(t, os.WriteFile(d.config, []byte(cfg), 0o600))
	}
	t.Cleanup(l.stopAll)
	return l
}

// servers lists the devices whose namespace holds the floating address.
func (l *lab) servers() []string {
	var out []string
	for _, n := range sortedDevices(l.devs) {
		if l.hasVIP(n) {
			out = append(out, n)
		}
	}
	return out
}

// TestThreeDevices: real processes, one HA path. kill -9 of the holder:
// the next device takes over by majority. The killed device returns as
// standby. Then the holder is cut off the LAN alone: it gives the group
// up (it is a minority of one), the two others move it, and while cut off
// it never holds the address again.
func TestThreeDevices(t *testing.T) {
	t.Parallel()
	l := newLab3(t, "h3", ciSettings)
	for _, n := range []string{"a", "b", "c"} {
		l.start(n)
	}
	p := l.startProber()
	l.waitActive(p, "a", 10*time.Second)
	killed := time.Now()
	l.signal("a", syscall.SIGKILL)
	at, ok := p.first("b", killed, 10*time.Second)
	if !ok {
		t.Fatalf("b did not take over from the killed a (b: %+v)", l.groupOrNil("b"))
	}
	t.Logf("three devices, kill -9 of the holder: first request served by b %s after the kill (dead_time %s)", at.Sub(killed).Round(time.Millisecond), ciSettings.deadTime)
	l.start("a")
	time.Sleep(3 * ciSettings.deadTime)
	if g := l.group("a"); g.State != "standby" {
		t.Errorf("the restarted a: %+v", g)
	}
	st, err := l.status("a")
	must(t, err)
	if st.Quorum == nil || !st.Quorum.InMajority || st.Quorum.Leader == "" {
		t.Errorf("a's quorum after its restart: %+v", st.Quorum)
	}
	// b, the holder, cut off alone.
	cut := time.Now()
	setLink(t, l.lan, "qb", false)
	if !eventually(5*time.Second, func() bool { return !l.hasVIP("b") }) {
		t.Fatal("b, cut off in a minority of one, kept the floating address")
	}
	released := time.Since(cut)
	at, ok = p.first("c", cut, 10*time.Second)
	if !ok {
		t.Fatalf("c did not take over from the cut-off b (c: %+v)", l.groupOrNil("c"))
	}
	t.Logf("holder cut off: it removed the address %s after the cut; c served %s after it", released.Round(time.Millisecond), at.Sub(cut).Round(time.Millisecond))
	for end := time.Now().Add(5 * ciSettings.deadTime); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if s := l.servers(); len(s) != 1 || s[0] != "c" {
			t.Fatalf("with b cut off the floating address is on %v, want c only", s)
		}
	}
	setLink(t, l.lan, "qb", true)
	time.Sleep(5 * ciSettings.deadTime)
	if s := l.servers(); len(s) != 1 || s[0] != "c" {
		t.Errorf("after the heal the floating address is on %v, want c only", s)
	}
	healed := time.Now()
	time.Sleep(300 * time.Millisecond)
	if got := p.between(healed, time.Now()); got["c"] == 0 || len(got) != 1 {
		t.Errorf("after the heal probes were answered by %v, want c only", got)
	}
	// Config sync rides the quorum: a change reloaded on b reaches a and c.
	l.addVirtual(t, "b", "w", "81")
	for _, n := range []string{"a", "c"} {
		if !eventually(5*time.Second, func() bool { return strings.Contains(l.runningConfig(n), "w: {destination") }) {
			st, _ := l.syncStatus(n)
			t.Errorf("%s did not get b's change through the group: %+v", n, st)
		}
	}
}

// TestBenchThreeDevices: three devices, Fulcrum's tuned setting, 5 runs
// each of kill -9 of the holder and of the holder cut off alone: time to
// the first request served by the device the majority chose.
func TestBenchThreeDevices(t *testing.T) {
	benchEnabled(t)
	const runs = 5
	tuned := settings{10 * time.Millisecond, 50 * time.Millisecond}
	res := map[string][]time.Duration{}
	for r := 0; r < runs; r++ {
		for ei, ev := range []string{"kill -9 of the holder", "the holder cut off alone", "SIGSTOP of the holder"} {
			t.Run(fmt.Sprintf("r%d-e%d", r, ei), func(t *testing.T) {
				l := newLab3(t, fmt.Sprintf("b3%d%d", r, ei), tuned)
				for _, n := range []string{"a", "b", "c"} {
					l.start(n)
				}
				p := l.startProber()
				l.waitActive(p, "a", 10*time.Second)
				time.Sleep(300 * time.Millisecond)
				t0 := time.Now()
				switch ei {
				case 0:
					l.signal("a", syscall.SIGKILL)
				case 1:
					setLink(t, l.lan, "qa", false)
				case 2:
					l.signal("a", syscall.SIGSTOP)
				}
				at, ok := p.first("b", t0, 10*time.Second)
				if !ok {
					t.Errorf("%s: b never served", ev)
					return
				}
				res[ev] = append(res[ev], at.Sub(t0))
			})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| three devices, `interval: %s`, `dead_time: %s`, %d runs | first request served by the next device: min / median / max |\n|---|---|\n", tuned.interval, tuned.deadTime, runs)
	for _, ev := range []string{"kill -9 of the holder", "the holder cut off alone", "SIGSTOP of the holder"} {
		s := slices.Clone(res[ev])
		slices.Sort(s)
		if len(s) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s / %s / %s |\n", ev, ms(s[0]), ms(s[len(s)/2]), ms(s[len(s)-1]))
	}
	t.Logf("\n%s", b.String())
	writeOut(t, b.String())
}
