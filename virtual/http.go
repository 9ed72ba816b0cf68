package virtual

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/h1"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// httpConn is the state of one client connection on an http virtual.
type httpConn struct {
	l      *Listener
	p      *Plan
	e      *conntrack.Entry
	c      net.Conn
	raw    net.Conn      // the TCP connection under c (deadlines)
	pre    *prefetchConn // between raw and c: data read ahead while waiting
	mss    int           // the client connection's MSS (proxy MSS)
	br     *bufio.Reader
	bw     *bufio.Writer
	client netip.AddrPort
	xff    string // client address for X-Forwarded-For, made on first use
	tls    bool

	mu  sync.Mutex
	cur *serverConn // server connection in use, closed by the reaper too

	waitUntil time.Time                  // deadline of the current wait for a request
	parked    atomic.Pointer[parkedConn] // set while the parker holds the connection
	endOnce   sync.Once
}

func (h *httpConn) setCur(sc *serverConn) {
	h.mu.Lock()
	h.cur = sc
	h.mu.Unlock()
}

func (h *httpConn) closeAll() {
	h.c.Close()
	h.mu.Lock()
	if h.cur != nil {
		h.cur.close()
	}
	h.mu.Unlock()
}

// parkAfter is how long a goroutine waits for the next request on an idle
// keep-alive connection before handing the connection to the parker.
const parkAfter = time.Second

// startHTTP takes over an accepted client connection on an http virtual:
// it enters the connection table, and either starts a goroutine for it
// (TLS, or data already waiting) or parks it until its first request
// arrives. The connection ends through end, exactly once.
func (l *Listener) startHTTP(p *Plan, raw net.Conn) {
	clientAP := addrPortOf(raw.RemoteAddr())
	e := &conntrack.Entry{
		Virtual:     p.Name,
		Proto:       "http",
		Client:      clientAP,
		VirtualAddr: addrPortOf(raw.LocalAddr()),
		Created:     time.Now(),
		IdleTimeout: p.IdleTimeout,
	}
	h := &httpConn{l: l, p: p, e: e, raw: raw, client: clientAP, mss: p.clientMSS(raw)}
	var under net.Conn = raw
	if tc, ok := raw.(*net.TCPConn); ok && p.ClientTLS == nil {
		h.pre = &prefetchConn{TCPConn: tc, pool: &l.readahead}
		under = h.pre
	}
	h.c = &countConn{Conn: under, c: h}
	p.Conns.Add(e, h.kill)
	e.SetDetail(h.detail)
	if h.pre != nil && l.parker != nil {
		// Most clients send their request with or right after the
		// handshake: take it now if it is there, else park until it is.
		if ok, err := h.pre.readAhead(false); err == nil && !ok {
			if l.parker.park(h, p.HTTP.HeaderTimeout, true) == nil {
				return
			}
		}
	}
	go h.run(true)
}

func (h *httpConn) countIn(n int64)  { h.e.AddIn(n); h.p.Stats.BytesIn.Add(uint64(n)) }
func (h *httpConn) countOut(n int64) { h.e.AddOut(n); h.p.Stats.BytesOut.Add(uint64(n)) }

// detail is the connection table's detailed view of the connection.
func (h *httpConn) detail() any {
	d := HTTPDetail{Clientside: sideDetail(h.p.Clientside, h.raw)}
	h.mu.Lock()
	cur := h.cur
	h.mu.Unlock()
	if cur != nil {
		sd := sideDetail(h.p.Serverside, cur.conn)
		d.Serverside = &sd
	}
	return d
}

// end finishes the connection, once: out of the table, sockets closed,
// buffers back to the pools, counted out of the listener.
func (h *httpConn) end() {
	h.endOnce.Do(func() {
		h.p.Conns.Remove(h.e)
		h.closeAll()
		h.releaseBuffers()
		h.p.Stats.Active.Add(-1)
		h.l.conns.Done()
	})
}

