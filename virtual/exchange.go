package virtual

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/h1"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// An exchange is one request and its response on an http virtual. Its
// steps run in order: rewrite the request for the server side, connect
// (persistence, balancing, OneConnect reuse, reselect on failure), send the
// request while watching for an early response, forward the response, and
// finish (connection back to the pool, member slot released, access log).
//
// Every error is charged to whoever caused it (the client, the member, or
// Fulcrum's own resources) and only that party's counters see it: a client
// that sends a broken body or hangs up never costs a member its health.

// lease is one member slot taken by Acquire; release gives it back exactly
// once whatever path the exchange ends on.
type lease struct{ m *pool.Member }

func (l *lease) release() {
	if l.m != nil {
		l.m.Release()
		l.m = nil
	}
}

// fault says who broke an exchange.
type fault uint8

const (
	faultNone   fault = iota
	faultStale        // a reused idle connection the member had closed: try again
	faultClient       // the client: malformed, truncated or stalled body, or gone
	faultMember       // the member: no valid response, reset, timeout
)

// termination state, HAProxy style: who ended the exchange ('-' nobody,
// 'C' client, 'c' client timeout, 'S' member, 's' member timeout, 'P' the
// proxy's own refusal, 'R' Fulcrum's own resources), then at which stage
// ('-' completed, 'R' request, 'C' connect, 'H' response head, 'D' data).
const (
	termNormal        = "--"
	termClientBody    = "CD"
	termClientTimeout = "cD"
	termClientGone    = "CD"
	termNoMember      = "PC"
	termLocal         = "RC"
	termConnect       = "SC"
	termMemberHead    = "SH"
	termMemberTimeout = "sH"
	termMemberData    = "SD"
	termMemberDataTO  = "sD"
)

type exchange struct {
	h   *httpConn
	p   *Plan
	req *h1.Request
	key []byte

	headStart time.Time // reading of the request head began
	start     time.Time // the request head was complete
	sent      time.Time // the request head went to the member

	hasBody   bool
	bodySent  bool // request body bytes left the client's buffers: no retry
	bodyDone  bool // the whole request body was read from the client
	continued bool // we told the client "100 Continue"
	early     bool // the member answered before the whole body was sent

	ch    choice
	lease lease
	tried []*pool.Member // members this request failed to reach
	sc    *serverConn
	resp  *h1.Response

	tConnect, tResponse time.Duration // -1 until reached
	bodyIn              int64         // request body bytes sent to the member
	outStart            uint64        // client connection's bytes out when the exchange began
	status              int
	member              string
	term                string
}

// serveRequest proxies one request and its response. It returns whether the
// client connection may carry another request.
func (h *httpConn) serveRequest(req *h1.Request, headStart time.Time) bool {
	x := &exchange{
		h: h, p: h.p, req: req, headStart: headStart, start: time.Now(),
		tConnect: -1, tResponse: -1, outStart: h.e.BytesOut(), term: termNormal,
	}
	defer x.lease.release()
	keep := x.run()
	x.log()
	return keep
}

func (x *exchange) run() bool {
	h, p, req := x.h, x.p, x.req
	p.Stats.Requests.Add(1)
	x.key = h.hashKey(req)
	x.hasBody = !req.Body.NoBody && (req.Body.Chunked || req.Body.ContentLength > 0)
	x.rewriteRequest()

	for attempt := 0; ; attempt++ {
		if !x.connect() {
			return false
		}
		f, err := x.send()
		if f == faultNone {
			break
		}
		x.sc.close()
		h.setCur(nil)
		x.sc = nil
		switch f {
		case faultStale:
			if attempt < maxConnectAttempts {
				continue // same member, a fresh connection
			}
			x.memberFailed(err, true)
		case faultClient:
			x.clientFailed(err)
		case faultMember:
			x.memberFailed(err, false)
		}
		return false
	}

	m := x.ch.member
	x.tResponse = time.Since(x.sent)
	if !x.early {
		m.ObserveLatency(x.tResponse)
		m.ReportSuccess()
		if o := x.sc.observer(p); o != nil {
			o.Observe(x.tResponse.Seconds())
		}
	}
	m.AddRequest()
	x.applyResponsePersistence()
	if x.resp.Status == 101 {
		x.status = 101
		return h.tunnel(x.sc, x.resp, req)
	}
	return x.forwardResponse()
}

