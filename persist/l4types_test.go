package persist

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/events"
)

func TestNewTypesValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     ProfileConfig
		wantErr string
	}{
		{"dest ok", ProfileConfig{Name: "d", Type: TypeDestAddr, Timeout: time.Minute, PrefixV4: 24, PrefixV6: 64}, ""},
		{"dest prefix", ProfileConfig{Name: "d", Type: TypeDestAddr, Timeout: time.Minute, PrefixV4: 40}, "prefix_v4"},
		{"dest no timeout", ProfileConfig{Name: "d", Type: TypeDestAddr, PrefixV4: 32, PrefixV6: 128}, "timeout > 0"},
		{"hash source", ProfileConfig{Name: "h", Type: TypeHash, Key: "source_addr", PrefixV4: 32, PrefixV6: 128}, ""},
		{"hash header", ProfileConfig{Name: "h", Type: TypeHash, Key: "header:X-User"}, ""},
		{"hash no key", ProfileConfig{Name: "h", Type: TypeHash}, "is not valid: use source_addr"},
		{"hash bad prefix", ProfileConfig{Name: "h", Type: TypeHash, Key: "source_addr", PrefixV4: 33}, "prefix"},
		{"msrdp ok", ProfileConfig{Name: "r", Type: TypeMSRDP, Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128}, ""},
		{"msrdp small peek", ProfileConfig{Name: "r", Type: TypeMSRDP, Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128, PeekMaxBytes: 10}, "peek_max_bytes"},
		{"sip negative peek", ProfileConfig{Name: "s", Type: TypeSIP, Timeout: time.Minute, PeekTimeout: -1}, "peek_timeout"},
		{"ssl ok", ProfileConfig{Name: "s", Type: TypeSSL, Timeout: time.Minute}, ""},
	}
	for _, tc := range tests {
		_, err := NewProfile(tc.cfg)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	p := mustProfile(t, ProfileConfig{Name: "s", Type: TypeSSL, Timeout: time.Minute})
	if n, d, ok := p.Peek(); !ok || n != DefaultPeekMaxBytes || d != DefaultPeekTimeout {
		t.Fatalf("ssl peek defaults: %d %v %v", n, d, ok)
	}
	if _, _, ok := mustProfile(t, ProfileConfig{Name: "d", Type: TypeDestAddr, Timeout: time.Minute}).Peek(); ok {
		t.Fatal("dest_addr peeks")
	}
	for typ, want := range map[string]bool{TypeDestAddr: false, TypeMSRDP: false, TypeSIP: false, TypeSSL: false} {
		if got := mustProfile(t, ProfileConfig{Name: "x", Type: typ, Timeout: time.Minute}).NeedsHTTP(); got != want {
			t.Errorf("%s NeedsHTTP %v", typ, got)
		}
	}
	if mustProfile(t, ProfileConfig{Name: "h", Type: TypeHash, Key: "source_addr"}).NeedsHTTP() ||
		!mustProfile(t, ProfileConfig{Name: "h", Type: TypeHash, Key: "uri"}).NeedsHTTP() {
		t.Fatal("hash NeedsHTTP follows the key")
	}
}

// recordFor stores req -> member with p and returns the single record.
func recordFor(t *testing.T, p *Profile, tb *Table, req *Request, member netip.AddrPort) Record {
	t.Helper()
	p.Record(tb, req, Target{Member: member}, t0)
	var got []Record
	tb.Range(func(r Record) bool { got = append(got, r); return true })
	if len(got) != 1 {
		t.Fatalf("%d records, want 1: %+v", len(got), got)
	}
	return got[0]
}