// kill is the connection table's closer (idle timeout, shutdown). A parked
// connection has no goroutine to notice its sockets closing, so kill ends
// it; a busy one ends through its goroutine.
func (h *httpConn) kill() {
	abortOrClose(h.raw, h.p.Clientside)
	if pc := h.parked.Load(); pc != nil && h.l.parker.take(pc) {
		h.end()
		return
	}
	h.closeAll()
}

// idleExpired is a parked connection's timer: no request in time.
func (h *httpConn) idleExpired(first bool) {
	if first {
		h.p.reject("header_timeout") // connected, never sent a byte
	}
	h.end()
}

// resume continues a parked connection whose client sent data.
func (h *httpConn) resume(first bool) { h.run(first) }

// run serves requests until the connection ends or is parked.
func (h *httpConn) run(first bool) {
	defer func() {
		if r := recover(); r != nil {
			recoverConn(h.p, h.raw, r)
			h.end()
		}
	}()
	if !h.serve(first) {
		h.end()
	}
}

// serve runs the HTTP/1.1 full proxy loop: keep-alive on both sides, a
// balancing decision per request. It returns true when it parked the
// connection (it lives on without this goroutine), false when the
// connection is over.
func (h *httpConn) serve(first bool) (parked bool) {
	p, raw := h.p, h.raw
	if first && p.ClientTLS != nil {
		h.e.Proto = "https"
		tc := tls.Server(h.c, p.ClientTLS)
		raw.SetDeadline(time.Now().Add(p.HTTP.HeaderTimeout))
		if err := tc.HandshakeContext(h.l.ctx); err != nil {
			p.reject("tls_handshake")
			p.Log.Debug("client-ssl handshake failed", "client", h.client, "err", err)
			return false
		}
		raw.SetDeadline(time.Time{})
		h.c = tc
		h.tls = true
	}
	lim := h1.Limits{MaxHeaderBytes: p.HTTP.MaxHeaderBytes, MaxHeaders: p.HTTP.MaxHeaders}
	for ; ; first = false {
		if h.br == nil || h.br.Buffered() == 0 {
			// Waiting for a request: the first must come within the header
			// timeout of the connection opening (slowloris), the next ones
			// within the keep-alive timeout of the last response.
			if h.waitUntil.IsZero() {
				if first {
					h.waitUntil = h.e.Created.Add(p.HTTP.HeaderTimeout)
				} else {
					h.waitUntil = time.Now().Add(p.HTTP.KeepAliveTimeout)
				}
			}
			if h.pre != nil && h.pre.hasData() {
				h.takeBuffers() // read ahead at accept or by the parker's wake-up
			} else if h.pre != nil {
				// An idle connection holds no buffers; after a short wait it
				// holds no goroutine either (the parker has it).
				h.releaseBuffers()
				raw.SetReadDeadline(minTime(h.waitUntil, time.Now().Add(parkAfter)))
				if _, err := h.pre.readAhead(true); err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						return false
					}
					if left := time.Until(h.waitUntil); left > 0 && h.l.parker != nil {
						if h.l.parker.park(h, left, first) == nil {
							return true
						}
					}
					if first {
						p.reject("header_timeout") // connected, never sent a byte
					}
					return false
				}
				h.takeBuffers()
			} else {
				h.takeBuffers()
				raw.SetReadDeadline(h.waitUntil)
				if _, err := h.br.Peek(1); err != nil {
					if first {
						h.badRequest(err, true)
					}
					return false
				}
			}
		}
		h.waitUntil = time.Time{}
		// The head must then arrive within the header timeout. When it is
		// already buffered no read can block, and a deadline would only cost
		// a timer update per request.
		if first {
			raw.SetReadDeadline(h.e.Created.Add(p.HTTP.HeaderTimeout))
		} else if !h.headBuffered() {
			raw.SetReadDeadline(time.Now().Add(p.HTTP.HeaderTimeout))
		}
		req, err := h1.ReadRequest(h.br, lim)
		if err != nil {
			h.badRequest(err, first)
			return false
		}
		if !h.serveRequest(req) {
			return false
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// takeBuffers gives the connection its reader and writer (from the pools).
func (h *httpConn) takeBuffers() {
	if h.br != nil {
		return
	}
	if v := h.l.readers.Get(); v != nil {
		h.br = v.(*bufio.Reader)
		h.br.Reset(h.c)
	} else {
		h.br = bufio.NewReaderSize(h.c, 16<<10)
	}
	if v := h.l.writers.Get(); v != nil {
		h.bw = v.(*bufio.Writer)
		h.bw.Reset(h.c)
	} else {
		h.bw = bufio.NewWriterSize(h.c, 16<<10)
	}
}

// releaseBuffers returns the (empty) buffers to the pools.
func (h *httpConn) releaseBuffers() {
	if h.br == nil || h.br.Buffered() > 0 || h.bw.Buffered() > 0 {
		return
	}
	h.br.Reset(nil)
	h.bw.Reset(nil)
	h.l.readers.Put(h.br)
	h.l.writers.Put(h.bw)
	h.br, h.bw = nil, nil
}

// prefetchConn is an http client connection whose wait for a request
// also reads it: the first bytes are read inside the poller's callback, into
// a buffer taken from a pool only once the socket is readable, and Read hands
// them out before reading the socket again. Waiting then costs no buffer and
// no extra system call (a peek, then a read).
type prefetchConn struct {
	*net.TCPConn
	pool    *sync.Pool // of *[]byte, readAheadSize long
	buf     *[]byte
	pending []byte
	eof     bool
}

const readAheadSize = 16 << 10

func (p *prefetchConn) hasData() bool { return len(p.pending) > 0 || p.eof }

func (p *prefetchConn) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		if len(p.pending) == 0 {
			p.pool.Put(p.buf)
			p.buf, p.pending = nil, nil
		}
		return n, nil
	}
	if p.eof {
		return 0, io.EOF
	}
	return p.TCPConn.Read(b)
}

