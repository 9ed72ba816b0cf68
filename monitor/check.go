package monitor

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Check runs one probe of spec against the member at addr now and returns
// nil when the probe says "up", or an error whose text explains why not
// (it becomes the member's down reason). spec.Destination is applied to
// addr, and the attempt is bounded by spec.AttemptTimeout() in addition to
// any deadline ctx carries. Check is safe for concurrent use.
//
// Per type:
//
//   - tcp: connect; write Send if set; if Receive is set, read until it
//     matches, the peer closes, 64 KiB arrived or the deadline passes.
//   - http, https: write the raw request (Send, or a default GET), read the
//     response (until 64 KiB, EOF, the end of a Content-Length or chunked
//     body, or as soon as the verdict is known), check the status code
//     against Status and the whole response against Receive. https uses
//     TLS without certificate verification (the F5 default: a monitor
//     checks liveness, not identity) and sends ServerName as SNI when set.
//   - udp: see checkUDP.
//
// With Reverse, a Receive match means down and a response without a match
// means up; no response at all is down either way (as on F5).
func Check(ctx context.Context, spec Spec, addr netip.AddrPort) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("invalid monitor: %w", err)
	}
	dst, err := ResolveDestination(spec.Destination, addr)
	if err != nil {
		return err
	}
	if !dst.Addr().IsValid() || dst.Port() == 0 {
		return fmt.Errorf("no address to probe (member %v, destination %q)", addr, spec.Destination)
	}
	p := &prober{spec: &spec, dst: dst, limit: spec.AttemptTimeout()}
	ctx, cancel := context.WithTimeout(ctx, p.limit)
	defer cancel()
	switch spec.Type {
	case TypeTCP:
		return p.checkTCP(ctx)
	case TypeHTTP:
		return p.checkHTTP(ctx, false)
	case TypeHTTPS:
		return p.checkHTTP(ctx, true)
	default: // TypeUDP; Validate rejected anything else
		return p.checkUDP(ctx)
	}
}

// prober carries one attempt's parameters.
type prober struct {
	spec  *Spec
	dst   netip.AddrPort
	limit time.Duration // attempt timeout, for messages
}

// dial connects to the destination and ties the connection's I/O deadline
// to ctx, so both the attempt deadline and a cancellation (Manager.Close,
// reload) interrupt blocked reads and writes. The returned release func must
// be called before the connection is closed.
func (p *prober) dial(ctx context.Context, network string) (net.Conn, func(), error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, p.dst.String())
	if err != nil {
		return nil, nil, p.explain(ctx, "connect", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past wakes every blocked Read/Write at once.
		_ = c.SetDeadline(time.Unix(1, 0))
	})
	return c, func() { stop() }, nil
}

