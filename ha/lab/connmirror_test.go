package lab

import (
	"bytes"
	"context"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"github.com/fulcrum-adc/fulcrum/internal/testnet"
)

// The connection-mirroring lab: two devices, a client and a server, all
// on the LAN bridge. The server is one host both devices reach; the
// devices' server-side connections come from a floating SNAT address of
// the traffic group (snat_addr), so that they move with it.
var (
	snatAddr   = netip.MustParseAddr("10.77.0.51")
	serverAddr = "10.77.0.200"
	serverPort = 7000
	mirrorPort = 80 // virtual m: mirror: true
	plainPort  = 81 // virtual u: the same, unmirrored (the baseline)
	// udp: virtual mu (mirrored) and uu (not), to a server that answers
	// each datagram with the source address and port it came from.
	udpServerPort = 7053
	udpMirrorPort = 53
	udpPlainPort  = 54
	// http: virtual mh (mirrored) and uh (not), to the server's http
	// port (keep-alive requests, and upgrades to the sequence protocol).
	httpServerPort = 7080
	httpMirrorPort = 8080
	httpPlainPort  = 8081
)

// startMirrored starts both devices and waits for a to be active with its
// connection-mirroring channel up.
func (l *lab) startMirrored(t *testing.T) {
	t.Helper()
	l.start("a")
	l.start("b")
	if !eventually(5*time.Second, func() bool {
		st, err := l.mirrorStatus("a")
		return err == nil && l.group("a").State == "active" && st.Connections.Up
	}) {
		t.Fatalf("a is not active with its mirror channel up: %+v", l.groupOrNil("a"))
	}
}

// newConnLab builds the lab; the server namespace is returned for the
// test to listen in. Nothing runs yet.
func newConnLab(t *testing.T, prefix string, s settings) (*lab, *testnet.NS) {
	t.Helper()
	l := newLabBase(t, prefix)
	for _, n := range []string{"a", "b"} {
		l.addDevice(n, "p"+n, lanAddr[n], 0)
	}
	l.plug(l.client, "pc", client)
	must(t, l.client.SetSysctl("net.ipv4.ip_local_port_range", "1024 65000"))
	srv := testnet.TempNS(t, prefix+"srv")
	l.plug(srv, "ps", serverAddr)
	must(t, testnet.AddVeth(l.devs["a"].ns, "ha1", l.devs["b"].ns, "ha1", testnet.VethOptions{}))
	for _, n := range []string{"a", "b"} {
		d := l.devs[n]
		must(t, d.ns.AddAddr("ha1", netip.MustParsePrefix(hal[n]+"/24")))
		must(t, d.ns.LinkUp("ha1"))
	}
	must(t, trust.Init(filepath.Join(l.dir, "trust-a"), "a"))
	must(t, trust.Issue(filepath.Join(l.dir, "trust-a"), "b", filepath.Join(l.dir, "trust-b")))
	for _, n := range []string{"a", "b"} {
		d := l.devs[n]
		d.config = filepath.Join(l.dir, n+".yaml")
		cfg := fmt.Sprintf(`local: {device: %s, trust_dir: %s}
devices:
  a: {ha_addresses: [%s, %s], mirror_addresses: [%s, %s]}
  b: {ha_addresses: [%s, %s], mirror_addresses: [%s, %s]}
failover: {interval: %s, dead_time: %s, garp_count: 3, garp_interval: 50ms}
traffic_groups:
  tg1:
    addresses: [{address: %s/24, interface: eth0}, {address: %s/24, interface: eth0}]
management: {address: "127.0.0.1:9090"}
log: {level: %s}
snat_pools:
  floating: {addresses: [%s]}
pools:
  srv: {members: [{address: "%s:%d"}]}
  usrv: {members: [{address: "%s:%d"}]}
  hsrv: {members: [{address: "%s:%d"}]}
virtuals:
  m: {destination: "%s:%d", type: tcp, pool: srv, snat: floating, mirror: true}
  u: {destination: "%s:%d", type: tcp, pool: srv, snat: floating}
  mu: {destination: "%s:%d", type: udp, pool: usrv, snat: floating, mirror: true}
  uu: {destination: "%s:%d", type: udp, pool: usrv, snat: floating}
  mh: {destination: "%s:%d", type: http, pool: hsrv, snat: floating, mirror: true}
  uh: {destination: "%s:%d", type: http, pool: hsrv, snat: floating}
`, n, filepath.Join(l.dir, "trust-"+n),
			lanAddr["a"], hal["a"], hal["a"], lanAddr["a"], lanAddr["b"], hal["b"], hal["b"], lanAddr["b"],
			s.interval, s.deadTime, vip, snatAddr, labLogLevel(), snatAddr, serverAddr, serverPort, serverAddr, udpServerPort, serverAddr, httpServerPort,
			vip, mirrorPort, vip, plainPort, vip, udpMirrorPort, vip, udpPlainPort, vip, httpMirrorPort, vip, httpPlainPort)
		must(t, os.WriteFile(d.config, []byte(cfg), 0o600))
	}
	t.Cleanup(l.stopAll)
	return l, srv
}

