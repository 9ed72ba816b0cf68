package engine

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/persist"
)

// nameEcho is a member that says its name on a line, then echoes every
// byte it receives.
func nameEcho(t *testing.T, name string) string {
	t.Helper()
	return backendFunc(t, func(c *net.TCPConn) {
		io.WriteString(c, name+"\n")
		io.Copy(c, c)
	})
}

// persistTCPYAML is a tcp virtual on port over members with persistence
// profile body (YAML under the profile name "p").
func persistTCPYAML(port int, profile string, members ...string) string {
	var b strings.Builder
	b.WriteString("pools:\n  pl:\n    members:\n")
	for _, m := range members {
		fmt.Fprintf(&b, "      - address: %s\n", m)
	}
	fmt.Fprintf(&b, "profiles:\n  persistence:\n    p:\n%s", profile)
	fmt.Fprintf(&b, "virtuals:\n  vs:\n    destination: 127.0.0.1:%d\n    type: tcp\n    pool: pl\n    persistence: p\nmanagement:\n  address: \"off\"\n", port)
	return b.String()
}

// rdpRequest is the TPKT + X.224 Connection Request of an RDP client with
// the given cookie line content ("" for none) and an RDP_NEG_REQ.
func rdpRequest(cookie string) []byte {
	var data []byte
	if cookie != "" {
		data = append(data, "Cookie: "+cookie+"\r\n"...)
	}
	data = append(data, 0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00)
	total := 11 + len(data)
	b := []byte{0x03, 0x00, 0, 0, byte(total - 5), 0xE0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	return append(b, data...)
}

// sendFirst connects to addr, sends first, and returns the member's name
// and the bytes echoed back (which must be first, unchanged).
func sendFirst(t *testing.T, addr string, first []byte) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if len(first) > 0 {
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	name, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no member answered: %v", err)
	}
	echo := make([]byte, len(first))
	if _, err := io.ReadFull(br, echo); err != nil || !bytes.Equal(echo, first) {
		t.Fatalf("the member got %q (%v), want the client's bytes %q unchanged", echo, err, first)
	}
	return strings.TrimSuffix(name, "\n")
}