// explain turns an I/O error into a short reason such as
// "connect: connection refused" or "read: timeout after 1s". The syscall
// error stays wrapped so errors.Is(err, syscall.ECONNREFUSED) works.
func (p *prober) explain(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: probe canceled", op)
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return fmt.Errorf("%s: timeout after %v", op, p.limit)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%s: connection closed by server", op)
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return fmt.Errorf("%s: %w", op, se.Err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return fmt.Errorf("%s: %w", op, oe.Err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readResponse reads into a buffer of at most MaxResponse bytes until done
// reports true, the peer closes (err nil), the buffer is full (err nil) or
// a read fails (err set, the bytes so far still returned).
func readResponse(c io.Reader, done func([]byte) bool) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	for len(buf) < MaxResponse {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), MaxResponse-len(buf)))
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), MaxResponse)])
		buf = buf[:len(buf)+n]
		if n > 0 && done(buf) {
			return buf, nil
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// judgeReceive applies Receive and Reverse to what was read. readErr is the
// error that ended reading, if any.
func (p *prober) judgeReceive(ctx context.Context, got []byte, readErr error) error {
	re := p.spec.Receive
	if re == nil {
		return nil
	}
	if re.Match(got) {
		if p.spec.Reverse {
			return fmt.Errorf("receive /%s/ matched (reverse)", re)
		}
		return nil
	}
	if len(got) == 0 {
		if readErr != nil {
			return p.explain(ctx, "read", readErr)
		}
		return errors.New("no response: connection closed by server")
	}
	if p.spec.Reverse {
		return nil
	}
	if readErr != nil {
		return fmt.Errorf("receive /%s/ not matched in %d bytes (%v)", re, len(got), p.explain(ctx, "read", readErr))
	}
	return fmt.Errorf("receive /%s/ not matched", re)
}

func (p *prober) checkTCP(ctx context.Context) error {
	c, release, err := p.dial(ctx, "tcp")
	if err != nil {
		return err
	}
	defer c.Close()
	defer release()
	if p.spec.Send != "" {
		if _, err := io.WriteString(c, p.spec.Send); err != nil {
			return p.explain(ctx, "send", err)
		}
	}
	if p.spec.Receive == nil {
		return nil
	}
	got, err := readResponse(c, p.spec.Receive.Match)
	return p.judgeReceive(ctx, got, err)
}

// defaultRequest is the request sent by an http/https monitor without Send.
// HTTP/1.0 with Connection: close makes the server end the response with
// EOF, so no body framing has to be trusted.
func (p *prober) defaultRequest(tlsOn bool) string {
	host := p.spec.ServerName
	if host == "" {
		host = p.dst.Addr().String()
		if p.dst.Addr().Is6() {
			host = "[" + host + "]"
		}
		if port := p.dst.Port(); !(port == 80 && !tlsOn) && !(port == 443 && tlsOn) {
			host += ":" + strconv.Itoa(int(port))
		}
	}
	return "GET / HTTP/1.0\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
}

func (p *prober) checkHTTP(ctx context.Context, tlsOn bool) error {
	c, release, err := p.dial(ctx, "tcp")
	if err != nil {
		return err
	}
	defer c.Close()
	defer release()
	if tlsOn {
		tc := tls.Client(c, &tls.Config{
			// F5 and HAProxy monitors do not verify server certificates by
			// default: the question is "does the service answer", and
			// members usually present certificates for the virtual's name.
			InsecureSkipVerify: true, //nolint:gosec // deliberate, see above
			ServerName:         p.spec.ServerName,
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			return p.explain(ctx, "tls handshake", err)
		}
		c = tc
	}
	req := p.spec.Send
	if req == "" {
		req = p.defaultRequest(tlsOn)
	}
	if _, err := io.WriteString(c, req); err != nil {
		return p.explain(ctx, "send", err)
	}
	return p.readHTTP(ctx, c, strings.HasPrefix(req, "HEAD "))
}

// readHTTP reads a member's HTTP response from r and judges it: the status
// code against Status, the whole response (first MaxResponse bytes) against
// Receive and Reverse. head says the request was HEAD (no body follows).
// It is the part of the http/https monitor that reads what the member sent,
// kept free of sockets so it can be fuzzed; ctx only shapes messages.
func (p *prober) readHTTP(ctx context.Context, r io.Reader, head bool) error {
	got, readErr := readResponse(r, func(b []byte) bool { return p.httpDecided(b, head) })

	code, ok, perr := parseStatusLine(got)
	if !ok {
		if perr != nil {
			return perr
		}
		if readErr != nil {
			if len(got) == 0 {
				return p.explain(ctx, "read", readErr)
			}
			return fmt.Errorf("incomplete status line (%v)", p.explain(ctx, "read", readErr))
		}
		if len(got) == 0 {
			return errors.New("no response: connection closed by server")
		}
		return fmt.Errorf("incomplete status line %q", truncate(got, 64))
	}
	if len(p.spec.Status) > 0 && !slices.Contains(p.spec.Status, code) {
		return fmt.Errorf("status %d not in %v", code, p.spec.Status)
	}
	return p.judgeReceive(ctx, got, readErr)
}

// httpDecided reports whether enough of the response has arrived to decide,
// so keep-alive servers (a configured HTTP/1.1 Send) do not hold the probe
// until its deadline.
func (p *prober) httpDecided(b []byte, head bool) bool {
	code, ok, err := parseStatusLine(b)
	if err != nil {
		return true
	}
	if !ok {
		return false
	}
	if len(p.spec.Status) > 0 && !slices.Contains(p.spec.Status, code) {
		return true
	}
	re := p.spec.Receive
	if re == nil {
		return true
	}
	if re.Match(b) {
		return true
	}
	// Without a match yet, read on until the message is complete.
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return false
	}
	hdr, body := b[:end+2], b[end+4:]
	if head || code == 204 || code == 304 || (code >= 100 && code < 200) {
		return true
	}
	if v, ok := headerValue(hdr, "Transfer-Encoding"); ok && strings.Contains(strings.ToLower(v), "chunked") {
		// The last-chunk line followed by an empty trailer section.
		return bytes.HasSuffix(body, []byte("0\r\n\r\n"))
	}
	if v, ok := headerValue(hdr, "Content-Length"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		return err == nil && len(body) >= n
	}
	return false // body delimited by EOF
}

// parseStatusLine extracts the status code. ok is false while the line is
// still incomplete; err is set when what arrived cannot be HTTP.
func parseStatusLine(b []byte) (code int, ok bool, err error) {
	line, _, found := bytes.Cut(b, []byte("\n"))
	if !found {
		if len(b) >= 5 && !bytes.HasPrefix(b, []byte("HTTP/")) {
			return 0, false, fmt.Errorf("malformed status line %q", truncate(b, 64))
		}
		return 0, false, nil
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	// HTTP/1.1 200 OK
	if !bytes.HasPrefix(line, []byte("HTTP/")) {
		return 0, false, fmt.Errorf("malformed status line %q", truncate(line, 64))
	}
	// Like net/http, tolerate extra spaces before the code ("HTTP/1.1  200"):
	// a monitor asks whether the service answers, not how strictly.
	_, rest, _ := bytes.Cut(line, []byte(" "))
	rest = bytes.TrimLeft(rest, " ")
	if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return 0, false, fmt.Errorf("malformed status line %q", truncate(line, 64))
	}
	code, cerr := strconv.Atoi(string(rest[:3]))
	if cerr != nil || code < 100 || code > 999 {
		return 0, false, fmt.Errorf("malformed status line %q", truncate(line, 64))
	}
	return code, true, nil
}

// headerValue finds a header in a raw header block (case-insensitive name).
func headerValue(hdr []byte, name string) (string, bool) {
	for _, l := range strings.Split(string(hdr), "\n") {
		k, v, ok := strings.Cut(strings.TrimSuffix(l, "\r"), ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// checkUDP probes a UDP service the way the F5 UDP monitor does. It sends
// Send (or "\n" when empty: a zero-length datagram is not delivered by
// every stack and many services ignore it) on a connected socket, so an
// ICMP port unreachable from the destination surfaces as ECONNREFUSED on
// the next read. Then:
//
//   - with Receive set: a reply matching it before the deadline is up
//     (down with Reverse); replies that never match are down (up with
//     Reverse); no reply at all, or port unreachable, is down.
//   - without Receive: the first reply of any kind is up at once;
//     port unreachable is down; silence until the deadline is UP. UDP has no
//     handshake, so "nothing refused the datagram" is all a receive-less
//     monitor can know. That is F5's documented behaviour too, and it means
//     a host that drops the datagram (firewall, ICMP filtered, host down
//     without an ARP/ND failure) looks healthy: configure Send/Receive for a
//     real check.
func (p *prober) checkUDP(ctx context.Context) error {
	c, release, err := p.dial(ctx, "udp")
	if err != nil {
		return err
	}
	defer c.Close()
	defer release()
	payload := p.spec.Send
	if payload == "" {
		payload = "\n"
	}
	if _, err := io.WriteString(c, payload); err != nil {
		return p.udpError(ctx, "send", err)
	}
	re := p.spec.Receive
	var got []byte
	buf := make([]byte, MaxResponse)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if re == nil {
				return nil
			}
			got = append(got, buf[:n]...)
			if len(got) > MaxResponse {
				got = got[len(got)-MaxResponse:]
			}
			if re.Match(buf[:n]) || re.Match(got) {
				if p.spec.Reverse {
					return fmt.Errorf("receive /%s/ matched (reverse)", re)
				}
				return nil
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return p.explain(ctx, "read", err)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return p.udpError(ctx, "read", err)
		}
		if !isTimeout(err) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return p.explain(ctx, "read", err)
		}
		// Deadline.
		switch {
		case re == nil:
			return nil // no port unreachable: presumed up (see above)
		case len(got) == 0:
			return fmt.Errorf("no reply within %v", p.limit)
		case p.spec.Reverse:
			return nil
		default:
			return fmt.Errorf("receive /%s/ not matched in %d bytes", re, len(got))
		}
	}
}

func (p *prober) udpError(ctx context.Context, op string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: port unreachable (ICMP): %w", op, syscall.ECONNREFUSED)
	}
	return p.explain(ctx, op, err)
}
