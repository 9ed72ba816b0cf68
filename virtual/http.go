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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/h1"
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

	idleArmed atomic.Bool // the client's read deadline is an idle one (renewed by progress)
	linger    bool        // answered while the client may still be sending: drain before closing

	mir         *httpMirror // mirroring state (mirrored plain http virtuals only)
	tunnelGuard guardSlot   // a mirrored upgrade tunnel's crash guard

	waitUntil time.Time                  // deadline of the current wait for a request
	parked    atomic.Pointer[parkedConn] // set while the parker holds the connection
	pc        parkedConn                 // the parking record (see parker.park)
	cw        watch                      // the parker's registration (see parker.park)
	preVal    prefetchConn               // h.pre's storage
	cntVal    countConn                  // h.c's storage (plain TCP)
	endOnce   sync.Once
}

func (h *httpConn) setCur(sc *serverConn) {
	h.mu.Lock()
	h.cur = sc
	h.mu.Unlock()
}

func (h *httpConn) closeAll() {
	h.tunnelGuard.release()
	h.c.Close()
	h.mu.Lock()
	if h.cur != nil {
		h.cur.close()
	}
	h.mu.Unlock()
}

// startHTTP takes over an accepted client connection on an http virtual:
// it enters the connection table, and either starts a goroutine for it
// (TLS, or data already waiting) or parks it until its first request
// arrives. The connection ends through end, exactly once.
func (l *Listener) startHTTP(p *Plan, raw net.Conn) {
	h := l.newHTTPConn(p, raw)
	if h.pre != nil && l.parker != nil {
		// Most clients send their request with or right after the
		// handshake: take it now if it is there, else park until it is.
		if ok, err := h.pre.readAhead(false); err == nil && !ok {
			if l.parker.park(h, p.HTTP.HeaderTimeout, true) == nil {
				return
			}
		}
	}
	if l.parker != nil {
		l.parker.dispatch(h, true)
		return
	}
	go h.run(true)
}

// newHTTPConn makes the state of a client connection on an http virtual
// and enters it in the connection table.
func (l *Listener) newHTTPConn(p *Plan, raw net.Conn) *httpConn {
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
	var wio *rawIO
	if tc, ok := raw.(*net.TCPConn); ok {
		wio = newRawIO(tc)
		if p.ClientTLS == nil {
			h.preVal = prefetchConn{TCPConn: tc, pool: &l.readahead, io: wio}
			h.pre = &h.preVal
			under = h.pre
		}
	}
	h.cntVal = countConn{Conn: under, c: h, wio: wio}
	if h.pre == nil {
		h.cntVal.rio = wio // TLS reads the socket through countConn
	}
	h.c = &h.cntVal
	if p.Mirror != nil && h.pre != nil {
		h.mir = &httpMirror{}
		l.trackHTTP(h)
	}
	p.Conns.Add(e, h.kill)
	e.SetDetail(h.detail)
	return h
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
		if h.mir != nil {
			h.mirrorBusy(true) // before the close: its FIN must leave
			h.l.untrackHTTP(h)
		}
		h.p.Conns.Remove(h.e)
		h.forget()
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
	h.mirrorBusy(true)
	h.tunnelGuard.release()
	h.forget()
	abortOrClose(h.raw, h.p.Clientside)
	if pc := h.parked.Load(); pc != nil && h.l.parker.take(pc) {
		h.end()
		return
	}
	h.closeAll()
}

// forget takes the client socket out of the parker's set before it closes.
// The connection table's reaper calls it from its own goroutine, so the
// watch is read under the parker's lock that park wrote it under.
func (h *httpConn) forget() {
	if h.pre != nil && h.l.parker != nil {
		h.l.parker.forgetClient(h.pre)
	}
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
		if h.linger {
			h.lingerClose()
		}
		h.end()
	}
}

// lingerTime and lingerBytes bound how long and how much a connection that
// was answered with an error (or an early response) while its client was
// still sending is drained before it is closed.
const (
	lingerTime  = time.Second
	lingerBytes = 1 << 20
)