// The traffic of the connection-mirroring lab: every connection starts
// with a header (magic, class, id); after it, the byte at offset i of
// direction d (0: client to server, 1: server to client) is a function of
// (id, d, i), so both ends check every byte they receive. A byte out of
// place is corruption, wherever it happened.
const (
	classIdle = iota
	classInteractive
	classBulk
)

var classNames = [...]string{"idle", "interactive", "bulk"}

const (
	streamMagic = 0x46534551 // "FSEQ"
	reqSize     = 64         // interactive request and response
	bulkRate    = 256 << 10  // bytes/s each way per bulk connection
	bulkChunk   = 8 << 10
)

// streamBytes fills b with direction d of connection id from offset off:
// byte i is byte i%8 of a hash of (id, d, i/8).
func streamBytes(b []byte, id uint64, d int, off int64) {
	word := int64(-1)
	var x uint64
	for i := range b {
		o := off + int64(i)
		if w := o >> 3; w != word {
			word = w
			x = id*0x9e3779b97f4a7c15 ^ uint64(d)<<62 ^ uint64(w)
			x ^= x >> 30
			x *= 0xbf58476d1ce4e5b9
			x ^= x >> 27
			x *= 0x94d049bb133111eb
			x ^= x >> 31
		}
		b[i] = byte(x >> (8 * (o & 7)))
	}
}

// checkStream reports whether b is direction d of id at offset off.
func checkStream(b []byte, id uint64, d int, off int64, scratch []byte) bool {
	want := scratch[:len(b)]
	streamBytes(want, id, d, off)
	return bytes.Equal(b, want)
}

// seqServer is the lab's server: it checks what it receives and answers
// per class. It records connections whose bytes were out of place.
type seqServer struct {
	ln        net.Listener
	mu        sync.Mutex
	corrupted map[uint64]bool
	wg        sync.WaitGroup
}

func startSeqServer(t *testing.T, ns *testnet.NS) *seqServer {
	ln, err := ns.Listen("tcp", fmt.Sprintf("%s:%d", serverAddr, serverPort))
	must(t, err)
	s := &seqServer{ln: ln, corrupted: map[uint64]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c.(*net.TCPConn), c) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *seqServer) isCorrupted(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.corrupted[id]
}

