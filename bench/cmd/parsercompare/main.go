// Command parsercompare sends the same raw HTTP/1.x requests to Fulcrum and
// to HAProxy, each in front of its own small backend on loopback, and prints
// a Markdown table of what each proxy answered and what its backend
// received. docs/security.md holds its output; re-run it after changing
// internal/h1 or virtual/exchange.go:
//
//	go build -o /tmp/fulcrum ./cmd/fulcrum
//	go run ./bench/cmd/parsercompare -fulcrum /tmp/fulcrum -haproxy haproxy
//
// It starts both proxies itself with generated configurations (ports picked
// on 127.0.0.1), waits for them, runs every case once against each, stops
// them and prints the table on stdout (with -raw, also the exact bytes each
// backend received). It only ever dials 127.0.0.1, and every wait is bounded.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A case is one raw input. show, when set, replaces the escaped bytes in
// the table (for inputs too long to print).
type tcase struct {
	name string
	raw  string
	show string
}

func cases() []tcase {
	const host = "Host: a\r\n"
	big := strings.Repeat("a", 40<<10)
	var many80, many120 strings.Builder
	for i := 0; i < 120; i++ {
		fmt.Fprintf(&many120, "X-H%d: v\r\n", i)
		if i < 80 {
			fmt.Fprintf(&many80, "X-H%d: v\r\n", i)
		}
	}
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	return []tcase{
		{name: "baseline GET (control)", raw: "GET / HTTP/1.1\r\n" + host + "\r\n"},
		{name: "CL + TE (CL.TE smuggling)", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"},
		{name: "TE + CL (TE.CL smuggling)", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"},
		{name: "two Content-Length, different", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{name: "two Content-Length, equal", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "Content-Length list \"5, 6\"", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 6\r\n\r\nhello!"},
		{name: "Content-Length with sign \"+5\"", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\nhello"},
		{name: "Content-Length negative \"-1\"", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n"},
		{name: "Content-Length hex \"0x5\"", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0x5\r\n\r\nhello"},
		{name: "Content-Length with inner space \"5 5\"", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5 5\r\n\r\nhello"},
		{name: "Content-Length line with leading space", raw: "POST / HTTP/1.1\r\n" + host + " Content-Length: 5\r\n\r\nhello"},
		{name: "Content-Length overflow (20 digits)", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999\r\n\r\nhello"},
		{name: "TE chunked via obs-fold", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
		{name: "TE \"chunked, identity\"", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
		{name: "TE \"xchunked\"", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
		{name: "TE \"Chunked\" (case)", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{name: "TE chunked in HTTP/1.0 (smuggled request in the chunk)", raw: "POST / HTTP/1.0\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{name: "TE chunked twice", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{name: "bare LF line endings (head)", raw: "GET / HTTP/1.1\nHost: a\n\n"},
		{name: "CR without LF in head", raw: "GET / HTTP/1.1\rHost: a\r\n\r\n"},
		{name: "space before colon (TE)", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{name: "obs-fold in an ordinary header", raw: "GET / HTTP/1.1\r\n" + host + "X-A: b\r\n c\r\n\r\n"},
		{name: "invalid character in header name", raw: "GET / HTTP/1.1\r\n" + host + "X@A: b\r\n\r\n"},
		{name: "empty lines before the request line", raw: "\r\n\r\nGET / HTTP/1.1\r\n" + host + "\r\n"},
		{name: "HTTP/0.9 request line", raw: "GET /\r\n\r\n"},
		{name: "NUL in header value", raw: "GET / HTTP/1.1\r\n" + host + "X-A: b\x00c\r\n\r\n"},
		{name: "HTTP/1.1 without Host", raw: "GET / HTTP/1.1\r\n\r\n"},
		{name: "HTTP/1.0 without Host", raw: "GET / HTTP/1.0\r\n\r\n"},
		{name: "two Host headers, different", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
		{name: "Host with userinfo", raw: "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"},
		{name: "Host with comma", raw: "GET / HTTP/1.1\r\nHost: a,b\r\n\r\n"},
		{name: "absolute-form, conflicting Host", raw: "GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n"},
		{name: "absolute-form with userinfo", raw: "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n"},
		{name: "invalid method token", raw: "G<T / HTTP/1.1\r\n" + host + "\r\n"},
		{name: "space in target", raw: "GET /a b HTTP/1.1\r\n" + host + "\r\n"},
		{name: "fragment in target", raw: "GET /a#f HTTP/1.1\r\n" + host + "\r\n"},
		{name: "request line with tabs", raw: "GET\t/\tHTTP/1.1\r\n" + host + "\r\n"},
		{name: "two spaces in request line", raw: "GET  / HTTP/1.1\r\n" + host + "\r\n"},
		{name: "version HTTP/2.0", raw: "GET / HTTP/2.0\r\n" + host + "\r\n"},
		{name: "version HTTP/1.2", raw: "GET / HTTP/1.2\r\n" + host + "\r\n"},
		{name: "version lowercase http/1.1", raw: "GET / http/1.1\r\n" + host + "\r\n"},
		{name: "chunk size overflow", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk extension ended by bare LF", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;a=b\nhello\r\n0\r\n\r\n"},
		{name: "chunk size line ended by bare LF", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"},
		{name: "chunk data not followed by CRLF", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"},
		{name: "header of 20 KiB", raw: "GET / HTTP/1.1\r\n" + host + "X-Big: " + big[:20<<10] + "\r\n\r\n", show: `GET / HTTP/1.1\r\nHost: a\r\nX-Big: "a"×20480\r\n\r\n`},
		{name: "header of 40 KiB", raw: "GET / HTTP/1.1\r\n" + host + "X-Big: " + big + "\r\n\r\n", show: `GET / HTTP/1.1\r\nHost: a\r\nX-Big: "a"×40960\r\n\r\n`},
		{name: "80 header fields", raw: "GET / HTTP/1.1\r\n" + host + many80.String() + "\r\n", show: `GET / HTTP/1.1\r\nHost: a\r\nX-H0: v\r\n…×80\r\n\r\n`},
		{name: "120 header fields", raw: "GET / HTTP/1.1\r\n" + host + many120.String() + "\r\n", show: `GET / HTTP/1.1\r\nHost: a\r\nX-H0: v\r\n…×120\r\n\r\n`},
		{name: "Connection: Content-Length", raw: "POST / HTTP/1.1\r\n" + host + "Connection: Content-Length\r\nContent-Length: " + strconv.Itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{name: "Connection: Transfer-Encoding", raw: "POST / HTTP/1.1\r\n" + host + "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{name: "Connection: Host", raw: "GET / HTTP/1.1\r\n" + host + "Connection: Host\r\n\r\n"},
		{name: "Expect: 100-continue on HTTP/1.0", raw: "POST / HTTP/1.0\r\n" + host + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "Expect: 100-continue on HTTP/1.1", raw: "POST / HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"},
	}
}

// recorder is a backend: an HTTP server whose connections record every byte
// they read, and which notes each request it parsed.
type recorder struct {
	mu   sync.Mutex
	raw  bytes.Buffer
	reqs []string
}

func (r *recorder) reset() (raw []byte, reqs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	raw = append([]byte(nil), r.raw.Bytes()...)
	reqs = r.reqs
	r.raw.Reset()
	r.reqs = nil
	return raw, reqs
}

type recConn struct {
	net.Conn
	r *recorder
}

func (c recConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.r.mu.Lock()
		if c.r.raw.Len() < 1<<20 { // bounded: a case never needs more
			c.r.raw.Write(b[:n])
		}
		c.r.mu.Unlock()
	}
	return n, err
}

type recListener struct {
	net.Listener
	r *recorder
}

func (l recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return recConn{c, l.r}, nil
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, q *http.Request) {
	n, _ := io.Copy(io.Discard, io.LimitReader(q.Body, 1<<20))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s Host=%q", q.Method, q.RequestURI, q.Host)
	if te := q.TransferEncoding; len(te) > 0 {
		fmt.Fprintf(&b, " TE=%s", strings.Join(te, ","))
	} else if cl := q.Header.Get("Content-Length"); cl != "" {
		fmt.Fprintf(&b, " CL=%s", cl)
	}
	if n > 0 {
		fmt.Fprintf(&b, " body=%d", n)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, b.String())
	r.mu.Unlock()
	w.Header().Set("Content-Length", "2")
	io.WriteString(w, "ok")
}

func startBackend(addr string) (*recorder, *http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	r := &recorder{}
	s := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
	go s.Serve(recListener{ln, r})
	return r, s, nil
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// mustLoopback refuses to dial anything but 127.0.0.0/8.
func mustLoopback(addr string) {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil || !ip.IsLoopback() {
		panic("parsercompare: refusing to dial non-loopback address " + addr)
	}
}

// waitPort waits (bounded) until addr accepts connections.
func waitPort(addr string, d time.Duration) error {
	mustLoopback(addr)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not accept connections within %s", addr, d)
}

var (
	statusRE = regexp.MustCompile(`HTTP/1\.[01] (\d{3})`)
	// reasonRE finds the reason in a plain-text error body such as
	// Fulcrum's "400 Bad Request: obs-fold or leading whitespace in header line".
	reasonRE = regexp.MustCompile(`(?m)^\d{3} [A-Za-z ]+: (.+)$`)
)

// outcome is what a client saw.
type outcome struct {
	statuses []string
	reason   string // the reason in a plain-text error body, if any
	closed   bool   // the proxy closed the connection (EOF or reset)
	reset    bool
	n        int
}

func (o outcome) String() string {
	var b strings.Builder
	if len(o.statuses) == 0 {
		b.WriteString("no response")
	} else {
		b.WriteString(strings.Join(o.statuses, " + "))
	}
	if o.reason != "" {
		fmt.Fprintf(&b, " (%s)", o.reason)
	}
	switch {
	case o.reset:
		b.WriteString(", reset")
	case o.closed:
		b.WriteString(", closed")
	default:
		b.WriteString(", kept open")
	}
	return b.String()
}

// send writes raw to addr and reads until the proxy closes or has been quiet
// for quiet (the whole exchange is cut at total).
func send(addr, raw string, quiet, total time.Duration) (outcome, error) {
	mustLoopback(addr)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return outcome{}, err
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(total))
	if _, err := io.WriteString(c, raw); err != nil {
		// A proxy may refuse before reading everything; read what it said.
		_ = err
	}
	var buf bytes.Buffer
	var o outcome
	end := time.Now().Add(total)
	chunk := make([]byte, 64<<10)
	for {
		dl := time.Now().Add(quiet)
		if dl.After(end) {
			dl = end
		}
		c.SetReadDeadline(dl)
		n, err := c.Read(chunk)
		if buf.Len() < 1<<20 {
			buf.Write(chunk[:n])
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
			case errors.Is(err, io.EOF):
				o.closed = true
			default:
				o.closed, o.reset = true, true
			}
			break
		}
		if time.Now().After(end) {
			break
		}
	}
	for _, m := range statusRE.FindAllSubmatch(buf.Bytes(), -1) {
		o.statuses = append(o.statuses, string(m[1]))
	}
	if m := reasonRE.FindSubmatch(buf.Bytes()); m != nil {
		o.reason = strings.TrimSpace(string(m[1]))
	}
	o.n = buf.Len()
	return o, nil
}

// escape renders raw bytes for a table cell, cut at max runes.
func escape(s string, max int) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	q = strings.ReplaceAll(q, `\"`, `"`)
	if len(q) > max {
		q = q[:max] + "…"
	}
	return q
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func backendSummary(raw []byte, reqs []string) string {
	if len(raw) == 0 {
		return "nothing"
	}
	if len(reqs) == 0 {
		return fmt.Sprintf("%d bytes, no request parsed", len(raw))
	}
	return strings.Join(reqs, "; ")
}

const haproxyCfg = `global
    maxconn 200
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-request 5s
    timeout http-keep-alive 5s
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server b1 127.0.0.1:%d
`

const fulcrumCfg = `management:
  address: 127.0.0.1:%d
log:
  level: info
  access_log: stderr
pools:
  web:
    members:
      - address: 127.0.0.1:%d
virtuals:
  vs:
    type: http
    destination: 127.0.0.1:%d
    pool: web
`

type proxy struct {
	name    string
	addr    string
	rec     *recorder
	cmd     *exec.Cmd
	backend *http.Server
}

func main() {
	fulcrumBin := flag.String("fulcrum", "/tmp/fulcrum", "fulcrum binary")
	label := flag.String("label", "", "what the table calls the Fulcrum build (default: the binary's path)")
	haproxyBin := flag.String("haproxy", "haproxy", "haproxy binary (2.6 for the published table)")
	raw := flag.Bool("raw", false, "after the table, print the exact bytes each backend received")
	aborts := flag.Int("aborts", 10, "uploads to abort after the table, to show where Fulcrum charges them (0-1000)")
	quiet := flag.Duration("quiet", 600*time.Millisecond, "a response is complete once the proxy has been quiet this long")
	flag.Parse()
	if *aborts < 0 || *aborts > 1000 {
		fatal(fmt.Errorf("-aborts %d: want 0 to 1000", *aborts))
	}

	dir, err := os.MkdirTemp("", "parsercompare")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)

	var ports [5]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			fatal(err)
		}
	}
	fPort, fBack, fMgmt, hPort, hBack := ports[0], ports[1], ports[2], ports[3], ports[4]

	// Every process and backend started here is stopped on every exit path.
	var proxies []*proxy
	stop := func() {
		for _, p := range proxies {
			p.cmd.Process.Kill() // only the processes this program started
			p.cmd.Wait()
			p.backend.Close()
		}
		proxies = nil
	}
	defer stop()
	fatal := func(err error) {
		stop()
		os.RemoveAll(dir)
		fatal(err)
	}

	mk := func(name, bin string, port, back int, cfgText string, args func(path string) []string) *proxy {
		rec, srv, err := startBackend(fmt.Sprintf("127.0.0.1:%d", back))
		if err != nil {
			fatal(err)
		}
		path := filepath.Join(dir, name+".cfg")
		if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
			fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			fatal(err)
		}
		cmd := exec.Command(bin, args(path)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			srv.Close()
			fatal(fmt.Errorf("starting %s: %w", name, err))
		}
		p := &proxy{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), rec: rec, cmd: cmd, backend: srv}
		proxies = append(proxies, p)
		if err := waitPort(p.addr, 10*time.Second); err != nil {
			b, _ := os.ReadFile(logf.Name())
			fatal(fmt.Errorf("%s: %w\n%s", name, err, b))
		}
		return p
	}
	fp := mk("fulcrum", *fulcrumBin, fPort, fBack, fmt.Sprintf(fulcrumCfg, fMgmt, fBack, fPort),
		func(path string) []string { return []string{"run", "-c", path} })
	mk("haproxy", *haproxyBin, hPort, hBack, fmt.Sprintf(haproxyCfg, hPort, hBack),
		func(path string) []string { return []string{"-db", "-f", path} })
	time.Sleep(300 * time.Millisecond) // the member's first health state settles

	version := "haproxy"
	if out, err := exec.Command(*haproxyBin, "-v").Output(); err == nil {
		version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	if *label == "" {
		*label = *fulcrumBin
	}
	fmt.Printf("Measured %s UTC against Fulcrum (%s) and %s, each with default settings in front of its own backend (Go net/http) on 127.0.0.1.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), *label, version)
	fmt.Println("| # | Input | Raw bytes | Fulcrum | Fulcrum's backend got | HAProxy 2.6 | HAProxy's backend got |")
	fmt.Println("|---|---|---|---|---|---|---|")
	type rawRec struct{ name, f, h string }
	var raws []rawRec
	for i, tc := range cases() {
		row := []string{strconv.Itoa(i + 1), tc.name}
		show := tc.show
		if show == "" {
			show = escape(tc.raw, 90)
		}
		row = append(row, "`"+show+"`")
		rr := rawRec{name: tc.name}
		for _, p := range proxies {
			p.rec.reset()
			o, err := send(p.addr, tc.raw, *quiet, 4*time.Second)
			time.Sleep(150 * time.Millisecond) // let the backend finish reading
			braw, reqs := p.rec.reset()
			res := o.String()
			if len(braw) > 0 && len(reqs) == 0 && len(o.statuses) > 0 {
				// The proxy forwarded the input and the status is the
				// backend's refusal, not the proxy's.
				res = strings.Replace(res, o.statuses[len(o.statuses)-1], o.statuses[len(o.statuses)-1]+" from the backend", 1)
			}
			if err != nil {
				res = "error: " + err.Error()
			}
			row = append(row, res, backendSummary(braw, reqs))
			if p == fp {
				rr.f = string(braw)
			} else {
				rr.h = string(braw)
			}
		}
		for j := range row {
			row[j] = cell(row[j])
		}
		fmt.Println("| " + strings.Join(row, " | ") + " |")
		raws = append(raws, rr)
	}
	// Client faults after the head was accepted: uploads announced with
	// Content-Length 100000 whose client hangs up after 5 bytes (issue 7,
	// item 3: five of them used to take a healthy member out).
	for i := 0; i < *aborts; i++ {
		mustLoopback(fp.addr)
		c, err := net.DialTimeout("tcp", fp.addr, time.Second)
		if err != nil {
			fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nhello")
		time.Sleep(100 * time.Millisecond) // the head reaches the member first
		c.Close()
	}
	time.Sleep(300 * time.Millisecond)

	// Where Fulcrum charged what it refused: the virtual's rejected
	// reasons, never the member (its error and passive-failure counters).
	mgmt := fmt.Sprintf("127.0.0.1:%d", fMgmt)
	mustLoopback(mgmt)
	hc := &http.Client{Timeout: 3 * time.Second}
	if resp, err := hc.Get("http://" + mgmt + "/metrics"); err == nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		fmt.Printf("\nFulcrum's counters after the run and %d aborted uploads (`Content-Length: 100000`, 5 bytes sent, then close) (`/metrics`):\n\n```\n", *aborts)
		for _, l := range strings.Split(string(b), "\n") {
			for _, m := range []string{"fulcrum_virtual_rejected_total{", "fulcrum_virtual_errors_total{", "fulcrum_virtual_client_errors_total{", "fulcrum_virtual_requests_total{",
				"fulcrum_member_errors_total{", "fulcrum_member_passive_failures_total{", "fulcrum_member_up{"} {
				if strings.HasPrefix(l, m) {
					fmt.Println(l)
				}
			}
		}
		fmt.Println("```")
	} else {
		fmt.Fprintln(os.Stderr, "parsercompare: reading Fulcrum's metrics:", err)
	}
	if *raw {
		fmt.Println()
		for _, r := range raws {
			fmt.Printf("%s\n  fulcrum backend: %s\n  haproxy backend: %s\n", r.name, escape(r.f, 600), escape(r.h, 600))
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "parsercompare:", err)
	os.Exit(1)
}