func virtualStatus(t *testing.T, e *Engine, name string) api.VirtualStatus {
	t.Helper()
	for _, v := range e.Virtuals() {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no virtual %s", name)
	return api.VirtualStatus{}
}

func TestMSRDPPersistence(t *testing.T) {
	members := []string{nameEcho(t, "a"), nameEcho(t, "b"), nameEcho(t, "c")}
	port := freePort(t)
	e := startEngine(t, persistTCPYAML(port, "      type: msrdp\n      peek_timeout: 1500ms\n", members...))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	owner := map[string]string{}
	spread := map[string]bool{}
	for round := range 3 {
		for _, user := range []string{"alice", "bob", "carol", "dave"} {
			got := sendFirst(t, addr, rdpRequest("mstshash="+user))
			if round == 0 {
				owner[user] = got
				spread[got] = true
			} else if got != owner[user] {
				t.Fatalf("round %d: %s went to %s, first to %s", round, user, got, owner[user])
			}
		}
	}
	if len(spread) < 2 {
		t.Fatalf("four users all went to %v: not balanced", spread)
	}
	// The routing token form persists too.
	tok := sendFirst(t, addr, rdpRequest("msts=3640205228.15629.0000"))
	if again := sendFirst(t, addr, rdpRequest("msts=3640205228.15629.0000")); again != tok {
		t.Fatalf("routing token went to %s then %s", tok, again)
	}
	var rec persist.Record
	e.PersistTable().Range(func(r persist.Record) bool {
		if r.Value == "mstshash=alice" {
			rec = r
		}
		return true
	})
	if rec.Type != persist.TypeMSRDP || rec.Virtual != "vs" || rec.Member.String() != map[string]string{"a": members[0], "b": members[1], "c": members[2]}[owner["alice"]] {
		t.Fatalf("alice's record %+v, owner %s", rec, owner["alice"])
	}
	if n := virtualStatus(t, e, "vs").PersistFallbacks; n != 0 {
		t.Fatalf("%d fallbacks with every client sending a cookie", n)
	}

	// No cookie: the source address keys the record (every test client is
	// 127.0.0.1, so they all stick together) and it counts as a fallback.
	plain := sendFirst(t, addr, rdpRequest(""))
	start := time.Now()
	if again := sendFirst(t, addr, []byte("SSH-2.0-OpenSSH_9.6\r\n")); again != plain {
		t.Fatalf("source-address fallback: %s then %s", plain, again)
	}
	// Garbage is recognised as not RDP at once: no wait for the timeout.
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a garbage client waited %v for a member", d)
	}
	if n := virtualStatus(t, e, "vs").PersistFallbacks; n != 2 {
		t.Fatalf("fallbacks %d, want 2", n)
	}

	// A client that sends nothing blocks nobody: while it waits out the
	// peek timeout another client is served at once, and then it is
	// balanced anyway (the member speaks first to it).
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetDeadline(time.Now().Add(5 * time.Second))
	start = time.Now()
	if got := sendFirst(t, addr, rdpRequest("mstshash=alice")); got != owner["alice"] {
		t.Fatalf("alice went to %s while another client was silent", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a silent client held up another for %v", d)
	}
	line, err := bufio.NewReader(silent).ReadString('\n')
	if err != nil || time.Since(start) < time.Second {
		t.Fatalf("silent client: %q %v after %v (want a member after the 1.5s peek timeout)", line, err, time.Since(start))
	}
	if n := virtualStatus(t, e, "vs").PersistFallbacks; n != 3 {
		t.Fatalf("fallbacks %d, want 3", n)
	}
	// No member was charged for any of it.
	for _, pl := range e.Pools() {
		for _, m := range pl.Members {
			if m.Errors != 0 || m.PassiveFailures != 0 || m.Health == "down" {
				t.Fatalf("member %+v charged", m)
			}
		}
	}
}

// tlsHello is a TLS 1.2 ClientHello record (or, with hsType 2, a
// ServerHello) whose session ID is sid.
func tlsHello(hsType byte, sid []byte) []byte {
	body := []byte{hsType, 0, 0, 0, 3, 3}
	body = append(body, make([]byte, 32)...)
	body = append(body, byte(len(sid)))
	body = append(body, sid...)
	body = append(body, 0, 2, 0x00, 0x2f, 1, 0)
	hl := len(body) - 4
	body[1], body[2], body[3] = byte(hl>>16), byte(hl>>8), byte(hl)
	rec := []byte{22, 3, 1, byte(len(body) >> 8), byte(len(body))}
	return append(rec, body...)
}

func TestSSLPersistence(t *testing.T) {
	// Members that answer a ClientHello with a ServerHello assigning a
	// session ID of their own (the first byte names the member), like a
	// TLS 1.2 server with a session cache, then echo.
	var members []string
	for i := range 3 {
		members = append(members, backendFunc(t, func(c *net.TCPConn) {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			hdr := make([]byte, 5)
			if _, err := io.ReadFull(c, hdr); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
			if _, err := io.ReadFull(c, body); err != nil {
				return
			}
			// Only its own sessions resume (the same ID); any other gets a
			// full handshake and a new ID of this member.
			sid := bytes.Repeat([]byte{byte(i + 1)}, 32)
			c.Write(tlsHello(2, sid))
			c.SetReadDeadline(time.Time{})
			io.Copy(c, c)
		}))
	}
	port := freePort(t)
	e := startEngine(t, persistTCPYAML(port, "      type: ssl\n", members...))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	hello := func(sid []byte) (member byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(tlsHello(1, sid))
		sh := make([]byte, len(tlsHello(2, make([]byte, 32))))
		if _, err := io.ReadFull(c, sh); err != nil {
			t.Fatalf("no ServerHello: %v", err)
		}
		if sh[5] != 2 || sh[43] != 32 {
			t.Fatalf("not a ServerHello: %x", sh)
		}
		return sh[44]
	}
	// Fresh sessions (empty session ID) are balanced: round robin over 3.
	var sessions [][]byte
	seen := map[byte]bool{}
	for range 3 {
		m := hello(nil)
		seen[m] = true
		sessions = append(sessions, bytes.Repeat([]byte{m}, 32))
	}
	if len(seen) != 3 {
		t.Fatalf("fresh sessions went to %v", seen)
	}
	if n := virtualStatus(t, e, "vs").PersistFallbacks; n != 3 {
		t.Fatalf("fallbacks %d, want 3 (empty session IDs)", n)
	}
	// Resumptions go back to the member that gave the session its ID (in
	// an order round robin alone would not reproduce).
	for round := range 3 {
		for _, sid := range [][]byte{sessions[1], sessions[0], sessions[0], sessions[2]} {
			if m := hello(sid); m != sid[0] {
				t.Fatalf("round %d: session of member %d resumed on %d", round, sid[0], m)
			}
		}
	}

	// A real crypto/tls handshake passes through unchanged.
	tlsMember := tlsEchoServer(t)
	tport := freePort(t)
	startEngine(t, persistTCPYAML(tport, "      type: ssl\n", tlsMember))
	tc, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tport), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS through an ssl-persistence virtual: %v", err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(tc, "hello\n")
	if line, err := bufio.NewReader(tc).ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo over TLS: %q %v", line, err)
	}
}