func TestTableTypesRecordAndLookup(t *testing.T) {
	t.Parallel()
	m := ap("10.0.0.1:3389")
	client := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name  string
		cfg   ProfileConfig
		req   Request
		value string
		// other has a different identity: it must not find the record.
		other Request
	}{
		{"dest_addr", ProfileConfig{Type: TypeDestAddr, PrefixV4: 24, PrefixV6: 128},
			Request{Client: client, Local: netip.MustParseAddr("192.0.2.10")}, "192.0.2.0",
			Request{Client: client, Local: netip.MustParseAddr("192.0.3.10")}},
		{"msrdp cookie", ProfileConfig{Type: TypeMSRDP, PrefixV4: 32, PrefixV6: 128},
			Request{Client: client, Payload: rdpConnectionRequest("mstshash=alice")}, "mstshash=alice",
			Request{Client: client, Payload: rdpConnectionRequest("mstshash=bob")}},
		{"msrdp fallback to source", ProfileConfig{Type: TypeMSRDP, PrefixV4: 32, PrefixV6: 128},
			Request{Client: client, Payload: []byte("garbage")}, "198.51.100.7",
			Request{Client: netip.MustParseAddr("198.51.100.8"), Payload: rdpConnectionRequest("")}},
		{"sip", ProfileConfig{Type: TypeSIP},
			Request{Client: client, Payload: []byte(sipInvite)}, "a84b4c76e66710@pc33.atlanta.example.com",
			Request{Client: client, Payload: []byte(strings.Replace(sipInvite, "Call-ID: a", "Call-ID: b", 1))}},
		{"ssl", ProfileConfig{Type: TypeSSL},
			Request{Client: client, Payload: fragment(append([]byte{22, 3, 1, 0, 0}, helloBody(0xab)...), 100)}, strings.Repeat("ab", 32),
			Request{Client: client, Payload: fragment(append([]byte{22, 3, 1, 0, 0}, helloBody(0xcd)...), 100)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name, tc.cfg.Timeout = "p", time.Minute
			p := mustProfile(t, tc.cfg)
			tb := NewTable()
			sub := tb.Events().Subscribe(16)
			defer sub.Close()
			tc.req.Virtual, tc.req.Pool = "vs", "pool"
			tc.other.Virtual, tc.other.Pool = "vs", "pool"
			r := recordFor(t, p, tb, &tc.req, m)
			if r.Type != tc.cfg.Type || r.Value != tc.value || r.Key != "p|vs|pool|"+tc.cfg.Type+"|"+tc.value || r.Member != m {
				t.Fatalf("record %+v, want value %q", r, tc.value)
			}
			if got, ok := p.Lookup(tb, &tc.req, t0.Add(time.Second)); !ok || got.Member != m {
				t.Fatalf("lookup: %+v %v", got, ok)
			}
			if _, ok := p.Lookup(tb, &tc.other, t0); ok {
				t.Fatal("another identity found the record")
			}
			if evs := drain(sub); len(evs) == 0 || evs[0].Kind != events.Created || evs[0].Record != r {
				t.Fatalf("events %+v, want Created with the record", evs)
			}
		})
	}
	// No identity, no record: sip without Call-ID, ssl with an empty
	// session ID, dest_addr without a local address.
	for _, c := range []struct {
		typ string
		req Request
	}{
		{TypeSIP, Request{Payload: []byte("OPTIONS sip:a@b SIP/2.0\r\n\r\n")}},
		{TypeSSL, Request{Payload: withoutSessionID(append([]byte{22, 3, 1, 0, 0}, helloBody(1)...))}},
		{TypeDestAddr, Request{Client: client}},
	} {
		p := mustProfile(t, ProfileConfig{Name: "p", Type: c.typ, Timeout: time.Minute, PrefixV4: 32, PrefixV6: 128})
		tb := NewTable()
		p.Record(tb, &c.req, Target{Member: m}, t0)
		if tb.Len() != 0 || p.HasIdentity(&c.req) {
			t.Errorf("%s: stored a record without an identity", c.typ)
		}
	}
}

// helloBody is a minimal ClientHello handshake message whose 32-byte
// session ID is all fill (the record header's length is fixed by fragment).
func helloBody(fill byte) []byte {
	b := []byte{1, 0, 0, 0, 3, 3}
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 32)
	for range 32 {
		b = append(b, fill)
	}
	b = append(b, 0, 2, 0x13, 0x01, 1, 0) // one cipher suite, null compression
	hl := len(b) - 4
	b[1], b[2], b[3] = byte(hl>>16), byte(hl>>8), byte(hl)
	return b
}

func TestInspect(t *testing.T) {
	t.Parallel()
	rdp := mustProfile(t, ProfileConfig{Name: "r", Type: TypeMSRDP, Timeout: time.Minute, PeekMaxBytes: 64})
	full := rdpConnectionRequest("mstshash=alice")
	if done, id := rdp.Inspect(full[:10]); done || id {
		t.Fatalf("a prefix: done %v id %v", done, id)
	}
	if done, id := rdp.Inspect(full); !done || !id {
		t.Fatalf("whole request: done %v id %v", done, id)
	}
	if done, id := rdp.Inspect([]byte("SSH-2.0-OpenSSH\r\n")); !done || id {
		t.Fatalf("garbage: done %v id %v", done, id)
	}
	// A cookie longer than peek_max_bytes: done at the bound, no identity.
	long := rdpConnectionRequest("mstshash=" + strings.Repeat("x", 100))
	if done, id := rdp.Inspect(long[:64]); !done || id {
		t.Fatalf("at the bound: done %v id %v", done, id)
	}
	if done, id := mustProfile(t, ProfileConfig{Name: "d", Type: TypeDestAddr, Timeout: time.Minute}).Inspect(nil); !done || id {
		t.Fatal("dest_addr inspects")
	}
}

