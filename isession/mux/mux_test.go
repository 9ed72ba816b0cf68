package mux

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

func sessions(t testing.TB, co, so Options) (*Session, *Session) {
	a, b := tcpPair(t)
	c, s := Client(a, co), Server(b, so)
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, (n+7)&^7)
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// writeRandom writes data in random-sized pieces and half-closes.
func writeRandom(st *Stream, data []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 2))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(64<<10))
		if _, err := st.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return st.CloseWrite()
}

func TestOpenDataInFirstFrame(t *testing.T) {
	a, b := net.Pipe()
	c := Client(a, Options{KeepAliveInterval: -1})
	defer c.Close()
	defer b.Close()
	if _, err := c.OpenData(context.Background(), []byte("dst"), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var hb [headerLen]byte
	for {
		if _, err := io.ReadFull(b, hb[:]); err != nil {
			t.Fatal(err)
		}
		h := parseHeader(hb[:])
		p := make([]byte, h.length)
		if _, err := io.ReadFull(b, p); err != nil {
			t.Fatal(err)
		}
		if h.typ == typePing {
			continue
		}
		if h.typ != typeOpen || h.stream != 1 {
			t.Fatalf("first stream frame: type %d stream %d", h.typ, h.stream)
		}
		if want := "\x00\x03dsthello"; string(p) != want {
			t.Fatalf("OPEN payload %q, want %q", p, want)
		}
		return
	}
}

func TestOpenAcceptBothWays(t *testing.T) {
	c, s := sessions(t, Options{}, Options{})
	for _, pair := range [][2]*Session{{c, s}, {s, c}} {
		o, err := pair[0].Open(context.Background(), []byte("h"))
		if err != nil {
			t.Fatal(err)
		}
		// Server speaks first: nothing written by the opener.
		a, err := pair[1].Accept()
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Header()) != "h" || a.ID() != o.ID() {
			t.Fatalf("header %q id %d/%d", a.Header(), a.ID(), o.ID())
		}
		if _, err := a.Write([]byte("banner")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(o, buf); err != nil || string(buf) != "banner" {
			t.Fatalf("%q %v", buf, err)
		}
	}
}

func TestManyStreamsBothWays(t *testing.T) {
	c, s := sessions(t, Options{}, Options{})
	const streams = 200
	size := func(i int) int { return 32<<10 + (i*7919)%(224<<10) }
	var wg sync.WaitGroup
	errs := make(chan error, 4*streams)
	// Server: echo back sha256 of what arrived, then its own data.
	go func() {
		for {
			st, err := s.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var i int
				fmt.Sscanf(string(st.Header()), "%d", &i)
				done := make(chan error, 1)
				go func() { done <- writeRandom(st, randBytes(uint64(1000+i), size(i)), uint64(i)) }()
				h := sha256.New()
				if _, err := io.Copy(h, st); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(h.Sum(nil), sum(randBytes(uint64(i), size(i)))) {
					errs <- fmt.Errorf("stream %d: server got wrong bytes", i)
				}
				if err := <-done; err != nil {
					errs <- err
				}
				st.Close()
			}()
		}
	}()
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.Open(context.Background(), fmt.Appendf(nil, "%d", i))
			if err != nil {
				errs <- err
				return
			}
			done := make(chan error, 1)
			go func() { done <- writeRandom(st, randBytes(uint64(i), size(i)), uint64(i+7)) }()
			h := sha256.New()
			if _, err := io.Copy(h, st); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
				return
			}
			if !bytes.Equal(h.Sum(nil), sum(randBytes(uint64(1000+i), size(i)))) {
				errs <- fmt.Errorf("stream %d: client got wrong bytes", i)
			}
			if err := <-done; err != nil {
				errs <- err
			}
			st.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, func() bool { return c.NumStreams() == 0 && s.NumStreams() == 0 }, "streams left in tables")
}

func sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(what)
}