// lingerClose half-closes the client connection and reads what the client
// is still sending for a moment before the close: closing a socket with
// unread data sends a reset, which can destroy the error response before
// the client has read it (Apache's and nginx's lingering close).
func (h *httpConn) lingerClose() {
	tc, ok := h.raw.(*net.TCPConn)
	if !ok {
		return
	}
	if h.bw != nil {
		h.bw.Flush()
	}
	if tc.CloseWrite() != nil {
		return
	}
	tc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, tc, lingerBytes)
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
			if h.pre != nil && h.l.parker != nil {
				// An idle connection holds no buffers and, parked, no
				// goroutine: the parker resumes it when data arrives.
				if h.mir != nil && !first && !h.pre.hasData() {
					h.mirrorIdle() // mirrored once the client acknowledged the response
				}
				if parked, ok := h.awaitRequest(first); parked || !ok {
					return parked
				}
				h.takeBuffers()
			} else if h.pre != nil {
				h.releaseBuffers()
				raw.SetReadDeadline(h.waitUntil)
				if _, err := h.pre.readAhead(true); err != nil {
					if first && isTimeout(err) {
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
		if h.mir != nil {
			h.mirrorBusy(false) // a request is arriving: the standby forgets the connection
		}
		// The head must then arrive within the header timeout. When it is
		// already buffered no read can block, and a deadline would only cost
		// a timer update per request.
		headStart := time.Now()
		if first {
			raw.SetReadDeadline(h.e.Created.Add(p.HTTP.HeaderTimeout))
		} else if !h.headBuffered() {
			raw.SetReadDeadline(headStart.Add(p.HTTP.HeaderTimeout))
		}
		req, err := h1.ReadRequest(h.br, lim)
		if err != nil {
			h.badRequest(err, first)
			return false
		}
		if !h.serveRequest(req, headStart) {
			return false
		}
	}
}

// awaitRequest waits for the next request on a plain connection with a
// parker: it parks the connection (parked: this goroutine must end) unless
// data may already be waiting, in which case it reads it. ok is false when
// the connection is over (timeout, listener closing, error).
func (h *httpConn) awaitRequest(first bool) (parked, ok bool) {
	for tries := 0; !h.pre.hasData(); tries++ {
		h.releaseBuffers()
		left := time.Until(h.waitUntil)
		if left <= 0 {
			if first {
				h.p.reject("header_timeout") // connected, never sent a byte
			}
			return false, false
		}
		err := errMaybeData
		if tries < 4 { // a socket that keeps signalling without data is read blocking
			err = h.l.parker.park(h, left, first)
		}
		switch err {
		case nil:
			return true, true
		case errDraining:
			return false, false // the listener is closing: idle connections end
		case errMaybeData:
			blocking := tries >= 4
			if blocking {
				h.raw.SetReadDeadline(h.waitUntil)
			}
			if _, err := h.pre.readAhead(blocking); err != nil {
				if first && isTimeout(err) {
					h.p.reject("header_timeout")
				}
				return false, false
			}
		default:
			// Not parkable (the set refused it): wait here.
			h.raw.SetReadDeadline(h.waitUntil)
			if _, err := h.pre.readAhead(true); err != nil {
				if first && isTimeout(err) {
					h.p.reject("header_timeout")
				}
				return false, false
			}
		}
	}
	return false, true
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
	w       *watch // the parker's registration (nil until first parked)
	io      *rawIO // reads of the socket (nil: through TCPConn)
}

// beforeRead records the parker's event count before a read of the
// socket, and afterRead notes a read that filled its buffer: the socket
// may hold more, which an edge-triggered set will not report again.
func (p *prefetchConn) beforeRead() {
	if p.w != nil {
		p.w.readSeq.Store(p.w.seq.Load())
	}
}

func (p *prefetchConn) afterRead(n, size int) {
	if p.w != nil && n == size {
		p.w.readSeq.Store(^uint64(0))
	}
}

const readAheadSize = 16 << 10

func (p *prefetchConn) hasData() bool { return len(p.pending) > 0 || p.eof }

func (p *prefetchConn) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		if len(p.pending) == 0 {
			if p.buf != nil {
				p.pool.Put(p.buf)
			}
			p.buf, p.pending = nil, nil
		}
		return n, nil
	}
	if p.eof {
		return 0, io.EOF
	}
	p.beforeRead()
	var n int
	var err error
	if p.io != nil {
		n, err = p.io.read(b)
	} else {
		n, err = p.TCPConn.Read(b)
	}
	p.afterRead(n, len(b))
	return n, err
}

// readAhead reads what the client has sent. Blocking, it waits for data
// (until the read deadline); otherwise it returns ok=false at once when
// there is none. ok is also true at EOF (Read then reports it).
func (p *prefetchConn) readAhead(blocking bool) (ok bool, err error) {
	if p.hasData() {
		return true, nil
	}
	if p.io == nil {
		return false, errors.New("no socket to read ahead")
	}
	for {
		// A buffer only once the socket is readable: a connection waiting
		// here holds none.
		if blocking {
			if err := p.io.waitReadable(); err != nil {
				return false, err
			}
		}
		ok, again, err := p.readNow()
		if !again || !blocking {
			return ok, err
		}
	}
}

// readNow reads what the socket holds without waiting; again: nothing was
// there (EAGAIN).
func (p *prefetchConn) readNow() (ok, again bool, err error) {
	bp, _ := p.pool.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, readAheadSize)
		bp = &b
	}
	p.beforeRead()
	n, errno, err := p.io.readOnce(*bp, false)
	p.afterRead(n, len(*bp))
	switch {
	case err != nil:
		p.pool.Put(bp)
		return false, false, err
	case errno == unix.EAGAIN:
		p.pool.Put(bp)
		return false, true, nil
	case errno != 0:
		p.pool.Put(bp)
		return false, false, errno
	case n > 0:
		p.buf, p.pending = bp, (*bp)[:n]
		return true, false, nil
	}
	p.pool.Put(bp)
	p.eof = true
	return true, false, nil
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
	h.linger = true // the rest of what it sent is unread
	h.writeError(status, reasonOf(err))
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
// connection srcConn) to dst (buffered writer over dstConn). Errors writing
// to dst come back as writeErrors (the other side's are read errors); an
// idle read deadline on srcConn is renewed through ext while bytes move. A large
// length-delimited body between two plain TCP connections is copied
// socket to socket through a 64 KiB chunk (what the buffers already hold
// goes first), four times fewer system calls than through the 16 KiB
// buffers; count reports the bytes that bypassed the byte-counting
// wrappers. Everything else goes through h1.CopyBody. (Not splice(2): see
// the relay's comment for why Fulcrum does not use it.)
func (h *httpConn) copyBody(dst *bufio.Writer, src *bufio.Reader, f h1.Framing, dstConn, srcConn net.Conn, ext idleExtender, count func(int64)) (int64, error) {
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
				return n, &writeError{werr}
			}
		} else if rerr != nil && isTimeout(rerr) && ext.extendIdle() {
			continue // the exchange is moving: not idle yet
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