// rewriteRequest turns the client's request into the member's: hop-by-hop
// fields out (never the framing or Host, whatever Connection names), the
// connection management of the server side, X-Forwarded-For.
func (x *exchange) rewriteRequest() {
	h, p, req := x.h, x.p, x.req
	upgrade := req.Upgrade
	stripHopByHop(&req.Header, upgrade)
	if req.Target[0] != '/' && req.Target != "*" && req.Method != "CONNECT" {
		// absolute-form: the target's authority replaces any Host field
		// (RFC 9112 §3.2.2), so the member routes on what we balanced on.
		req.Header.Set("Host", req.Host)
	}
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
		if prev, ok := req.Header.Get("X-Forwarded-For"); ok {
			req.Header.Set("X-Forwarded-For", prev+", "+h.xff)
		} else {
			req.Header.Add("X-Forwarded-For", h.xff)
		}
	}
	if req.Expect100 {
		req.Header.Del("Expect")
	}
}

// hopByHop are the headers a proxy must not forward (RFC 9110 7.6.1).
var hopByHop = [...]string{"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Proxy-Authorization"}

// endToEnd are fields a Connection token must never remove (RFC 9110
// §7.6.1: a sender must not list them; a proxy that obeyed would change the
// message's framing or destination after deciding them). The token is
// ignored and the field forwarded, as HAProxy and nginx do: removing
// Content-Length or Transfer-Encoding after the body's length was decided is
// how a body becomes a second, smuggled request on a shared server
// connection.
var endToEnd = [...]string{"Content-Length", "Transfer-Encoding", "Host"}

func stripHopByHop(hd *h1.Header, keepUpgrade bool) {
	if conn, ok := hd.Get("Connection"); ok {
		for rest := conn; rest != ""; {
			var tok string
			tok, rest, _ = strings.Cut(rest, ",")
			tok = strings.TrimSpace(tok)
			if tok == "" || keepUpgrade && strings.EqualFold(tok, "upgrade") || protectedField(tok) {
				continue
			}
			hd.Del(tok)
		}
	}
	for _, n := range hopByHop {
		if keepUpgrade && (n == "Upgrade" || n == "Connection") {
			continue
		}
		hd.Del(n)
	}
}