func TestHalfCloseAndReset(t *testing.T) {
	c, s := sessions(t, Options{}, Options{})
	o, _ := c.Open(context.Background(), nil)
	o.Write([]byte("req"))
	o.CloseWrite()
	a, _ := s.Accept()
	got, err := io.ReadAll(a)
	if err != nil || string(got) != "req" {
		t.Fatalf("%q %v", got, err)
	}
	a.Write([]byte("resp"))
	a.Close() // peer finished, all read: clean FIN
	got, err = io.ReadAll(o)
	if err != nil || string(got) != "resp" {
		t.Fatalf("%q %v", got, err)
	}
	o.Close()

	// Close with unread data resets the peer.
	o2, _ := c.Open(context.Background(), nil)
	o2.Write([]byte("unread"))
	a2, _ := s.Accept()
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return a2.recv.len() > 0 }, "data not received")
	a2.Close()
	_, err = io.ReadAll(o2)
	var re *ResetError
	if !errors.As(err, &re) || re.Code != CodeClosed || !re.Remote {
		t.Fatalf("want remote reset CodeClosed, got %v", err)
	}
	if _, err := o2.Write([]byte("x")); !errors.As(err, &re) {
		t.Fatalf("write after reset: %v", err)
	}

	// Reset.
	o3, _ := c.Open(context.Background(), nil)
	a3, _ := s.Accept()
	o3.Reset(CodeCancel)
	if _, err := a3.Read(make([]byte, 1)); !errors.As(err, &re) || re.Code != CodeCancel {
		t.Fatalf("got %v", err)
	}
}

func TestBackPressureOnlyOwnStream(t *testing.T) {
	c, s := sessions(t, Options{InitialWindow: 64 << 10, MaxWindow: 64 << 10}, Options{InitialWindow: 64 << 10, MaxWindow: 64 << 10})
	slow, _ := c.Open(context.Background(), []byte("slow"))
	fast, _ := c.Open(context.Background(), []byte("fast"))
	var slowPeer, fastPeer *Stream
	for range 2 {
		a, _ := s.Accept()
		if string(a.Header()) == "slow" {
			slowPeer = a
		} else {
			fastPeer = a
		}
	}
	_ = slowPeer // never read
	// The slow stream can queue its window plus its send queue, no more.
	slow.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := slow.Write(make([]byte, 8<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("slow write: %d %v", n, err)
	}
	if n > 64<<10+512<<10 {
		t.Fatalf("slow stream queued %d bytes past its window", n)
	}
	// Meanwhile the fast one moves 64 MiB.
	const total = 64 << 20
	go func() {
		buf := make([]byte, 1<<20)
		for range total / len(buf) {
			if _, err := fast.Write(buf); err != nil {
				return
			}
		}
		fast.CloseWrite()
	}()
	got, err := io.Copy(io.Discard, fastPeer)
	if err != nil || got != total {
		t.Fatalf("fast stream: %d bytes, %v", got, err)
	}
	s.mu.Lock()
	buffered := slowPeer.recv.len()
	s.mu.Unlock()
	if buffered > 64<<10 {
		t.Fatalf("slow stream buffered %d bytes beyond its window", buffered)
	}
}

// delayConn delays each write's delivery, like a long path.
type delayConn struct {
	net.Conn
	delay time.Duration
	ch    chan []byte
	once  sync.Once
}

func newDelayConn(c net.Conn, d time.Duration) *delayConn {
	dc := &delayConn{Conn: c, delay: d, ch: make(chan []byte, 4096)}
	go func() {
		for b := range dc.ch {
			due := time.UnixMicro(int64(binary.BigEndian.Uint64(b)))
			time.Sleep(time.Until(due))
			if _, err := c.Write(b[8:]); err != nil {
				return
			}
		}
	}()
	return dc
}

func (d *delayConn) Write(p []byte) (int, error) {
	b := make([]byte, 8+len(p))
	binary.BigEndian.PutUint64(b, uint64(time.Now().Add(d.delay).UnixMicro()))
	copy(b[8:], p)
	d.ch <- b
	return len(p), nil
}

func (d *delayConn) Close() error {
	d.once.Do(func() { close(d.ch) })
	return d.Conn.Close()
}

func TestWindowAutoTune(t *testing.T) {
	a, b := tcpPair(t)
	opt := Options{InitialWindow: 64 << 10, MaxWindow: 4 << 20}
	c, s := Client(newDelayConn(a, 25*time.Millisecond), opt), Server(newDelayConn(b, 25*time.Millisecond), opt)
	defer c.Close()
	defer s.Close()
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := c.Open(context.Background(), nil)
	go func() {
		buf := make([]byte, 256<<10)
		for range 64 {
			if _, err := st.Write(buf); err != nil {
				return
			}
		}
		st.CloseWrite()
	}()
	a2, _ := s.Accept()
	if n, err := io.Copy(io.Discard, a2); err != nil || n != 16<<20 {
		t.Fatalf("%d %v", n, err)
	}
	if w := a2.Window(); w <= 64<<10 {
		t.Fatalf("window stayed at %d", w)
	}
	if s.Stats().WindowGrowths == 0 {
		t.Fatal("no growth counted")
	}
	// A later stream on the same session starts at the tuned window, and
	// its sender is told at once (a WINDOW right behind the OPEN).
	st2, _ := c.OpenData(context.Background(), nil, []byte("x"))
	b2, _ := s.Accept()
	if w := b2.Window(); w < a2.Window() {
		t.Fatalf("new stream's window %d, tuned %d", w, a2.Window())
	}
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return st2.sendWindow >= a2.Window()-1 }, "credit not granted to the new stream")
}