// tlsEchoServer is a TLS member that echoes lines.
func tlsEchoServer(t *testing.T) string {
	t.Helper()
	certFile, keyFile := writeCert(t, t.TempDir(), "member.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return backendFunc(t, func(c *net.TCPConn) {
		s := tls.Server(c, cfg)
		s.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(s, s)
	})
}

func TestHashPersistence(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	port := freePort(t)
	e := startEngine(t, fmt.Sprintf(`
pools:
  web:
    members:
      - address: %s
      - address: %s
      - address: %s
profiles:
  persistence:
    by_user:
      type: hash
      key: header:X-User
virtuals:
  vs_web:
    destination: 127.0.0.1:%d
    type: http
    pool: web
    persistence: by_user
management:
  address: "off"
`, a.addr, b.addr, c.addr, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	cl := httpClient(false)
	addrOf := map[string]string{"a": a.addr, "b": b.addr, "c": c.addr}
	users := make([]string, 30)
	owner := map[string]string{}
	spread := map[string]int{}
	for i := range users {
		users[i] = fmt.Sprint("user", i)
		got, _ := get(t, cl, url, "X-User", users[i])
		owner[users[i]] = got
		spread[got]++
		for range 2 {
			if again, _ := get(t, cl, url, "X-User", users[i]); again != got {
				t.Fatalf("%s went to %s then %s", users[i], got, again)
			}
		}
	}
	if len(spread) != 3 {
		t.Fatalf("30 users hashed onto %v", spread)
	}
	if e.PersistTable().Len() != 0 {
		t.Fatalf("hash persistence stored %d records", e.PersistTable().Len())
	}
	// The engine's choice is the rendezvous order of the member addresses,
	// as any other device would compute it.
	prof, err := persist.NewProfile(persist.ProfileConfig{Name: "by_user", Type: persist.TypeHash, Key: "header:X-User"})
	if err != nil {
		t.Fatal(err)
	}
	addrs := []netip.AddrPort{netip.MustParseAddrPort(a.addr), netip.MustParseAddrPort(b.addr), netip.MustParseAddrPort(c.addr)}
	for _, u := range users[:5] {
		order, _ := prof.HashRank(&persist.Request{HTTP: headerOnly{"X-User", u}}, addrs)
		if addrs[order[0]].String() != addrOf[owner[u]] {
			t.Fatalf("%s: engine chose %s, rendezvous order says %s", u, owner[u], addrs[order[0]])
		}
	}

	// Member b down: only b's users move; back up: exactly they return.
	if err := e.SetMemberState("web", b.addr, "forced-offline"); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		got, _ := get(t, cl, url, "X-User", u)
		switch {
		case owner[u] == "b" && got == "b":
			t.Fatalf("%s still on the offline member", u)
		case owner[u] != "b" && got != owner[u]:
			t.Fatalf("%s moved from %s to %s though %s is up", u, owner[u], got, owner[u])
		}
	}
	if err := e.SetMemberState("web", b.addr, "enabled"); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if got, _ := get(t, cl, url, "X-User", u); got != owner[u] {
			t.Fatalf("%s on %s after b came back, want %s", u, got, owner[u])
		}
	}
	// Without the header: balanced normally, never an error.
	if _, resp := get(t, cl, url); resp.StatusCode != 200 {
		t.Fatalf("no key: status %d", resp.StatusCode)
	}
}

type headerOnly [2]string

func (h headerOnly) Header(name string) (string, bool) {
	if strings.EqualFold(name, h[0]) {
		return h[1], true
	}
	return "", false
}
func (headerOnly) Cookie(string) (string, bool) { return "", false }
func (headerOnly) Path() string                 { return "/" }
func (headerOnly) Query(string) (string, bool)  { return "", false }