func TestHashRank(t *testing.T) {
	t.Parallel()
	p := mustProfile(t, ProfileConfig{Name: "h", Type: TypeHash, Key: "header:X-User"})
	var members []netip.AddrPort
	for i := range 5 {
		members = append(members, ap(fmt.Sprintf("10.0.0.%d:80", i+1)))
	}
	req := func(user string) *Request {
		return &Request{HTTP: &fakeHTTP{headers: map[string]string{"x-user": user}}}
	}
	if _, ok := p.HashRank(&Request{HTTP: &fakeHTTP{}}, members); ok {
		t.Fatal("ranked a request without the header")
	}
	tb := NewTable()
	p.Record(tb, req("a"), Target{Member: members[0]}, t0)
	if tb.Len() != 0 {
		t.Fatal("hash stored a record")
	}
	if _, ok := p.Lookup(tb, req("a"), t0); ok {
		t.Fatal("hash found a record")
	}
	first := func(order []int, down map[int]bool) int {
		for _, i := range order {
			if !down[i] {
				return i
			}
		}
		return -1
	}
	// Deterministic, independent of the member list's order, spread.
	reversed := slices.Clone(members)
	slices.Reverse(reversed)
	count := map[int]int{}
	const keys = 2000
	owner := make([]int, keys)
	for k := range keys {
		o, ok := p.HashRank(req(fmt.Sprint("user", k)), members)
		if !ok || len(o) != len(members) {
			t.Fatalf("rank %v %v", o, ok)
		}
		o2, _ := p.HashRank(req(fmt.Sprint("user", k)), reversed)
		if members[o[0]] != reversed[o2[0]] {
			t.Fatalf("key %d: member order changed the choice", k)
		}
		owner[k] = o[0]
		count[o[0]]++
	}
	for i := range members {
		if count[i] < keys/len(members)/2 {
			t.Fatalf("member %d got %d of %d keys: %v", i, count[i], keys, count)
		}
	}
	// Member 2 down: only its keys move; back up: exactly they return.
	down := map[int]bool{2: true}
	for k := range keys {
		o, _ := p.HashRank(req(fmt.Sprint("user", k)), members)
		got := first(o, down)
		if owner[k] != 2 && got != owner[k] {
			t.Fatalf("key %d moved from %d to %d though its member is up", k, owner[k], got)
		}
		if owner[k] == 2 && got == 2 {
			t.Fatalf("key %d stayed on the down member", k)
		}
		if back := first(o, nil); back != owner[k] {
			t.Fatalf("key %d did not return to %d (got %d)", k, owner[k], back)
		}
	}
	// A fixed vector: the same key and members give the same member on any
	// device and any build (no seed).
	var got []int
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		o, _ := p.HashRank(req(u), members)
		got = append(got, o[0])
	}
	if want := []int{2, 4, 4, 2, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("owners %v, want %v (the hash changed: devices on different versions would disagree)", got, want)
	}
}

func TestSSLLearnsServerSessionID(t *testing.T) {
	t.Parallel()
	p := mustProfile(t, ProfileConfig{Name: "tls", Type: TypeSSL, Timeout: time.Minute})
	if !p.LearnsFromServer() || mustProfile(t, ProfileConfig{Name: "s", Type: TypeSIP, Timeout: time.Minute}).LearnsFromServer() {
		t.Fatal("only ssl learns from the server")
	}
	m := ap("10.0.0.2:443")
	tb := NewTable()
	// First connection: a TLS 1.2 ClientHello without a session ID.
	hello := withoutSessionID(fragment(append([]byte{22, 3, 1, 0, 0}, helloBody(0)...), 1<<14))
	first := &Request{Virtual: "vs", Pool: "p", Payload: hello}
	if p.HasIdentity(first) {
		t.Fatal("empty session ID is an identity")
	}
	// The member's ServerHello assigns session ID 0x5a...
	sh := helloBody(0x5a)
	sh[0] = tlsServerHello
	server := fragment(append([]byte{22, 3, 3, 0, 0}, sh...), 1<<14)
	if done, id := p.InspectServer(server[:20]); done || id {
		t.Fatalf("partial ServerHello: %v %v", done, id)
	}
	if done, id := p.InspectServer(server); !done || !id {
		t.Fatalf("ServerHello: %v %v", done, id)
	}
	if done, id := p.InspectServer(hello); !done || id {
		t.Fatal("a ClientHello taken for a ServerHello")
	}
	p.LearnServer(tb, first, server, Target{Member: m}, t0)
	// The resuming ClientHello carries that ID and finds the member.
	resume := &Request{Virtual: "vs", Pool: "p", Payload: fragment(append([]byte{22, 3, 1, 0, 0}, helloBody(0x5a)...), 1<<14)}
	if got, ok := p.Lookup(tb, resume, t0.Add(time.Second)); !ok || got.Member != m {
		t.Fatalf("resumption: %+v %v", got, ok)
	}
	// Garbage from the server teaches nothing.
	tb2 := NewTable()
	p.LearnServer(tb2, first, []byte("HTTP/1.1 400 Bad Request\r\n"), Target{Member: m}, t0)
	if tb2.Len() != 0 {
		t.Fatal("learned from garbage")
	}
}
