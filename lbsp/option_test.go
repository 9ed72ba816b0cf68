package lbsp

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestOptionAppendParse(t *testing.T) {
	c := netip.MustParseAddr("2001:db8::c1")
	for _, tc := range []struct {
		name       string
		o          Option
		wantServer netip.Addr // after the round trip
	}{
		{"no server", Option{Client: ClientFromAddr(c)}, netip.Addr{}},
		{"server", Option{Client: ClientFromAddr(c), Server: netip.MustParseAddr("2001:db8::5")}, netip.MustParseAddr("2001:db8::5")},
		{"unspecified server is unset", Option{Client: ClientFromAddr(c), Server: netip.IPv6Unspecified()}, netip.Addr{}},
		{"IPv4 server is mapped", Option{Server: netip.MustParseAddr("192.0.2.5")}, netip.MustParseAddr("::ffff:192.0.2.5")},
		{"zone dropped", Option{Server: netip.MustParseAddr("fe80::1%eth0")}, netip.MustParseAddr("fe80::1")},
		{"random client", Option{Client: RandomClient()}, netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.o.Append([]byte("prefix"), DefaultType)
			if !bytes.HasPrefix(b, []byte("prefix")) || len(b) != 6+TLVLen {
				t.Fatalf("Append: %x", b)
			}
			tlv := b[6:]
			if tlv[0] != DefaultType || tlv[1] != DataLen || !bytes.Equal(tlv[2:18], tc.o.Client[:]) {
				t.Fatalf("TLV %x", tlv)
			}
			got, err := ParseOption(tlv[2:])
			if err != nil {
				t.Fatal(err)
			}
			if got.Client != tc.o.Client || got.Server != tc.wantServer {
				t.Fatalf("got %v, want client %x server %v", got, tc.o.Client, tc.wantServer)
			}
			if got.HasServer() != tc.wantServer.IsValid() {
				t.Fatalf("HasServer %v", got.HasServer())
			}
			// Re-encoding what was parsed gives the same octets.
			if again := got.Append(nil, DefaultType); !bytes.Equal(again, tlv) {
				t.Fatalf("re-encoded %x, want %x", again, tlv)
			}
		})
	}
}

func TestParseOptionLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, TLVLen} {
		_, err := ParseOption(make([]byte, n))
		if !errors.Is(err, ErrOptionData) {
			t.Fatalf("%d octets: %v", n, err)
		}
		if n == TLVLen && !strings.Contains(err.Error(), "not the whole TLV") {
			t.Errorf("no hint for a whole TLV: %v", err)
		}
	}
}

func TestOptionTypeChecks(t *testing.T) {
	for _, typ := range []byte{TypePad1, TypePadN} {
		if CheckType(typ) == nil {
			t.Errorf("CheckType(0x%02x) = nil", typ)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Append with type 0x%02x did not panic", typ)
				}
			}()
			Option{}.Append(nil, typ)
		}()
	}
	for _, typ := range []byte{DefaultType, 0x3E, 0xFE, 0x02} {
		if err := CheckType(typ); err != nil {
			t.Errorf("CheckType(0x%02x) = %v", typ, err)
		}
	}
}

func TestOptionString(t *testing.T) {
	o := Option{Client: ClientFromAddr(netip.MustParseAddr("2001:db8::c1"))}
	if s := o.String(); s != "client=2001:db8::c1 server=-" {
		t.Error(s)
	}
	o.Server = netip.MustParseAddr("2001:db8::5")
	if s := o.String(); s != "client=2001:db8::c1 server=2001:db8::5" {
		t.Error(s)
	}
}

func TestRandomClient(t *testing.T) {
	a, b := RandomClient(), RandomClient()
	if a == b || a == [16]byte{} {
		t.Fatalf("%x %x", a, b)
	}
}