func TestDestAddrPersistence(t *testing.T) {
	members := []string{nameEcho(t, "a"), nameEcho(t, "b"), nameEcho(t, "c"), nameEcho(t, "d")}
	port := freePort(t)
	var b strings.Builder
	b.WriteString("pools:\n  pl:\n    members:\n")
	for _, m := range members {
		fmt.Fprintf(&b, "      - address: %s\n", m)
	}
	b.WriteString("profiles:\n  persistence:\n    dst:\n      type: dest_addr\nvirtuals:\n")
	// Two virtuals on two loopback addresses, one record per address
	// shared across them (F5 destination affinity on a cache pool).
	for i, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		fmt.Fprintf(&b, "  vs%d:\n    destination: %s:%d\n    type: tcp\n    pool: pl\n    persistence: dst\n", i, ip, port)
	}
	b.WriteString("management:\n  address: \"off\"\n")
	e := startEngine(t, b.String())
	first := map[string]string{}
	for round := range 4 {
		for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
			got := sendFirst(t, fmt.Sprintf("%s:%d", ip, port), []byte("x"))
			if round == 0 {
				first[ip] = got
			} else if got != first[ip] {
				t.Fatalf("round %d: %s went to %s, first to %s", round, ip, got, first[ip])
			}
		}
	}
	if first["127.0.0.2"] == first["127.0.0.3"] {
		t.Fatalf("both destinations on %s: round robin should have split them", first["127.0.0.2"])
	}
	values := map[string]bool{}
	e.PersistTable().Range(func(r persist.Record) bool {
		if r.Type == persist.TypeDestAddr {
			values[r.Value] = true
		}
		return true
	})
	if len(values) != 2 || !values["127.0.0.2"] || !values["127.0.0.3"] {
		t.Fatalf("records %v", values)
	}
}

func TestSIPPersistence(t *testing.T) {
	u := []string{udpEcho(t, "a"), udpEcho(t, "b"), udpEcho(t, "c")}
	port := freeUDPPort(t)
	e := startEngine(t, fmt.Sprintf(`
pools:
  sip:
    members:
      - address: %s
      - address: %s
      - address: %s
profiles:
  persistence:
    callid:
      type: sip
virtuals:
  vs_sip:
    destination: 127.0.0.1:%d
    type: udp
    pool: sip
    persistence: callid
management:
  address: "off"
`, u[0], u[1], u[2], port))
	msg := func(method, callID string) string {
		return method + " sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nCall-ID: " + callID + "\r\nCSeq: 1 " + method + "\r\n\r\n"
	}
	dial := func() net.Conn {
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	send := func(c net.Conn, d string) string {
		t.Helper()
		if _, err := io.WriteString(c, d); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		who, rest, _ := strings.Cut(string(buf[:n]), ":")
		if rest != d {
			t.Fatalf("the member got %q, want %q", rest, d)
		}
		return who
	}
	// One client, several calls: each call's datagrams go to its member,
	// calls are spread (round robin picks each new call's member).
	c1 := dial()
	owner := map[string]string{}
	spread := map[string]bool{}
	for _, call := range []string{"call-1@x", "call-2@x", "call-3@x"} {
		owner[call] = send(c1, msg("INVITE", call))
		spread[owner[call]] = true
	}
	if len(spread) != 3 {
		t.Fatalf("three calls went to %v", spread)
	}
	for _, call := range []string{"call-2@x", "call-1@x", "call-3@x", "call-1@x"} {
		if got := send(c1, msg("ACK", call)); got != owner[call] {
			t.Fatalf("%s: ACK went to %s, INVITE to %s", call, got, owner[call])
		}
	}
	// Another client (another source port) continuing call-2 reaches the
	// same member: the Call-ID, not the address, is the key.
	c2 := dial()
	if got := send(c2, msg("BYE", "call-2@x")); got != owner["call-2@x"] {
		t.Fatalf("BYE from another port went to %s, want %s", got, owner["call-2@x"])
	}
	if n := virtualStatus(t, e, "vs_sip").PersistFallbacks; n != 0 {
		t.Fatalf("fallbacks %d", n)
	}
	// A datagram without a Call-ID is balanced and counted.
	send(c2, "\r\n\r\nping")
	if n := virtualStatus(t, e, "vs_sip").PersistFallbacks; n != 1 {
		t.Fatalf("fallbacks %d, want 1", n)
	}
	var n int
	e.PersistTable().Range(func(r persist.Record) bool {
		if r.Type == persist.TypeSIP {
			n++
		}
		return true
	})
	if n != 3 {
		t.Fatalf("%d sip records, want 3", n)
	}
}

func TestSIPOverTCPPersistence(t *testing.T) {
	members := []string{nameEcho(t, "a"), nameEcho(t, "b")}
	port := freePort(t)
	startEngine(t, persistTCPYAML(port, "      type: sip\n", members...))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	invite := func(id string) []byte {
		return []byte("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1\r\ni: " + id + "\r\nContent-Length: 0\r\n\r\n")
	}
	one := sendFirst(t, addr, invite("tcp-call-1"))
	two := sendFirst(t, addr, invite("tcp-call-2"))
	if one == two {
		t.Fatalf("two calls both on %s", one)
	}
	for range 3 {
		if got := sendFirst(t, addr, invite("tcp-call-1")); got != one {
			t.Fatalf("call 1 moved to %s", got)
		}
	}
}