func TestDeadlinesAndClose(t *testing.T) {
	c, s := sessions(t, Options{}, Options{})
	o, _ := c.Open(context.Background(), nil)
	o.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := o.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	o.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := o.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read not woken by the peer closing")
	}
	<-c.Done()
	if _, err := c.Open(context.Background(), nil); err == nil {
		t.Fatal("open on closed session")
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 5 {
		a, b := tcpPair(t)
		c, s := Client(a, Options{}), Server(b, Options{})
		o, _ := c.Open(context.Background(), nil)
		go o.Write(make([]byte, 4<<20))
		a2, _ := s.Accept()
		io.ReadFull(a2, make([]byte, 1000))
		a.Close() // the connection dies mid-transfer
		if _, err := io.ReadAll(a2); err == nil {
			t.Fatal("stream survived a dead connection")
		}
		<-c.Done()
		<-s.Done()
		c.Close()
		s.Close()
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+2 }, "goroutines leaked")
}

func TestKeepAliveTimeout(t *testing.T) {
	a, b := net.Pipe()
	c := Client(a, Options{KeepAliveInterval: 20 * time.Millisecond, KeepAliveTimeout: 100 * time.Millisecond})
	defer c.Close()
	go io.Copy(io.Discard, b) // a peer that reads and never answers
	select {
	case <-c.Done():
		if err := c.Err(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("keepalive")) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer not detected")
	}
	b.Close()
}