// readAhead reads what the client has sent. Blocking, it waits for data
// (until the read deadline); otherwise it returns ok=false at once when
// there is none. ok is also true at EOF (Read then reports it).
func (p *prefetchConn) readAhead(blocking bool) (ok bool, err error) {
	if p.hasData() {
		return true, nil
	}
	rc, err := p.TCPConn.SyscallConn()
	if err != nil {
		return false, err
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		bp, _ := p.pool.Get().(*[]byte)
		if bp == nil {
			b := make([]byte, readAheadSize)
			bp = &b
		}
		var n int
		for {
			n, rerr = unix.Read(int(fd), *bp)
			if rerr != unix.EINTR {
				break
			}
		}
		switch {
		case rerr == unix.EAGAIN:
			p.pool.Put(bp)
			rerr = nil
			return !blocking // wait for readability holding no buffer
		case n > 0:
			p.buf, p.pending, ok = bp, (*bp)[:n], true
		default:
			p.pool.Put(bp)
			if rerr == nil {
				p.eof, ok = true, true
			}
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	return ok, err
}

// badRequest answers a request that could not be read, counts it and logs it.
func (h *httpConn) badRequest(err error, first bool) {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return // client went away cleanly between requests
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		h.p.reject("header_timeout")
		if h.br.Buffered() > 0 || first {
			h.writeError(408, "request head not received in time")
		}
		return
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		h.p.reject("bad_request")
		return
	}
	status := h1.StatusOf(err)
	if status == 0 {
		return // a transport error (reset, closed): nothing to answer
	}
	reason := "bad_request"
	switch status {
	case 431:
		reason = "header_too_large"
	case 501:
		reason = "not_implemented"
	case 505:
		reason = "bad_version"
	}
	h.p.reject(reason)
	h.p.Log.Debug("bad request", "virtual", h.p.Name, "client", h.client, "status", status, "err", err)
	h.writeError(status, err.Error())
}

func (h *httpConn) writeError(status int, msg string) {
	body := fmt.Sprintf("%d %s: %s\n", status, statusText(status), msg)
	fmt.Fprintf(h.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, statusText(status), len(body), body)
	h.bw.Flush()
}

// reqView adapts h1.Request to what persistence reads.
type reqView struct{ r *h1.Request }

func (v reqView) Header(name string) (string, bool) { return v.r.Header.Get(name) }
func (v reqView) Cookie(name string) (string, bool) { return v.r.Cookie(name) }
func (v reqView) Path() string                      { return v.r.Path() }
func (v reqView) Query(name string) (string, bool)  { return v.r.Query(name) }

func (h *httpConn) hashKey(req *h1.Request) []byte {
	switch h.p.HashKey.Kind {
	case HashSourceAddr:
		b := h.client.Addr().As16()
		return b[:]
	case HashURI:
		return []byte(req.Path())
	case HashHeader:
		if v, ok := req.Header.Get(h.p.HashKey.Name); ok {
			return []byte(v)
		}
	case HashQuery:
		if v, ok := req.Query(h.p.HashKey.Name); ok {
			return []byte(v)
		}
	case HashCookie:
		if v, ok := req.Cookie(h.p.HashKey.Name); ok {
			return []byte(v)
		}
	}
	return nil
}

// hopByHop are the headers a proxy must not forward (RFC 9110 7.6.1).
var hopByHop = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Proxy-Authorization"}

func stripHopByHop(hd *h1.Header, keepUpgrade bool) {
	if conn, ok := hd.Get("Connection"); ok {
		for rest := conn; rest != ""; {
			var tok string
			tok, rest, _ = strings.Cut(rest, ",")
			tok = strings.TrimSpace(tok)
			if tok != "" && !(keepUpgrade && strings.EqualFold(tok, "upgrade")) {
				hd.Del(tok)
			}
		}
	}
	for _, n := range hopByHop {
		if keepUpgrade && (n == "Upgrade" || n == "Connection") {
			continue
		}
		hd.Del(n)
	}
}

// serveRequest proxies one request and its response. It returns whether the
// client connection may carry another request.
func (h *httpConn) serveRequest(req *h1.Request) bool {
	p := h.p
	p.Stats.Requests.Add(1)
	start := time.Now()
	view := reqView{req}
	key := h.hashKey(req)
	hasBody := !req.Body.NoBody && (req.Body.Chunked || req.Body.ContentLength > 0)
	upgrade := req.Upgrade

	// Rewrite the request for the server side.
	stripHopByHop(&req.Header, upgrade)
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
	} else if !p.HTTP.OneConnect {
		req.Header.Set("Connection", "close")
	} else if req.Proto == "HTTP/1.0" {
		req.Header.Set("Connection", "keep-alive")
	}
	if p.HTTP.InsertXFF {
		if h.xff == "" {
			h.xff = h.client.Addr().String() // once per connection, not per request
		}
		xff := h.xff
		if prev, ok := req.Header.Get("X-Forwarded-For"); ok {
			req.Header.Set("X-Forwarded-For", prev+", "+xff)
		} else {
			req.Header.Add("X-Forwarded-For", xff)
		}
	}
	if req.Expect100 {
		req.Header.Del("Expect")
	}

	var (
		ch      choice
		sc      *serverConn
		resp    *h1.Response
		lastErr error
		sent    time.Time
	)
	bodySent := false
	if hasBody {
		// Bodies are read under the idle timeout.
		h.raw.SetReadDeadline(deadline(p.IdleTimeout))
	}
	for attempt := 0; attempt < maxConnectAttempts; attempt++ {
		var err error
		if ch.member == nil {
			ch, err = p.choose(h.client.Addr(), view, key, time.Now())
			if err != nil {
				p.reject("no_member")
				h.writeError(503, "no pool member is available for "+p.Pool.Name())
				return false
			}
		}
		m := ch.member
		sc, err = h.serverConn(m)
		if err != nil {
			m.Release()
			m.AddError()
			lastErr = err
			ch = choice{}
			continue
		}
		h.setCur(sc)
		h.e.SetServer(m.PoolName(), addrPortOf(sc.conn.LocalAddr()), m.Addr())
		reused := sc.requests > 0
		sc.requests++
		if req.Expect100 && hasBody && !bodySent {
			h.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			h.bw.Flush()
		}
		sent = time.Now()
		err = req.WriteHead(sc.bw)
		if err == nil && hasBody {
			if bodySent {
				err = errors.New("request body already consumed")
			} else {
				bodySent = true
				_, err = h.copyBody(sc.bw, h.br, req.Body, sc.conn, h.c, func(n int64) {
					m.AddBytes(n, 0)
					h.e.AddIn(n)
					p.Stats.BytesIn.Add(uint64(n))
				})
			}
		}
		if err == nil {
			err = sc.bw.Flush()
		}
		if err == nil {
			sc.conn.SetReadDeadline(time.Now().Add(p.HTTP.ResponseTimeout))
			resp, err = h.readResponse(sc, req)
		}
		if err == nil {
			break
		}
		sc.close()
		h.setCur(nil)
		lastErr = err
		// A reused keep-alive connection may have been closed by the server
		// just as we sent: retry on a fresh one, on the same member, if the
		// request can be sent again.
		if reused && !bodySent && isStale(err) {
			continue
		}
		m.Release()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			m.ReportFailure("response timeout")
			m.AddError()
			p.Stats.Errors.Add(1)
			h.writeError(504, "the pool member did not answer in time")
			h.log(req, 504, m.String(), start)
			return false
		}
		m.AddError()
		m.ReportFailure("response: " + shortErr(err))
		p.Stats.Errors.Add(1)
		h.writeError(502, "the pool member sent no valid response")
		h.log(req, 502, m.String(), start)
		return false
	}
	if resp == nil {
		p.Stats.Errors.Add(1)
		p.Log.Warn("request failed: no member reachable", "virtual", p.Name, "client", h.client, "err", lastErr)
		h.writeError(502, "no pool member could be reached")
		h.log(req, 502, "", start)
		return false
	}
	m := ch.member
	released := false
	defer func() {
		if !released {
			m.Release()
		}
	}()
	latency := time.Since(sent)
	m.ObserveLatency(latency)
	m.AddRequest()
	m.ReportSuccess()
	if o := sc.observer(p); o != nil {
		o.Observe(latency.Seconds())
	}

	// Persistence that needs the response.
	if ch.setCookie != "" {
		resp.Header.Add("Set-Cookie", ch.setCookie)
	}
	if p.Persist != nil && p.Persist.Type() == "cookie_passive" {
		if sets := resp.Header.Values("Set-Cookie"); len(sets) > 0 {
			p.Persist.Learn(p.PersistTable, &persist.Request{Virtual: p.Name, Pool: p.Pool.Name(), Client: h.client.Addr(), HTTP: view},
				sets, persist.Target{Pool: m.PoolName(), Member: m.Addr()}, time.Now())
		}
	}

	if resp.Status == 101 && upgrade {
		return h.tunnel(sc, resp, req, start)
	}

	// Response head toward the client.
	keepClient := !req.Close && !resp.Body.UntilClose
	stripHopByHop(&resp.Header, false)
	if !keepClient {
		resp.Header.Set("Connection", "close")
	} else if req.Proto == "HTTP/1.0" {
		resp.Header.Set("Connection", "keep-alive")
	}
	if err := resp.WriteHead(h.bw); err != nil {
		sc.close()
		h.setCur(nil)
		return false
	}
	if !resp.Body.NoBody {
		if resp.Body.Chunked || resp.Body.UntilClose || int64(sc.br.Buffered()) < resp.Body.ContentLength {
			// More reads to come: a long download runs under the idle
			// timeout, not the response timeout.
			sc.conn.SetReadDeadline(deadline(p.IdleTimeout))
		}
		if _, err := h.copyBody(h.bw, sc.br, resp.Body, h.c, sc.conn, func(n int64) {
			m.AddBytes(0, n)
			h.e.AddOut(n)
			p.Stats.BytesOut.Add(uint64(n))
		}); err != nil {
			// Mid-body failure: neither side can be reused.
			h.bw.Flush()
			sc.close()
			h.setCur(nil)
			p.Stats.Errors.Add(1)
			h.log(req, resp.Status, m.String(), start)
			return false
		}
	}
	// The server side is done: park its connection and free the member's
	// slot before the last bytes reach the client, so the client's next
	// request already sees both.
	h.setCur(nil)
	if p.HTTP.OneConnect && !resp.Close && !resp.Body.UntilClose && sc.br.Buffered() == 0 {
		// Its read deadline is renewed before its next use.
		h.l.idle.put(sc, p.HTTP.MaxIdlePerMember, time.Now())
	} else {
		sc.close()
	}
	m.Release()
	released = true
	if err := h.bw.Flush(); err != nil {
		return false
	}
	h.log(req, resp.Status, m.String(), start)
	return keepClient
}