func protectedField(name string) bool {
	for _, n := range endToEnd {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// connect gives the exchange a server connection: persistence and
// balancing choose a member (skipping members this request already failed
// to reach), then OneConnect reuses a clean idle connection or a new one is
// dialed. It answers the client itself and returns false when nothing can
// serve the request.
func (x *exchange) connect() bool {
	h, p := x.h, x.p
	for {
		t0 := time.Now()
		if x.ch.member == nil {
			ch, err := p.choose(ident{client: h.client.Addr(), local: h.e.VirtualAddr.Addr(), http: reqView{x.req}}, x.key, t0, x.tried)
			if err != nil {
				if len(x.tried) > 0 {
					x.fail(502, "no pool member could be reached", termConnect)
					p.Stats.Errors.Add(1)
					return false
				}
				p.reject("no_member")
				x.fail(503, "no pool member is available for "+p.Pool.Name(), termNoMember)
				return false
			}
			x.ch, x.lease = ch, lease{ch.member}
		}
		m := x.ch.member
		x.member = m.String()
		sc, dialed, err := h.serverConn(m, t0)
		if err == nil {
			if dialed {
				x.tConnect = time.Since(t0)
			} else if x.tConnect < 0 {
				x.tConnect = 0
			}
			x.sc = sc
			return true
		}
		x.lease.release()
		x.ch = choice{}
		if p.connectFailed(h.l.ctx, m, h.client, err) {
			x.fail(503, "the load balancer is out of local resources; try again", termLocal)
			return false
		}
		x.tried = append(x.tried, m)
		if len(x.tried) >= maxConnectAttempts {
			p.Stats.Errors.Add(1)
			p.Log.Warn("request failed: no member reachable", "virtual", p.Name, "client", h.client, "err", shortErr(err))
			x.fail(502, "no pool member could be reached", termConnect)
			return false
		}
	}
}

// serverConn returns a clean idle connection to m (OneConnect) or dials a
// new one; dialed says which.
func (h *httpConn) serverConn(m *pool.Member, now time.Time) (sc *serverConn, dialed bool, err error) {
	p := h.p
	k := idleKey{addr: m.Addr(), tls: p.ServerTLS, profile: p.Serverside}
	if p.SNAT.Mode == SNATPool {
		k.source = p.snatAddr(h.client.Addr(), m.Addr(), h.l.seed)
	} else if p.SNAT.Mode == SNATNone {
		k.source = h.client.Addr()
	}
	if p.HTTP.OneConnect {
		if sc := h.l.idle.get(k, p.HTTP.ServerIdleTimeout, now); sc != nil {
			return sc, false, nil
		}
	}
	sc = &serverConn{member: m, key: k}
	c, err := p.dialMember(h.l.ctx, h.client.Addr(), h.mss, m, h.l.seed, func(c net.Conn) net.Conn {
		sc.raw, _ = c.(*net.TCPConn)
		return newCountConn(c, sc)
	})
	if err != nil {
		return nil, false, err
	}
	sc.conn = c
	sc.br = bufio.NewReaderSize(c, 16<<10)
	sc.bw = bufio.NewWriterSize(c, 16<<10)
	return sc, true, nil
}

type respResult struct {
	resp *h1.Response
	err  error
}

// send writes the request to the member and reads its response head. A
// request with a body is sent while another goroutine already reads the
// response: a member may answer before it has read the body (401, 413, a
// redirect), and that answer is what the client gets.
func (x *exchange) send() (fault, error) {
	h, p, req, sc := x.h, x.p, x.req, x.sc
	sc.owner.Store(h)
	h.setCur(sc)
	h.e.SetServer(sc.member.PoolName(), addrPortOf(sc.conn.LocalAddr()), sc.member.Addr())
	reused := sc.requests > 0
	sc.requests++
	stale := func(err error) fault {
		if reused && !x.bodySent && isStale(err) {
			return faultStale
		}
		return faultMember
	}
	if req.Expect100 && x.hasBody && !x.continued {
		x.continued = true
		h.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := h.bw.Flush(); err != nil {
			return faultClient, err
		}
	}
	x.sent = time.Now()
	var seq0 uint64
	if !x.hasBody && h.l.parker != nil {
		// The response is awaited through the parker, so that its read does
		// not fail first (one system call fewer per request).
		h.l.parker.watchServer(sc)
		if sc.w != nil {
			seq0 = sc.w.seq.Load()
		}
	}
	err := req.WriteHead(sc.bw)
	if err == nil && !x.hasBody {
		err = sc.bw.Flush()
	}
	if err != nil {
		return stale(err), err
	}
	if !x.hasBody {
		deadline := x.sent.Add(p.HTTP.ResponseTimeout)
		sc.conn.SetReadDeadline(deadline)
		if sc.w != nil && sc.br.Buffered() == 0 {
			sc.w.await(seq0, deadline)
		}
		resp, err := h.readResponse(sc, req)
		if err != nil {
			return stale(err), err
		}
		x.resp = resp
		return x.checkResponse()
	}

	// The body, with the response watched for at the same time. The
	// client's body is read under the idle timeout, renewed while bytes
	// move; the member is not expected to say anything before the body is
	// in, so its read waits without a deadline (a stall on both sides ends
	// through the connection table's idle reaping).
	x.bodySent = true
	h.armIdle(h.raw, &h.idleArmed)
	sc.conn.SetReadDeadline(time.Time{})
	var interrupted, bodyDone atomic.Bool
	results := make(chan respResult, 1)
	go func() {
		resp, err := h.readResponse(sc, req)
		if !bodyDone.Load() {
			// Stop the body: its copy is blocked reading the client or
			// writing to the member.
			interrupted.Store(true)
			h.idleArmed.Store(false)
			h.raw.SetReadDeadline(aLongTimeAgo)
			if sc.raw != nil {
				sc.raw.SetWriteDeadline(aLongTimeAgo)
			}
		}
		results <- respResult{resp, err}
	}()
	n, err := h.copyBody(sc.bw, h.br, req.Body, sc.conn, h.c, h, func(n int64) {
		sc.member.AddBytes(n, 0)
		h.e.AddIn(n)
		p.Stats.BytesIn.Add(uint64(n))
	})
	if err == nil {
		err = sc.bw.Flush()
	}
	bodyDone.Store(true)
	x.bodyIn = n
	x.bodyDone = err == nil
	h.idleArmed.Store(false)
	if err == nil {
		// The whole body is out: the response timeout runs from here.
		sc.idleArmed.Store(false)
		sc.conn.SetReadDeadline(time.Now().Add(p.HTTP.ResponseTimeout))
		r := <-results
		if interrupted.Load() {
			// The answer raced the end of the body: undo the interruption.
			h.raw.SetReadDeadline(time.Time{})
			if sc.raw != nil {
				sc.raw.SetWriteDeadline(time.Time{})
			}
		}
		if r.err != nil {
			return faultMember, r.err
		}
		x.resp = r.resp
		return x.checkResponse()
	}
	if interrupted.Load() || isWriteError(err) {
		// The member answered, or stopped reading (it may have answered
		// and closed): its answer, if there is one, is what the client gets.
		sc.conn.SetReadDeadline(time.Now().Add(min(p.HTTP.ResponseTimeout, time.Second)))
		r := <-results
		if r.err != nil {
			return faultMember, r.err
		}
		x.resp, x.early = r.resp, true
		return x.checkResponse()
	}
	// The client broke its own body: stop watching for the response.
	sc.idleArmed.Store(false)
	sc.conn.SetReadDeadline(aLongTimeAgo)
	<-results
	return faultClient, err
}

// aLongTimeAgo is a deadline that has passed: setting it interrupts a
// blocked read or write (as net/http does).
var aLongTimeAgo = time.Unix(1, 0)

// checkResponse refuses responses the request did not allow.
func (x *exchange) checkResponse() (fault, error) {
	if x.resp.Status == 101 && !x.req.Upgrade {
		return faultMember, errUnrequested101
	}
	return faultNone, nil
}

var errUnrequested101 = errors.New("101 Switching Protocols to a request that asked for no upgrade")

// armIdle sets an idle read deadline on c that progress renews (see
// countConn and renewIdle).
func (h *httpConn) armIdle(c net.Conn, armed *atomic.Bool) {
	if h.p.IdleTimeout <= 0 {
		c.SetReadDeadline(time.Time{})
		return
	}
	armed.Store(true)
	c.SetReadDeadline(time.Now().Add(h.p.IdleTimeout))
}

// extendIdle makes httpConn an idleExtender for its client connection.
func (h *httpConn) extendIdle() bool { return h.renewIdle(h.raw, &h.idleArmed) }

// renewIdle renews an expired idle deadline on c when the exchange moved
// bytes (in either direction) within the idle timeout. armed is checked
// again after the renewal, so a concurrent interruption (disarm, then a
// past deadline) always wins.
func (h *httpConn) renewIdle(c net.Conn, armed *atomic.Bool) bool {
	if !armed.Load() || h.p.IdleTimeout <= 0 {
		return false
	}
	now := time.Now()
	left := h.p.IdleTimeout - h.e.Idle(now)
	if left <= 0 {
		return false
	}
	c.SetReadDeadline(now.Add(left))
	if !armed.Load() {
		c.SetReadDeadline(aLongTimeAgo)
		return false
	}
	return true
}

// applyResponsePersistence adds the persistence cookie (cookie insert) or
// learns the application's (cookie passive).
func (x *exchange) applyResponsePersistence() {
	p, m := x.p, x.ch.member
	if x.ch.setCookie != "" {
		x.resp.Header.Add("Set-Cookie", x.ch.setCookie)
	}
	if p.Persist != nil && p.Persist.Type() == "cookie_passive" {
		if sets := x.resp.Header.Values("Set-Cookie"); len(sets) > 0 {
			p.Persist.Learn(p.PersistTable, &persist.Request{Virtual: p.Name, Pool: p.Pool.Name(), Client: x.h.client.Addr(), HTTP: reqView{x.req}},
				sets, persist.Target{Pool: m.PoolName(), Member: m.Addr()}, time.Now())
		}
	}
}

// forwardResponse sends the response head and body to the client, then
// parks the server connection for reuse or closes it.
func (x *exchange) forwardResponse() bool {
	h, p, req, resp, sc := x.h, x.p, x.req, x.resp, x.sc
	m := x.ch.member
	x.status = resp.Status
	// After an early answer the rest of the client's body is unread: the
	// connection cannot carry another request.
	keepClient := !req.Close && !resp.Body.UntilClose && !x.early
	h.linger = x.early
	stripHopByHop(&resp.Header, false)
	if !keepClient {
		resp.Header.Set("Connection", "close")
	} else if req.Proto == "HTTP/1.0" {
		resp.Header.Set("Connection", "keep-alive")
	}
	if err := resp.WriteHead(h.bw); err != nil {
		// Refused by the writer (a field it cannot write safely): the
		// member's response, not the client's fault.
		x.discardServer()
		m.AddError()
		p.Stats.Errors.Add(1)
		x.term = termMemberHead
		x.writeErrorOnce(502, "the pool member sent a response that cannot be forwarded")
		return false
	}
	if !resp.Body.NoBody {
		if resp.Body.Chunked || resp.Body.UntilClose || int64(sc.br.Buffered()) < resp.Body.ContentLength {
			// More reads to come: a long download runs under the idle
			// timeout (renewed while it moves), not the response timeout.
			h.armIdle(sc.conn, &sc.idleArmed)
		}
		_, err := h.copyBody(h.bw, sc.br, resp.Body, h.c, sc.conn, sc, func(n int64) {
			m.AddBytes(0, n)
			h.e.AddOut(n)
			p.Stats.BytesOut.Add(uint64(n))
		})
		sc.idleArmed.Store(false)
		if err != nil {
			// Mid-body failure: neither side can be reused.
			h.bw.Flush()
			x.discardServer()
			if isWriteError(err) {
				p.Stats.ClientErrors.Add(1)
				x.term = termClientGone
			} else {
				m.AddError()
				p.Stats.Errors.Add(1)
				x.term = termMemberData
				if isTimeout(err) {
					x.term = termMemberDataTO
				}
				p.Log.Debug("response body from member failed", "virtual", p.Name, "member", m.String(), "err", shortErr(err))
			}
			return false
		}
	}
	// The server side is done: park its connection and free the member's
	// slot before the last bytes reach the client, so the client's next
	// request already sees both.
	h.setCur(nil)
	if p.HTTP.OneConnect && !x.early && !resp.Close && !resp.Body.UntilClose && sc.br.Buffered() == 0 {
		// Its read deadline is renewed before its next use.
		h.l.idle.put(sc, p.HTTP.MaxIdlePerMember, p.HTTP.ServerIdleTimeout, time.Now())
	} else {
		sc.close()
	}
	x.sc = nil
	x.lease.release()
	if err := h.bw.Flush(); err != nil {
		p.Stats.ClientErrors.Add(1)
		x.term = termClientGone
		return false
	}
	return keepClient
}

// discardServer closes the server connection (out of sync, never reused).
func (x *exchange) discardServer() {
	if x.sc != nil {
		x.sc.close()
		x.h.setCur(nil)
		x.sc = nil
	}
}

// clientFailed ends an exchange the client broke while sending its body:
// it is answered if it can still read, counted as a client error, and the
// member is not charged.
func (x *exchange) clientFailed(err error) {
	p := x.p
	p.Stats.ClientErrors.Add(1)
	x.term = termClientBody
	switch {
	case isWriteError(err):
		p.reject("client_gone")
		x.term = termClientGone
	case isTimeout(err):
		p.reject("client_timeout")
		x.term = termClientTimeout
		x.writeErrorOnce(408, "the request body stalled")
	case h1.StatusOf(err) != 0:
		p.reject("bad_request_body")
		x.writeErrorOnce(400, "malformed request body: "+reasonOf(err))
	default:
		// EOF or reset mid-body: the client left; there is nobody to answer.
		p.reject("client_aborted")
	}
	p.Log.Debug("client broke its request", "virtual", p.Name, "client", x.h.client, "err", shortErr(err))
}

// memberFailed ends an exchange the member broke: 504 on a timeout, 502
// otherwise, charged to the member (passive health, error counters).
// staleOnly marks a reused connection closed by the member between
// requests, retried until the attempts ran out: a normal race of keep-alive,
// not a health signal.
func (x *exchange) memberFailed(err error, staleOnly bool) {
	p, m := x.p, x.ch.member
	p.Stats.Errors.Add(1)
	m.AddError()
	if isTimeout(err) {
		m.ReportFailure("response timeout")
		x.term = termMemberTimeout
		x.fail(504, "the pool member did not answer in time", termMemberTimeout)
		return
	}
	if !staleOnly {
		m.ReportFailure("response: " + shortErr(err))
	}
	p.Log.Debug("member sent no valid response", "virtual", p.Name, "member", m.String(), "err", shortErr(err))
	x.fail(502, "the pool member sent no valid response", termMemberHead)
}

// fail answers the client with an error status and records the termination.
func (x *exchange) fail(status int, msg, term string) {
	x.term = term
	x.writeErrorOnce(status, msg)
}

func (x *exchange) writeErrorOnce(status int, msg string) {
	if x.status != 0 {
		return
	}
	x.status = status
	// A body not read to its end is still on its way: drain it before the
	// close, or the reset may destroy this answer.
	x.h.linger = x.hasBody && !x.bodyDone
	x.h.writeError(status, msg)
}

// readResponse reads the final response head, forwarding interim 1xx
// responses (except 101) to the client (not to HTTP/1.0 clients, which do
// not know them, RFC 9110 §15.2).
func (h *httpConn) readResponse(sc *serverConn, req *h1.Request) (*h1.Response, error) {
	lim := h1.Limits{MaxHeaderBytes: h.p.HTTP.MaxHeaderBytes, MaxHeaders: h.p.HTTP.MaxHeaders}
	for {
		resp, err := h1.ReadResponse(sc.br, lim, req.Method)
		if err != nil {
			return nil, err
		}
		if resp.Status >= 100 && resp.Status < 200 && resp.Status != 101 {
			if req.Proto == "HTTP/1.0" || req.Expect100 && resp.Status == 100 {
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
func (h *httpConn) tunnel(sc *serverConn, resp *h1.Response, req *h1.Request) bool {
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
	h.c.SetReadDeadline(time.Time{})
	sc.conn.SetReadDeadline(time.Time{})
	if h.mir != nil && sc.raw != nil {
		h.tunnelMirrored(sc)
		return false
	}
	h.l.proxyStreams(h.p, h.e, h.c, sc.conn, func(int64, int64) {})
	return false
}

// tunnelMirrored relays an upgraded connection of a mirrored virtual as a
// mirrored TCP connection: what the client sent after its request goes to
// the member first; then the tunnel is mirrored from where it is (the
// relay's first re-mirror check, at once) and relayed through the write
// gate.
func (h *httpConn) tunnelMirrored(sc *serverConn) {
	// From here it is a tcp connection: a planned handover moves it as
	// one, and a quiescence does not wait for it.
	h.l.untrackHTTP(h)
	if n := len(h.pre.pending); n > 0 {
		b := h.pre.pending
		h.pre.pending = nil
		if _, err := sc.conn.Write(b); err != nil {
			return
		}
		h.countIn(int64(n))
	}
	m := sc.member
	member := func(in, out int64) { m.AddBytes(in, out) }
	h.l.proxyMirrored(h.p, h.e, h.pre.TCPConn, sc.raw, member, nil, &h.tunnelGuard, [2][]byte{}, memberRef{m.PoolName(), m.Addr()})
}

// isStale reports errors that mean "the server closed this idle connection".
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// reasonOf is what an error says to a client: the parser's reason without
// the package prefix, or nothing internal.
func reasonOf(err error) string {
	var e *h1.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "invalid message"
}

// log writes the access-log record of the exchange (see docs/management.md
// for the fields and the termination states).
func (x *exchange) log() {
	h := x.h
	if h.p.AccessLog == nil {
		return
	}
	end := time.Now()
	ms := func(d time.Duration) float64 {
		if d < 0 {
			return -1
		}
		return float64(d.Microseconds()) / 1000
	}
	h.p.AccessLog.Info("request",
		"virtual", h.p.Name, "client", h.client.String(), "method", x.req.Method, "target", x.req.Target,
		"host", x.req.Host, "status", x.status, "member", x.member,
		"bytes_in", x.bodyIn, "bytes_out", int64(h.e.BytesOut()-x.outStart),
		"t_request_ms", ms(x.start.Sub(x.headStart)), "t_connect_ms", ms(x.tConnect),
		"t_response_ms", ms(x.tResponse), "t_total_ms", ms(end.Sub(x.headStart)),
		"termination", x.term)
}