func TestRefusedAndGoAway(t *testing.T) {
	c, s := sessions(t, Options{}, Options{MaxStreams: 2, AcceptBacklog: 8})
	var opened []*Stream
	for range 3 {
		o, _ := c.Open(context.Background(), nil)
		opened = append(opened, o)
	}
	var re *ResetError
	if _, err := opened[2].Read(make([]byte, 1)); !errors.As(err, &re) || re.Code != CodeRefused {
		t.Fatalf("third stream: %v", err)
	}
	if s.Stats().StreamsRefused != 1 {
		t.Fatalf("refused %d", s.Stats().StreamsRefused)
	}
	if !c.CanOpen() {
		t.Fatal("CanOpen false before GOAWAY")
	}
	s.GoAway(CodeNormal, "draining")
	waitFor(t, func() bool { _, err := c.Open(context.Background(), nil); return errors.Is(err, ErrGoAway) }, "open after GOAWAY")
	if c.CanOpen() {
		t.Fatal("CanOpen true after GOAWAY")
	}
	// IDs exhausted: the session says so before Open fails.
	c.mu.Lock()
	saved := c.nextID
	c.nextID, c.goAwayIn = 1<<31+1, false
	c.mu.Unlock()
	if c.CanOpen() {
		t.Fatal("CanOpen true with no stream IDs left")
	}
	if _, err := c.Open(context.Background(), nil); err == nil {
		t.Fatal("Open succeeded with no stream IDs left")
	}
	c.mu.Lock()
	c.nextID, c.goAwayIn = saved, true
	c.mu.Unlock()
	// Streams already open go on.
	a, _ := s.Accept()
	opened[0].Write([]byte("x"))
	if _, err := io.ReadFull(a, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestProtocolErrors(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unknown type":      appendHeader(nil, 9, 0, 0, 0),
		"huge frame":        appendHeader(nil, typeData, 0, 1, 1<<24-1),
		"data on stream 0":  appendHeader(nil, typeData, 0, 0, 0),
		"open wrong parity": append(appendHeader(nil, typeOpen, 0, 2, 2), 0, 0),
		"data never opened": append(appendHeader(nil, typeData, 0, 1, 1), 'x'),
		"bad window":        appendHeader(nil, typeWindow, 0, 1, 0),
		"encoded, no codec": append(append(appendHeader(nil, typeOpen, flagENC, 1, 3), 0, 0), 'x'),
	} {
		a, b := net.Pipe()
		s := Server(a, Options{KeepAliveInterval: -1})
		go io.Copy(io.Discard, b)
		b.Write(frame)
		select {
		case <-s.Done():
			if !errors.Is(s.Err(), ErrProtocol) {
				t.Errorf("%s: %v", name, s.Err())
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: session not closed", name)
		}
		b.Close()
		s.Close()
	}
}

// toyDedup replaces repeated 1 KiB blocks by references into a table both
// ends fill in the same order, like the real lock-step de-duplication.
type toyDedup struct {
	epoch  uint8
	blocks [][]byte
	index  map[string]int
	reset  bool
}

func newToy() *toyDedup { return &toyDedup{index: map[string]int{}} }

func (d *toyDedup) insert(b []byte) {
	d.index[string(b)] = len(d.blocks)
	d.blocks = append(d.blocks, append([]byte(nil), b...))
}

func (d *toyDedup) Encode(dst, data []byte, final bool) ([]byte, int) {
	n := len(data)
	if !final {
		n -= n % 1024
	}
	dst = append(dst, d.epoch)
	for off := 0; off < n; off += 1024 {
		b := data[off:min(n, off+1024)]
		if i, ok := d.index[string(b)]; ok && len(b) == 1024 {
			dst = binary.BigEndian.AppendUint32(append(dst, 1), uint32(i))
			continue
		}
		dst = binary.BigEndian.AppendUint16(append(dst, 0), uint16(len(b)))
		dst = append(dst, b...)
		if len(b) == 1024 {
			d.insert(b)
		}
	}
	return dst, n
}

func (d *toyDedup) Resync(e uint8) {
	d.epoch, d.blocks, d.index = e, nil, map[string]int{}
}

func (d *toyDedup) Decode(dst, p []byte, maxOut int) ([]byte, error) {
	d.reset = false
	if len(p) < 1 {
		return dst, errors.New("empty")
	}
	stale := p[0] != d.epoch
	start := len(dst)
	var ins [][]byte
	for p = p[1:]; len(p) > 0; {
		switch {
		case p[0] == 0 && len(p) >= 3:
			n := int(binary.BigEndian.Uint16(p[1:]))
			if len(p) < 3+n {
				return dst[:start], errors.New("short")
			}
			dst = append(dst, p[3:3+n]...)
			if n == 1024 && !stale {
				ins = append(ins, p[3:3+n])
			}
			p = p[3+n:]
		case p[0] == 1 && len(p) >= 5:
			i := int(binary.BigEndian.Uint32(p[1:]))
			if stale {
				return dst[:start], errors.New("stale reference")
			}
			if i >= len(d.blocks)+len(ins) {
				d.Resync(d.epoch + 1)
				d.reset = true
				return dst[:start], errors.New("miss")
			}
			if i < len(d.blocks) {
				dst = append(dst, d.blocks[i]...)
			} else {
				dst = append(dst, ins[i-len(d.blocks)]...)
			}
			p = p[5:]
		default:
			return dst[:start], errors.New("corrupt")
		}
		if len(dst)-start > maxOut {
			return dst[:start], errors.New("too large")
		}
	}
	for _, b := range ins {
		d.insert(b)
	}
	return dst, nil
}

func (d *toyDedup) ResyncState() (uint8, bool) { return d.epoch, d.reset }

type toyDecoder struct{ *toyDedup }

func (t toyDecoder) Resync() (uint8, bool) { return t.ResyncState() }

func TestDedupOrderAndResync(t *testing.T) {
	ce, sd := newToy(), newToy()
	c, s := sessions(t, Options{Encoder: ce}, Options{Decoder: toyDecoder{sd}})
	base := randBytes(42, 64<<10)
	send := func(i int) error {
		st, err := c.Open(context.Background(), fmt.Appendf(nil, "%d", i))
		if err != nil {
			return err
		}
		return writeRandom(st, base, uint64(i))
	}
	recv := func() ([]byte, error) {
		a, err := s.Accept()
		if err != nil {
			return nil, err
		}
		defer a.Close()
		return io.ReadAll(a)
	}
	// Interleaved streams sharing blocks.
	errs := make(chan error, 8)
	for i := range 8 {
		go func() { errs <- send(i) }()
	}
	for range 8 {
		got, err := recv()
		if err != nil || !bytes.Equal(got, base) {
			t.Fatalf("stream got %d bytes, %v", len(got), err)
		}
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if raw, wire := c.Stats().RawOut, c.Stats().WireOut; wire > raw/2 {
		t.Fatalf("repeated blocks not referenced: %d raw, %d wire", raw, wire)
	}
	// The receiving end forgets (as after a restart of its state): the next
	// stream's references miss; it is reset, never wrong.
	s.mu.Lock()
	sd.blocks, sd.index = nil, map[string]int{}
	s.mu.Unlock()
	go send(100)
	got, err := recv()
	var re *ResetError
	if !errors.As(err, &re) || re.Code != CodeOptimization {
		t.Fatalf("after the decoder forgot: %d bytes, %v", len(got), err)
	}
	waitFor(t, func() bool { return c.Stats().ResyncsReceived == 1 }, "no RESYNC")
	// Later streams round-trip again.
	for i := range 3 {
		go send(200 + i)
		got, err := recv()
		if err != nil || !bytes.Equal(got, base) {
			t.Fatalf("after resync: %d bytes, %v", len(got), err)
		}
	}
}

func FuzzReadFrames(f *testing.F) {
	var seed []byte
	seed = append(append(appendHeader(seed, typeOpen, 0, 1, 5), 0, 1, 'h'), "hi"...)
	seed = appendWindow(seed, 1, 1000)
	seed = append(appendHeader(seed, typeData, flagFIN, 1, 3), "end"...)
	seed = appendPing(seed, 0, 7)
	seed = appendCoded(seed, typeRst, 1, CodeCancel, "x")
	seed = appendCoded(seed, typeGoAway, 0, 0, "bye")
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		s := Server(a, Options{KeepAliveInterval: -1, Decoder: toyDecoder{newToy()}, MaxStreams: 4, AcceptBacklog: 4})
		go io.Copy(io.Discard, b)
		go func() {
			for {
				st, err := s.Accept()
				if err != nil {
					return
				}
				go io.Copy(io.Discard, st)
			}
		}()
		b.Write(in)
		b.Close()
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end at EOF")
		}
		s.Close()
	})
}