// readResponse reads the final response head, forwarding interim 1xx
// responses (except 101) to the client.
func (h *httpConn) readResponse(sc *serverConn, req *h1.Request) (*h1.Response, error) {
	lim := h1.Limits{MaxHeaderBytes: h.p.HTTP.MaxHeaderBytes, MaxHeaders: h.p.HTTP.MaxHeaders}
	for {
		resp, err := h1.ReadResponse(sc.br, lim, req.Method)
		if err != nil {
			return nil, err
		}
		if resp.Status >= 100 && resp.Status < 200 && resp.Status != 101 {
			if req.Expect100 && resp.Status == 100 {
				continue // we already told the client to go on
			}
			if err := resp.WriteHead(h.bw); err != nil {
				return nil, err
			}
			if err := h.bw.Flush(); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

// tunnel forwards a 101 Switching Protocols response and then bytes both ways (WebSocket).
func (h *httpConn) tunnel(sc *serverConn, resp *h1.Response, req *h1.Request, start time.Time) bool {
	if err := resp.WriteHead(h.bw); err != nil {
		return false
	}
	// Bytes already buffered on either side belong to the new protocol.
	if n := sc.br.Buffered(); n > 0 {
		b, _ := sc.br.Peek(n)
		h.bw.Write(b)
	}
	if err := h.bw.Flush(); err != nil {
		return false
	}
	if n := h.br.Buffered(); n > 0 {
		b, _ := h.br.Peek(n)
		if _, err := sc.conn.Write(b); err != nil {
			return false
		}
	}
	h.log(req, 101, sc.member.String(), start)
	h.c.SetReadDeadline(time.Time{})
	sc.conn.SetReadDeadline(time.Time{})
	h.l.proxyStreams(h.p, h.e, h.c, sc.conn, func(int64, int64) {})
	return false
}

// serverConn returns an idle connection to m (OneConnect) or dials a new one.
func (h *httpConn) serverConn(m *pool.Member) (*serverConn, error) {
	p := h.p
	isTLS := p.ServerTLS != nil
	if p.HTTP.OneConnect {
		if sc := h.l.idle.get(m, isTLS, p.HTTP.ServerIdleTimeout, time.Now()); sc != nil {
			return sc, nil
		}
	}
	c, err := p.dialMember(h.l.ctx, h.client.Addr(), h.mss, m, h.l.seed, func(c net.Conn) net.Conn {
		return &countConn{Conn: c, c: memberCounter{m}}
	})
	if err != nil {
		return nil, err
	}
	return &serverConn{
		conn:   c,
		br:     bufio.NewReaderSize(c, 16<<10),
		bw:     bufio.NewWriterSize(c, 16<<10),
		member: m,
		tls:    isTLS,
	}, nil
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// isStale reports errors that mean "the server closed this idle connection".
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

func (h *httpConn) log(req *h1.Request, status int, member string, start time.Time) {
	if h.p.AccessLog == nil {
		return
	}
	h.p.AccessLog.Info("request",
		"virtual", h.p.Name, "client", h.client.String(), "method", req.Method, "target", req.Target,
		"host", req.Host, "status", status, "member", member, "duration_ms", float64(time.Since(start).Microseconds())/1000)
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 408:
		return "Request Timeout"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

// headBuffered reports whether a complete request head has already been
// read (into the reader's buffer, or ahead into the prefetch buffer).
func (h *httpConn) headBuffered() bool {
	b, _ := h.br.Peek(h.br.Buffered())
	if bytes.Contains(b, []byte("\r\n\r\n")) {
		return true
	}
	return h.br.Buffered() == 0 && h.pre != nil && bytes.Contains(h.pre.pending, []byte("\r\n\r\n"))
}

// bigBodyMin is the smallest remaining body worth the large-buffer path:
// below it the buffered copy's fewer system calls win.
const bigBodyMin = 64 << 10

// copyBody copies one message body from src (buffered reader over the
// connection srcConn) to dst (buffered writer over dstConn). A large
// length-delimited body between two plain TCP connections is copied
// socket to socket through a 64 KiB chunk (what the buffers already hold
// goes first), four times fewer system calls than through the 16 KiB
// buffers; count reports the bytes that bypassed the byte-counting
// wrappers. Everything else goes through h1.CopyBody. (Not splice(2): see
// the relay's comment for why Fulcrum does not use it.)
func (h *httpConn) copyBody(dst *bufio.Writer, src *bufio.Reader, f h1.Framing, dstConn, srcConn net.Conn, count func(int64)) (int64, error) {
	if f.Chunked || f.UntilClose || f.NoBody || f.ContentLength-int64(src.Buffered()) < bigBodyMin {
		return h1.CopyBody(dst, src, f)
	}
	dt, st := plainTCP(dstConn), plainTCP(srcConn)
	if dt == nil || st == nil {
		return h1.CopyBody(dst, src, f)
	}
	// What the reader already holds goes through the writer.
	n, err := io.CopyN(dst, src, int64(src.Buffered()))
	if err == nil {
		err = dst.Flush()
	}
	if err != nil {
		return n, err
	}
	c, _ := h.l.chunks.Get().(*chunk)
	if c == nil {
		c = new(chunk)
	}
	defer h.l.chunks.Put(c)
	for n < f.ContentLength {
		nr, rerr := st.Read(c.b[:min(int64(chunkSize), f.ContentLength-n)])
		if nr > 0 {
			nw, werr := dt.Write(c.b[:nr])
			n += int64(nw)
			count(int64(nw))
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF && n < f.ContentLength {
			return n, io.ErrUnexpectedEOF
		}
		if rerr != nil && rerr != io.EOF {
			return n, rerr
		}
	}
	return n, nil
}

// plainTCP returns c's TCP connection when c is plain TCP (possibly behind
// the byte counter), nil for TLS or anything else.
func plainTCP(c net.Conn) *net.TCPConn {
	switch v := c.(type) {
	case *net.TCPConn:
		return v
	case *countConn:
		switch u := v.Conn.(type) {
		case *net.TCPConn:
			return u
		case *prefetchConn:
			if !u.hasData() { // never bypass bytes read ahead
				return u.TCPConn
			}
		}
	}
	return nil
}