// serve runs the sequence protocol on c, reading through rd (c, or a
// reader that holds bytes already read from c).
func (s *seqServer) serve(c *net.TCPConn, rd io.Reader) {
	defer c.Close()
	var hdr [16]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(rd, hdr[:]); err != nil || encbin.BigEndian.Uint32(hdr[:]) != streamMagic {
		return
	}
	c.SetReadDeadline(time.Time{})
	class, id := int(hdr[4]), encbin.BigEndian.Uint64(hdr[8:])
	done := make(chan struct{})
	defer close(done)
	var wmu sync.Mutex
	var out int64
	send := func(n int) error {
		wmu.Lock()
		defer wmu.Unlock()
		b := make([]byte, n)
		streamBytes(b, id, 1, out)
		_, err := c.Write(b)
		out += int64(n)
		return err
	}
	if class == classHalf {
		// Read to the client's FIN, then keep this side open (as a server
		// with more to say would) until the connection is reset or 30 s.
		io.Copy(io.Discard, rd)
		time.Sleep(10 * time.Second)
		return
	}
	if class == classSink {
		class = classBulk // checks what it reads; sends nothing
	} else if class == classBulk {
		go func() {
			t := time.NewTicker(bulkChunk * time.Second / bulkRate)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					if send(bulkChunk) != nil {
						return
					}
				}
			}
		}()
	}
	buf, scratch := make([]byte, 64<<10), make([]byte, 64<<10)
	var in int64
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			if !checkStream(buf[:n], id, 0, in, scratch) {
				s.mu.Lock()
				s.corrupted[id] = true
				s.mu.Unlock()
				c.SetLinger(0)
				return
			}
			prev := in
			in += int64(n)
			if class != classBulk {
				// One response per complete request.
				for k := prev/reqSize + 1; k <= in/reqSize; k++ {
					if send(reqSize) != nil {
						return
					}
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// seqConn is one client connection of the lab.
type seqConn struct {
	id    uint64
	class int
	c     *net.TCPConn

	mu       sync.Mutex
	progress []time.Time // when verified bytes arrived
	in       int64
	err      error
	corrupt  bool
	stop     chan struct{}
	readDone chan struct{}
	out      int64 // client → server offset (writer)
	wmu      sync.Mutex
}

func dialSeq(l *lab, port int, class int, id uint64) (*seqConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := l.client.Dial(ctx, &net.Dialer{}, "tcp", netip.AddrPortFrom(vip, uint16(port)).String())
	if err != nil {
		return nil, err
	}
	return startSeq(nc.(*net.TCPConn), class, id)
}

// startSeq starts the sequence protocol on a connection.
func startSeq(c *net.TCPConn, class int, id uint64) (*seqConn, error) {
	s := &seqConn{id: id, class: class, c: c, stop: make(chan struct{}), readDone: make(chan struct{})}
	var hdr [16]byte
	encbin.BigEndian.PutUint32(hdr[:], streamMagic)
	hdr[4] = byte(class)
	encbin.BigEndian.PutUint64(hdr[8:], id)
	if _, err := s.c.Write(hdr[:]); err != nil {
		s.c.Close()
		return nil, err
	}
	go s.read()
	switch class {
	case classInteractive:
		go s.every(50*time.Millisecond, reqSize)
	case classBulk:
		go s.every(bulkChunk*time.Second/bulkRate, bulkChunk)
	}
	return s, nil
}

func (s *seqConn) write(n int) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	b := make([]byte, n)
	streamBytes(b, s.id, 0, s.out)
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := s.c.Write(b)
	s.out += int64(n)
	return err
}

func (s *seqConn) every(d time.Duration, n int) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.write(n); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

func (s *seqConn) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *seqConn) read() {
	defer close(s.readDone)
	buf, scratch := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, err := s.c.Read(buf)
		if n > 0 {
			s.mu.Lock()
			ok := checkStream(buf[:n], s.id, 1, s.in, scratch)
			if !ok {
				s.corrupt = true
			}
			s.in += int64(n)
			s.progress = append(s.progress, time.Now())
			s.mu.Unlock()
			if !ok {
				s.c.Close()
				return
			}
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
}

// seqResult is how one connection came through.
type seqResult struct {
	class   int
	outcome string // survived | reset | corrupted | stalled
	pause   time.Duration
}

// finish checks the connection end to end once more (a request answered,
// or for bulk, bytes still arriving) and classifies it; pause is the
// longest gap in progress around at.
func (s *seqConn) finish(srv *seqServer, at time.Time, timeout time.Duration) seqResult {
	close(s.stop)
	r := seqResult{class: s.class}
	s.mu.Lock()
	before := s.in
	s.mu.Unlock()
	if s.class != classBulk {
		if err := s.write(reqSize); err != nil {
			s.fail(err)
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		got, err, bad := s.in, s.err, s.corrupt
		s.mu.Unlock()
		if got > before || err != nil || bad {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.c.Close()
	<-s.readDone
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.corrupt || srv.isCorrupted(s.id):
		r.outcome = "corrupted"
	case s.in > before && (s.err == nil || errors.Is(s.err, net.ErrClosed)):
		r.outcome = "survived"
	case s.err != nil && !errors.Is(s.err, net.ErrClosed):
		r.outcome = "reset"
	default:
		r.outcome = "stalled"
	}
	r.pause = pauseAround(s.progress, at)
	return r
}

// population opens n connections of each class to port (ids from base).
func population(t *testing.T, l *lab, port int, base uint64, n [3]int) []*seqConn {
	t.Helper()
	var out []*seqConn
	id := base
	for class, k := range n {
		for range k {
			id++
			s, err := dialSeq(l, port, class, id)
			if err != nil {
				t.Fatalf("connection %d (%s) to port %d: %v", id, classNames[class], port, err)
			}
			out = append(out, s)
		}
	}
	return out
}

// tally is a report line per class.
type tally struct {
	n      [3]map[string]int
	pauses [3][]time.Duration
}

func newTally() *tally {
	t := &tally{}
	for i := range t.n {
		t.n[i] = map[string]int{}
	}
	return t
}

func (t *tally) add(r seqResult) {
	t.n[r.class][r.outcome]++
	if r.outcome == "survived" && r.class != classIdle {
		t.pauses[r.class] = append(t.pauses[r.class], r.pause)
	}
}

func (t *tally) String() string {
	var b strings.Builder
	for c := range t.n {
		p := t.pauses[c]
		slices.Sort(p)
		med, p99 := time.Duration(0), time.Duration(0)
		if len(p) > 0 {
			med, p99 = p[len(p)/2], p[min(len(p)-1, len(p)*99/100)]
		}
		fmt.Fprintf(&b, "  %-11s survived %d, reset %d, corrupted %d, stalled %d; pause median %s p99 %s\n", classNames[c],
			t.n[c]["survived"], t.n[c]["reset"], t.n[c]["corrupted"], t.n[c]["stalled"], ms(med), ms(p99))
	}
	return b.String()
}

func (t *tally) merge(o *tally) {
	for c := range t.n {
		for k, v := range o.n[c] {
			t.n[c][k] += v
		}
		t.pauses[c] = append(t.pauses[c], o.pauses[c]...)
	}
}

func (t *tally) total(outcome string) (n int) {
	for c := range t.n {
		n += t.n[c][outcome]
	}
	return n
}

// connScenario runs one failure against a population through the mirrored
// virtual and a baseline population through the unmirrored one, and
// returns how each came through.
func connScenario(t *testing.T, prefix, kind string, s settings, n, base [3]int) (mirrored, plain *tally) {
	t.Helper()
	l, srvNS := newConnLab(t, prefix, s)
	srv := startSeqServer(t, srvNS)
	l.startMirrored(t)
	conns := population(t, l, mirrorPort, 0, n)
	plainConns := population(t, l, plainPort, 100000, base)
	time.Sleep(time.Second)
	st, err := l.mirrorStatus("a")
	must(t, err)
	total := n[0] + n[1] + n[2]
	if st.Connections.Open != total {
		t.Errorf("a mirrors %d connections, want %d (%+v)", st.Connections.Open, total, st.Connections)
	}
	stb, err := l.mirrorStatus("b")
	must(t, err)
	// What the operator sees.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	out, err := l.devs["a"].ns.Command(ctx, binary, "show", "mirroring", "-api", "127.0.0.1:9090").CombinedOutput()
	cancel()
	if err != nil || !strings.Contains(string(out), "CONNECTIONS MIRRORED NOW") ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^tg1\s+%d\s+%d\s`, total, total)).Match(out) {
		t.Errorf("fulcrum show mirroring on a (want %d connections mirrored now): %v\n%s", total, err, out)
	}
	t.Logf("before %s: a mirrors %d connections (%d bytes); b could resume %d", kind, st.Connections.Open, st.Connections.Bytes, stb.Connections.Shadows)
	mirrored, plain = newTally(), newTally()
	failAndFinish(t, l, srvNS, srv, prefix, kind, []popSet{{finishers(conns), mirrored}, {finishers(plainConns), plain}})
	t.Logf("%s, mirrored virtual:\n%s%s, unmirrored virtual:\n%s", kind, mirrored, kind, plain)
	return mirrored, plain
}

// finisher is a lab connection, checked once more after the failure.
type finisher interface {
	finish(srv *seqServer, at time.Time, timeout time.Duration) seqResult
}

func finishers[T finisher](cs []T) []finisher {
	out := make([]finisher, len(cs))
	for i, c := range cs {
		out[i] = c
	}
	return out
}

// popSet is connections counted into one tally.
type popSet struct {
	conns []finisher
	t     *tally
}

// failAndFinish applies failure kind to a (active), waits for b to take
// over and for the connections to settle, and finishes each connection of
// sets into its tally.
func failAndFinish(t *testing.T, l *lab, srvNS *testnet.NS, srv *seqServer, prefix, kind string, sets []popSet) {
	t.Helper()
	failAndFinishOn(t, l, srvNS, srv, prefix, kind, "a", "b", sets)
}

// failOver applies failure kind to device from (active) and waits for to
// to take over; it returns when the failure began.
func failOver(t *testing.T, l *lab, kind, from, to string) time.Time {
	t.Helper()
	at := time.Now()
	switch kind {
	case "planned":
		if out, err := l.failover(from, to); err != nil {
			t.Fatalf("fulcrum failover: %v: %s", err, out)
		}
	case "kill":
		l.signal(from, syscall.SIGKILL)
	case "stop":
		l.signal(from, syscall.SIGSTOP)
	case "cut":
		// Every HA path: the direct link and the device's LAN port (it is
		// cut off from the client and the server too).
		setLink(t, l.devs[from].ns, "ha1", false)
		setLink(t, l.lan, "p"+from, false)
	}
	if !eventually(5*time.Second, func() bool { return l.group(to).State == "active" }) {
		t.Fatalf("%s did not take over after %s of %s", to, kind, from)
	}
	t.Logf("%s of %s: %s active %s after", kind, from, to, time.Since(at).Round(time.Millisecond))
	return at
}

func failAndFinishOn(t *testing.T, l *lab, srvNS *testnet.NS, srv *seqServer, prefix, kind, from, to string, sets []popSet) {
	t.Helper()
	if dir := os.Getenv("FULCRUM_LAB_PCAP"); dir != "" {
		for _, x := range []struct {
			ns     *testnet.NS
			name   string
			filter string
		}{{l.client, "cli", "tcp"}, {srvNS, "srv", "tcp"}, {l.devs[to].ns, to, "tcp"}} {
			cap := x.ns.Command(context.Background(), "tcpdump", "-i", "eth0", "-s", "128", "-w", filepath.Join(dir, prefix+x.name+".pcap"), x.filter)
			must(t, cap.Start())
			t.Cleanup(func() { cap.Process.Signal(syscall.SIGINT); cap.Wait() })
		}
		time.Sleep(200 * time.Millisecond)
	}
	at := failOver(t, l, kind, from, to)
	// Long enough for the new active to tell a gap (4 s without a byte in
	// order while data comes) and reset it.
	time.Sleep(5 * time.Second)
	if os.Getenv("FULCRUM_LAB_DEBUG") != "" {
		for _, ns := range []*testnet.NS{l.devs[to].ns, l.client, srvNS} {
			out, _ := ns.Run(context.Background(), "ss", "-tnio")
			t.Logf("ss in %s:\n%s", ns.Name(), out)
		}
	}
	switch kind {
	case "stop":
		l.signal(from, syscall.SIGCONT)
	case "cut":
		setLink(t, l.lan, "p"+from, true)
		setLink(t, l.devs[from].ns, "ha1", true)
	}
	if kind == "stop" || kind == "cut" {
		// The old active finds it lost the group and lets go; the
		// connections go on at b.
		if !eventually(5*time.Second, func() bool { return l.group(from).State == "standby" }) {
			t.Errorf("%s did not step down after %s: %+v", from, kind, l.groupOrNil(from))
		}
		time.Sleep(time.Second)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, set := range sets {
		for _, c := range set.conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.finish(srv, at, 3*time.Second)
				mu.Lock()
				set.t.add(r)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if b, err := l.devs[to].api.Get("http://127.0.0.1:9090/api/v1/virtuals"); err == nil {
		body, _ := io.ReadAll(b.Body)
		b.Body.Close()
		t.Logf("%s's virtuals: %s", to, body)
	}
	if os.Getenv("FULCRUM_LAB_DEBUG") != "" {
		out, _ := l.devs[to].ns.Run(context.Background(), "nstat", "-az")
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] != "0" && strings.HasPrefix(f[0], "TcpExt") {
				t.Log(to + " nstat: " + line)
			}
		}
		for _, line := range strings.Split(l.log(to), "\n") {
			if strings.Contains(line, "taken-over connection reset") {
				t.Log(line)
			}
		}
	}
	for _, n := range []string{"a", "b"} {
		if log := l.log(n); strings.Contains(log, "DATA RACE") || strings.Contains(log, "panic:") {
			t.Errorf("device %s reported a data race or panicked:\n%s", n, log)
		}
	}
}

// TestConnMirrorPlanned: `fulcrum failover` moves every established
// connection of the mirrored virtual, bulk transfers included, byte-exact;
// the unmirrored virtual's connections are lost.
func TestConnMirrorPlanned(t *testing.T) {
	t.Parallel()
	m, p := connScenario(t, "cp", "planned", ciSettings, [3]int{10, 10, 4}, [3]int{3, 3, 0})
	if m.total("corrupted")+p.total("corrupted") != 0 {
		t.Errorf("corrupted connections")
	}
	if got := m.total("survived"); got != 24 {
		t.Errorf("%d of 24 mirrored connections survived a planned failover", got)
	}
	if got := p.total("survived"); got != 0 {
		t.Errorf("%d unmirrored connections survived", got)
	}
}

// TestConnMirrorStopAndCut: SIGSTOP of the active, and every HA path cut
// (the active isolated); when it returns, it steps down without
// disturbing the connections its peer continues.
//
// A stopped process's kernel goes on acknowledging what its peers send
// until the takeover moves them: every connection that sent anything
// meanwhile has bytes the standby never got, and is reset; idle ones go
// on. An isolated active receives nothing, so its interactive connections
// go on too.
func TestConnMirrorStopAndCut(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"stop", "cut"} {
		t.Run(kind, func(t *testing.T) {
			m, p := connScenario(t, "c"+kind[:1], kind, ciSettings, [3]int{6, 6, 2}, [3]int{2, 2, 0})
			if m.total("corrupted")+p.total("corrupted") != 0 || m.total("stalled") != 0 {
				t.Errorf("corrupted or stalled connections")
			}
			// Idle connections go on (one may be caught by the path's
			// last keepalive). Interactive ones go on after a cut unless
			// bytes the old active acknowledged never reached the standby
			// (reset cleanly by design): how many that is depends on the
			// machine's load, and CI runs this under -race beside every
			// other package, so some, not all, are required.
			if got := m.n[classIdle]["survived"]; got < 5 {
				t.Errorf("%d of 6 idle mirrored connections survived %s", got, kind)
			}
			if got := m.n[classInteractive]["survived"]; kind == "cut" && got < 2 {
				t.Errorf("%d of 6 interactive mirrored connections survived a cut", got)
			}
		})
	}
}

// TestConnMirrorKill: kill -9 of the active. Idle and interactive
// connections go on from the mirrored state; nothing is ever corrupted.
func TestConnMirrorKill(t *testing.T) {
	t.Parallel()
	m, p := connScenario(t, "ck", "kill", ciSettings, [3]int{10, 10, 4}, [3]int{3, 3, 0})
	if m.total("corrupted")+p.total("corrupted") != 0 {
		t.Errorf("corrupted connections")
	}
	// An interactive exchange in flight at the kill (acknowledged, not yet
	// mirrored) is reset cleanly by design; how many are in flight depends
	// on load (CI runs this under -race beside every other package).
	if got := m.n[classIdle]["survived"]; got < 9 {
		t.Errorf("%d of 10 idle mirrored connections survived kill -9", got)
	}
	if got := m.n[classInteractive]["survived"]; got < 5 {
		t.Errorf("%d of 10 interactive mirrored connections survived kill -9, want at least 5", got)
	}
	if got := p.total("survived"); got != 0 {
		t.Errorf("%d unmirrored connections survived", got)
	}
}

// TestBenchConnMirrorFailover: every failure the issue names, repeated,
// with 200 connections of the three classes through the mirrored virtual
// and a baseline through the unmirrored one; Fulcrum's tuned failover
// setting. Opt-in (about 6 minutes):
//
//	FULCRUM_HA_BENCH=1 go test -run TestBenchConnMirrorFailover -v -timeout 30m ./ha/lab/
func TestBenchConnMirrorFailover(t *testing.T) {
	if os.Getenv("FULCRUM_HA_BENCH") == "" {
		t.Skip("connection-mirroring failover benchmark: set FULCRUM_HA_BENCH=1 (about 6 minutes)")
	}
	// The CI labs' failover setting: with 200 connections, two devices,
	// a client and a server on two cores, 50 ms of dead time is within
	// reach of scheduling delays (a false failover was seen), 300 ms is not.
	tuned := ciSettings
	runs := 10
	var report strings.Builder
	fmt.Fprintf(&report, "connection mirroring, %d runs per failure, 200 mirrored connections (80 idle, 80 interactive every 50 ms, 40 bulk at %d KiB/s each way) and 30 unmirrored; interval %s, dead_time %s\n",
		runs, bulkRate>>10, tuned.interval, tuned.deadTime)
	for _, kind := range []string{"planned", "kill", "stop", "cut"} {
		m, p := newTally(), newTally()
		for r := range runs {
			ok := t.Run(fmt.Sprintf("%s-%d", kind, r), func(t *testing.T) {
				mm, pp := connScenario(t, fmt.Sprintf("m%c%d", kind[0], r), kind, tuned, [3]int{80, 80, 40}, [3]int{10, 10, 10})
				m.merge(mm)
				p.merge(pp)
			})
			if !ok {
				t.Fatalf("%s run %d failed", kind, r)
			}
		}
		fmt.Fprintf(&report, "%s, mirrored virtual:\n%s%s, unmirrored virtual:\n%s", kind, m, kind, p)
		if m.total("corrupted")+p.total("corrupted") != 0 {
			t.Errorf("%s: corrupted connections", kind)
		}
	}
	t.Log("\n" + report.String())
	writeOut(t, report.String())
}

// classSink: the server only checks what it receives (throughput runs).
// classHalf: the server keeps its side open after the client's FIN.
const (
	classSink = 3
	classHalf = 4
)

// rawSeq opens a connection of class to port and returns it after the header.
func rawSeq(t *testing.T, l *lab, port, class int, id uint64) *net.TCPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, err := l.client.Dial(ctx, &net.Dialer{}, "tcp", netip.AddrPortFrom(vip, uint16(port)).String())
	must(t, err)
	var hdr [16]byte
	encbin.BigEndian.PutUint32(hdr[:], streamMagic)
	hdr[4] = byte(class)
	encbin.BigEndian.PutUint64(hdr[8:], id)
	_, err = nc.Write(hdr[:])
	must(t, err)
	return nc.(*net.TCPConn)
}

// throughput writes the stream of id through port for d and returns bytes/s.
func throughput(t *testing.T, l *lab, port int, id uint64, d time.Duration) float64 {
	c := rawSeq(t, l, port, classSink, id)
	defer c.Close()
	b := make([]byte, 256<<10)
	var off int64
	start := time.Now()
	c.SetWriteDeadline(start.Add(d))
	for time.Since(start) < d {
		streamBytes(b, id, 0, off)
		n, err := c.Write(b)
		off += int64(n)
		if err != nil {
			break
		}
	}
	return float64(off) / time.Since(start).Seconds()
}

// latency is the median round trip of n 64-byte requests through port.
func latency(t *testing.T, l *lab, port int, id uint64, n int) time.Duration {
	c := rawSeq(t, l, port, classInteractive, id)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req, resp := make([]byte, reqSize), make([]byte, reqSize)
	var rtts []time.Duration
	for i := range n {
		streamBytes(req, id, 0, int64(i*reqSize))
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

// TestBenchConnMirrorCost: what mirroring costs a tcp virtual, measured
// side by side in one lab: one bulk stream's throughput and a small
// request's round trip through the mirrored virtual and through the same
// virtual unmirrored, rounds alternating; and the mirror channel's bytes
// per relayed byte. Opt-in:
//
//	FULCRUM_HA_BENCH=1 go test -run TestBenchConnMirrorCost -v ./ha/lab/
func TestBenchConnMirrorCost(t *testing.T) {
	if os.Getenv("FULCRUM_HA_BENCH") == "" {
		t.Skip("connection-mirroring cost benchmark: set FULCRUM_HA_BENCH=1 (about a minute)")
	}
	l, srvNS := newConnLab(t, "mco", ciSettings)
	startSeqServer(t, srvNS)
	l.startMirrored(t)
	const rounds = 3
	var tm, tp []float64
	var lm, lp []time.Duration
	var mirrored, relayed float64
	for r := range rounds {
		before, err := l.mirrorStatus("a")
		must(t, err)
		got := throughput(t, l, mirrorPort, uint64(10*r+1), 5*time.Second)
		after, err := l.mirrorStatus("a")
		must(t, err)
		mirrored += float64(after.Connections.Bytes - before.Connections.Bytes)
		relayed += got * 5
		tm = append(tm, got)
		tp = append(tp, throughput(t, l, plainPort, uint64(10*r+2), 5*time.Second))
		lm = append(lm, latency(t, l, mirrorPort, uint64(10*r+3), 500))
		lp = append(lp, latency(t, l, plainPort, uint64(10*r+4), 500))
	}
	med := func(x []float64) float64 { y := slices.Clone(x); slices.Sort(y); return y[len(y)/2] }
	medD := func(x []time.Duration) time.Duration { y := slices.Clone(x); slices.Sort(y); return y[len(y)/2] }
	gbit := func(x float64) string { return fmt.Sprintf("%.2f Gbit/s", x*8/1e9) }
	var report strings.Builder
	fmt.Fprintf(&report, "connection mirroring cost, %d rounds alternating, one stream, 2-core machine shared by both devices, client and server\n", rounds)
	fmt.Fprintf(&report, "| | mirrored | unmirrored | ratio |\n|---|---|---|---|\n")
	fmt.Fprintf(&report, "| bulk throughput, client to server (median) | %s | %s | %.2f |\n", gbit(med(tm)), gbit(med(tp)), med(tm)/med(tp))
	fmt.Fprintf(&report, "| 64-byte request round trip (median of medians) | %s | %s | %.2f |\n", medD(lm), medD(lp), float64(medD(lm))/float64(medD(lp)))
	fmt.Fprintf(&report, "rounds: mirrored %v, unmirrored %v; round trips mirrored %v, unmirrored %v\n", roundGbit(tm), roundGbit(tp), lm, lp)
	fmt.Fprintf(&report, "mirror channel: %.3f bytes mirrored per byte relayed (%.2f Gbit/s of channel payload per Gbit/s relayed, before TLS framing)\n", mirrored/relayed, mirrored/relayed)
	t.Log("\n" + report.String())
	writeOut(t, report.String())
}

func roundGbit(xs []float64) []string {
	var out []string
	for _, x := range xs {
		out = append(out, fmt.Sprintf("%.2f", x*8/1e9))
	}
	return out
}

// TestConnMirrorPlannedLoad is the planned failover with the benchmark's
// 200 connections (opt-in with the benchmark).
func TestConnMirrorPlannedLoad(t *testing.T) {
	if os.Getenv("FULCRUM_HA_BENCH") == "" {
		t.Skip("set FULCRUM_HA_BENCH=1")
	}
	m, _ := connScenario(t, "mpl", "planned", ciSettings, [3]int{80, 80, 40}, [3]int{0, 0, 0})
	if m.total("survived") != 200 {
		t.Errorf("%d of 200 survived", m.total("survived"))
	}
}

// startUDPEcho answers every datagram with the address and port it came
// from: the translated source a flow uses.
func startUDPEcho(t *testing.T, ns *testnet.NS) {
	pc, err := ns.ListenPacket("udp", fmt.Sprintf("%s:%d", serverAddr, udpServerPort))
	must(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()), from)
		}
	}()
}

// udpSource sends a datagram on c and returns the source the server saw
// ("" after a few tries without an answer).
func udpSource(c net.Conn) string {
	buf := make([]byte, 100)
	for range 10 {
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	return ""
}

// TestConnMirrorUDP: UDP flows of a mirrored virtual keep their member and
// their translated source port across a failover (planned and kill -9);
// the unmirrored virtual's flows start afresh.
func TestConnMirrorUDP(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"planned", "kill"} {
		t.Run(kind, func(t *testing.T) {
			l, srvNS := newConnLab(t, "cu"+kind[:1], ciSettings)
			startUDPEcho(t, srvNS)
			// The connection-mirroring channel must stream before the
			// flows start: a flow made while it is down stays unmirrored
			// (the persistence channel being connected is not enough).
			l.startMirrored(t)
			const n = 20
			type flow struct {
				c      net.Conn
				before string
			}
			var mirrored, plain []flow
			for i := range 2 * n {
				port := udpMirrorPort
				if i >= n {
					port = udpPlainPort
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				c, err := l.client.Dial(ctx, &net.Dialer{}, "udp", netip.AddrPortFrom(vip, uint16(port)).String())
				cancel()
				must(t, err)
				defer c.Close()
				f := flow{c: c, before: udpSource(c)}
				if f.before == "" {
					t.Fatalf("flow %d: no answer before the failover", i)
				}
				if i < n {
					mirrored = append(mirrored, f)
				} else {
					plain = append(plain, f)
				}
			}
			// The flows' entries reach the standby: wait until it holds
			// them (a loaded machine may take longer than the 200 ms
			// that suffice on a quiet one), then a little more.
			eventually(5*time.Second, func() bool {
				st, err := l.mirrorStatus("b")
				return err == nil && st.Connections.Shadows >= n
			})
			time.Sleep(200 * time.Millisecond)
			failOver(t, l, kind, "a", "b")
			kept, plainKept := 0, 0
			for _, f := range mirrored {
				if after := udpSource(f.c); after == f.before {
					kept++
				} else {
					t.Logf("mirrored flow: %s before, %q after", f.before, after)
				}
			}
			for _, f := range plain {
				if udpSource(f.c) == f.before {
					plainKept++
				}
			}
			t.Logf("%s: %d of %d mirrored udp flows kept their member and source port; unmirrored: %d of %d", kind, kept, n, plainKept, n)
			if kept != n {
				t.Errorf("%d of %d mirrored udp flows kept their source port after %s", kept, n, kind)
			}
		})
	}
}

// TestConnMirrorHalfClosed: a connection one side has half-closed when the
// active is killed cannot move (TCP repair restores established sockets
// only); the device that takes over resets both sides, so neither the
// client nor the server is left with a half-open connection.
func TestConnMirrorHalfClosed(t *testing.T) {
	t.Parallel()
	l, srvNS := newConnLab(t, "chc", ciSettings)
	startSeqServer(t, srvNS)
	l.startMirrored(t)
	if dir := os.Getenv("FULCRUM_LAB_PCAP"); dir != "" {
		cap := srvNS.Command(context.Background(), "tcpdump", "-i", "eth0", "-s", "128", "-w", filepath.Join(dir, "hc.pcap"), "tcp port 7000")
		must(t, cap.Start())
		t.Cleanup(func() { cap.Process.Signal(syscall.SIGINT); cap.Wait() })
		time.Sleep(200 * time.Millisecond)
	}
	c := rawSeq(t, l, mirrorPort, classHalf, 1)
	defer c.Close()
	time.Sleep(200 * time.Millisecond)
	must(t, c.CloseWrite()) // the server's side stays open: half-closed
	time.Sleep(300 * time.Millisecond)
	port := c.LocalAddr().(*net.TCPAddr).Port
	failOver(t, l, "kill", "a", "b")
	// The client learns the connection is over (a reset, or the end of
	// the stream), and nothing is left on either side (the server keeps its
	// side open for 10 s unless it is reset).
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("client of the half-closed connection after the takeover: read %v, want a reset or EOF", err)
	}
	leftover := func(ns *testnet.NS, filter string) string {
		out, _ := ns.Run(context.Background(), "ss", "-tnH", "state", "all", filter)
		return strings.TrimSpace(string(out))
	}
	var srvLeft, cliLeft string
	if !eventually(5*time.Second, func() bool {
		srvLeft = leftover(srvNS, fmt.Sprintf("( sport = :%d and dst %s )", serverPort, snatAddr))
		cliLeft = leftover(l.client, fmt.Sprintf("( sport = :%d )", port))
		return srvLeft == "" && cliLeft == ""
	}) {
		t.Errorf("half-open leftovers after the takeover:\nserver: %s\nclient: %s", srvLeft, cliLeft)
	}
	if b, err := l.devs["b"].api.Get("http://127.0.0.1:9090/api/v1/virtuals"); err == nil {
		body, _ := io.ReadAll(b.Body)
		b.Body.Close()
		if !strings.Contains(string(body), `"reset_half_closed":1`) {
			t.Errorf("b's virtuals do not count the half-closed connection it reset: %s", body)
		}
	}
}