func BenchmarkOneStream(b *testing.B) {
	c, s := sessions(b, Options{}, Options{})
	buf := make([]byte, 256<<10)
	go func() {
		if a, err := s.Accept(); err == nil {
			io.Copy(io.Discard, a)
		}
	}()
	st, _ := c.Open(context.Background(), nil)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		st.Write(buf)
	}
}

func BenchmarkOpenEchoClose(b *testing.B) {
	c, s := sessions(b, Options{}, Options{})
	go func() {
		for {
			a, err := s.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(a, a); a.Close() }()
		}
	}()
	msg := make([]byte, 1024)
	for range b.N {
		st, _ := c.OpenData(context.Background(), nil, msg)
		st.CloseWrite()
		io.ReadFull(st, msg)
		st.Close()
	}
}

// TestPingFloodWithoutReading: a peer that sends PINGs and never reads
// the acks cannot grow the control queue without end.
func TestPingFloodWithoutReading(t *testing.T) {
	a, b := net.Pipe() // unbuffered: the session's writer blocks at once
	s := Server(a, Options{KeepAliveInterval: -1, WriteTimeout: time.Minute})
	defer s.Close()
	go func() {
		var buf []byte
		for i := range 200000 {
			buf = appendPing(buf[:0], 0, uint64(i))
			if _, err := b.Write(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-s.Done():
		if !errors.Is(s.Err(), ErrProtocol) {
			t.Fatalf("closed with %v", s.Err())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("control backlog not bounded")
	}
	b.Close()
}

// SetMore(true) holds a tail the encoder cannot end a chunk with until the
// next Write completes the chunk or SetMore(false) releases it; nothing is
// lost either way. Written in pieces under the hint, a repeat of the same
// data crosses as references.
func TestSetMoreHoldsTail(t *testing.T) {
	ce, sd := newToy(), newToy()
	c, s := sessions(t, Options{Encoder: ce}, Options{Decoder: toyDecoder{sd}})
	st, err := c.Open(context.Background(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	first := randBytes(1, 1024)
	st.Write(first) // the OPEN carries it at once
	a, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	readN := func(n int, within time.Duration) ([]byte, error) {
		a.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, n)
		_, err := io.ReadFull(a, buf)
		return buf, err
	}
	if got, err := readN(1024, 5*time.Second); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("first block: %v", err)
	}
	tail := randBytes(2, 1024)
	st.SetMore(true)
	st.Write(tail[:500])
	if _, err := readN(1, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a held tail was sent: %v", err)
	}
	st.Write(tail[500:]) // completes the block: it goes
	if got, err := readN(1024, 5*time.Second); err != nil || !bytes.Equal(got, tail) {
		t.Fatalf("completed block: %v", err)
	}
	st.Write([]byte("end"))
	if _, err := readN(1, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a held tail was sent: %v", err)
	}
	st.SetMore(false)
	if got, err := readN(3, 5*time.Second); err != nil || string(got) != "end" {
		t.Fatalf("released tail: %q %v", got, err)
	}

	// 64 KiB twice, in 100-byte writes: the second time all references.
	base := randBytes(3, 64<<10)
	go io.Copy(io.Discard, a)
	a.SetReadDeadline(time.Time{})
	wire := func() uint64 { return c.Stats().WireOut }
	for pass := range 2 {
		before := wire()
		st.SetMore(true) // as a relay does while its source has more
		for off := 0; off < len(base); off += 100 {
			st.Write(base[off:min(off+100, len(base))])
		}
		st.SetMore(false)
		waitFor(t, func() bool { return c.Stats().RawOut >= uint64(1024+1024+3+(pass+1)*len(base)) }, "data sent")
		if sent := wire() - before; pass == 1 && sent > uint64(len(base))/20 {
			t.Fatalf("repeat sent %d wire bytes for %d: the tail flushes broke the blocks", sent, len(base))
		}
	}
}
