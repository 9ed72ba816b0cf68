package isession

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/isession/codec"
	"github.com/fulcrum-adc/fulcrum/isession/dedup"
	"github.com/fulcrum-adc/fulcrum/isession/mux"
)

// Settings are one end's iSession settings: what it enables (its profile)
// and who it is (its TLS identity).
type Settings struct {
	// TLS holds this end's certificate and the CA its peers' certificates
	// must chain to. ALPN, TLS 1.3 and (on the accepting end) a required
	// client certificate are imposed on a copy.
	TLS *tls.Config
	// Device names this end in the hello, for the peer's logs.
	Device string
	// Codecs are the compression codecs enabled, in order of preference;
	// empty disables compression. Adaptive picks among them per block.
	Codecs       []codec.Codec
	Adaptive     bool
	DeflateLevel int // 1..9, default 1 (F5's default)
	ZstdLevel    int // 1..4, default 1
	// Dedup enables de-duplication with DedupParams chunking and a cache
	// of DedupCache bytes per direction of each tunnel connection.
	Dedup       bool
	DedupParams dedup.Params
	DedupCache  int64
	// PortTransparency keeps the inner connection's destination port.
	PortTransparency bool
	// Per-stream windows and concurrent streams (mux.Options).
	InitialWindow, MaxWindow, MaxStreams int
	// Keepalive of the tunnel connection (mux.Options).
	KeepAliveInterval, KeepAliveTimeout time.Duration
	// HandshakeTimeout bounds TLS and hello (default 10 s).
	HandshakeTimeout time.Duration
}

func (s *Settings) hello() *Hello {
	h := &Hello{
		Device:           s.Device,
		Adaptive:         s.Adaptive,
		DeflateLevel:     s.DeflateLevel,
		PortTransparency: s.PortTransparency,
		InitialWindow:    s.InitialWindow,
		MaxWindow:        s.MaxWindow,
		MaxStreams:       s.MaxStreams,
	}
	if h.InitialWindow == 0 {
		h.InitialWindow = 256 << 10
	}
	if h.MaxWindow == 0 {
		h.MaxWindow = 64 << 20
	}
	h.MaxWindow = max(h.MaxWindow, h.InitialWindow)
	if h.MaxStreams == 0 {
		h.MaxStreams = 1024
	}
	for _, c := range s.Codecs {
		if c != codec.None {
			h.Codecs = append(h.Codecs, c.String())
		}
	}
	if s.Dedup {
		h.Dedup = s.params().Scheme()
		h.DedupCache = s.DedupCache
		h.DedupKey = make([]byte, len(dedup.Key{}))
		rand.Read(h.DedupKey) // a fresh key for each tunnel connection
	}
	return h
}

func (s *Settings) params() dedup.Params {
	if s.DedupParams == (dedup.Params{}) {
		return dedup.DefaultParams()
	}
	return s.DedupParams
}

// Tunnel is one established tunnel connection: TLS, the negotiated
// outcome, and the stream multiplexer over them.
type Tunnel struct {
	*mux.Session
	// Outcome is what both ends agreed to use.
	Outcome Outcome
	// Peer is the peer's device name (its certificate's common name).
	Peer string
	// Created is when the tunnel came up.
	Created time.Time

	raw  net.Conn
	comp *codec.Compressor
	dcmp *codec.Decompressor
	dde  *dedup.Encoder
	ddd  *dedup.Decoder
}

// ErrUntrusted wraps a handshake refused over the peer's certificate.
var ErrUntrusted = errors.New("isession: peer not trusted")

// Client sets a tunnel up over conn, a connection this end dialed.
func Client(ctx context.Context, conn net.Conn, s *Settings) (*Tunnel, error) {
	return handshake(ctx, conn, s, true)
}

// Server sets a tunnel up over conn, a connection this end accepted.
func Server(ctx context.Context, conn net.Conn, s *Settings) (*Tunnel, error) {
	return handshake(ctx, conn, s, false)
}

func handshake(ctx context.Context, conn net.Conn, s *Settings, client bool) (*Tunnel, error) {
	if s.TLS == nil {
		return nil, errors.New("isession: no TLS configuration")
	}
	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := s.TLS.Clone()
	cfg.MinVersion = tls.VersionTLS13
	cfg.NextProtos = []string{ALPN}
	var tc *tls.Conn
	if client {
		tc = tls.Client(conn, cfg)
	} else {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		tc = tls.Server(conn, cfg)
	}
	fail := func(err error) (*Tunnel, error) {
		conn.Close()
		return nil, err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		var cv *tls.CertificateVerificationError
		var alert tls.AlertError
		if errors.As(err, &cv) || errors.As(err, &alert) && (alert == 42 || alert == 43 || alert == 45 || alert == 46 || alert == 48 || alert == 116) {
			return fail(fmt.Errorf("%w: %v", ErrUntrusted, err))
		}
		return fail(fmt.Errorf("isession: TLS handshake: %w", err))
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		return fail(fmt.Errorf("isession: peer does not speak %s (ALPN %q)", ALPN, cs.NegotiatedProtocol))
	}
	peer := ""
	if len(cs.PeerCertificates) > 0 {
		peer = cs.PeerCertificates[0].Subject.CommonName
	}
	if d, ok := ctx.Deadline(); ok {
		tc.SetDeadline(d)
	}
	mine := s.hello()
	werr := make(chan error, 1)
	go func() { werr <- writeHello(tc, mine) }()
	theirs, err := readHello(tc)
	if err == nil {
		err = <-werr
	}
	if err != nil {
		return fail(err)
	}
	tc.SetDeadline(time.Time{})
	ch, sh := mine, theirs
	if !client {
		ch, sh = theirs, mine
	}
	out, err := Negotiate(ch, sh)
	if err != nil {
		return fail(err)
	}
	t := &Tunnel{Outcome: out, Peer: peer, Created: time.Now(), raw: conn}
	opt := mux.Options{
		InitialWindow:     mine.InitialWindow,
		PeerInitialWindow: theirs.InitialWindow,
		MaxWindow:         mine.MaxWindow,
		SessionWindow:     4 * mine.MaxWindow,
		MaxStreams:        mine.MaxStreams,
		KeepAliveInterval: s.KeepAliveInterval,
		KeepAliveTimeout:  s.KeepAliveTimeout,
	}
	if err := t.pipeline(&opt, s, mine, theirs); err != nil {
		return fail(err)
	}
	if client {
		t.Session = mux.Client(tc, opt)
	} else {
		t.Session = mux.Server(tc, opt)
	}
	go t.watch()
	return t, nil
}

// pipeline sets up the payload encoder and decoder the outcome calls for.
func (t *Tunnel) pipeline(opt *mux.Options, s *Settings, mine, theirs *Hello) error {
	o := t.Outcome
	if len(o.Codecs) == 0 && o.Dedup == "" {
		return nil
	}
	enc, dec := &encoder{}, &decoder{}
	if len(o.Codecs) > 0 {
		var err error
		t.comp, err = codec.NewCompressor(codec.Options{Codecs: o.Codecs, Adaptive: o.Adaptive,
			DeflateLevel: s.DeflateLevel, ZstdLevel: s.ZstdLevel})
		if err != nil {
			return err
		}
		t.dcmp = codec.NewDecompressor(o.Codecs)
		enc.comp, dec.comp = t.comp, t.dcmp
	}
	if o.Dedup != "" {
		var err error
		// Each encoder keys chunks with the key its end drew; the peer's
		// decoder learnt it from the hello.
		if t.dde, err = dedup.NewEncoder(s.params(), o.DedupCache, dedup.Key(mine.DedupKey)); err != nil {
			return err
		}
		t.ddd = dedup.NewDecoder(o.DedupCache, dedup.Key(theirs.DedupKey))
		enc.dd, dec.dd = t.dde, t.ddd
	}
	opt.Encoder, opt.Decoder = enc, dec
	return nil
}

// watch feeds adaptive compression the connection's delivery rate
// (TCP_INFO) once a second, and releases the codecs once the session's
// goroutines are gone.
func (t *Tunnel) watch() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.Done():
			t.Session.Close() // waits for the reader and writer
			if t.comp != nil {
				t.comp.Close()
				t.dcmp.Close()
			}
			return
		case <-tick.C:
		}
		if t.comp == nil {
			continue
		}
		if info := tcpInfo(t.raw); info != nil && info.Delivery_rate > 0 {
			t.comp.SetLinkRate(float64(info.Delivery_rate))
		}
	}
}

func tcpInfo(c net.Conn) *unix.TCPInfo {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var info *unix.TCPInfo
	rc.Control(func(fd uintptr) { info, _ = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	return info
}

// Stats is what `fulcrum show isessions` prints for one tunnel connection.
type Stats struct {
	Peer     string
	Remote   string
	Outcome  string
	Age      time.Duration
	Mux      mux.Stats
	Codecs   map[string]codec.CodecStats // blocks sent per codec
	Skipped  uint64                      // blocks sent raw as incompressible
	DedupOut dedup.Stats                 // this end's encoder
	DedupIn  dedup.Stats                 // this end's decoder
	// DeliveryRate and TCPRTT are the tunnel connection's, from TCP_INFO.
	DeliveryRate uint64 // bytes per second
	TCPRTT       time.Duration
}

// Stats returns a snapshot.
func (t *Tunnel) Stats() Stats {
	st := Stats{Peer: t.Peer, Remote: t.raw.RemoteAddr().String(), Outcome: t.Outcome.String(),
		Age: time.Since(t.Created), Mux: t.Session.Stats()}
	if t.comp != nil {
		cs := t.comp.Stats()
		st.Codecs = map[string]codec.CodecStats{}
		for c := codec.None; c <= codec.S2; c++ {
			if s := cs.Codec(c); s.Blocks > 0 {
				st.Codecs[c.String()] = s
			}
		}
		st.Skipped = cs.Skipped()
	}
	if t.dde != nil {
		st.DedupOut, st.DedupIn = t.dde.Stats(), t.ddd.Stats()
	}
	if info := tcpInfo(t.raw); info != nil {
		st.DeliveryRate = info.Delivery_rate
		st.TCPRTT = time.Duration(info.Rtt) * time.Microsecond
	}
	return st
}
