package ha

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleHeartbeat() *heartbeat {
	return &heartbeat{Sender: "lb-a", Incarnation: 1 << 60, Seq: 42, Path: 1,
		Groups: []groupClaim{
			{Name: "tg1", Active: true, Generation: 7},
			{Name: "tg-2", Hold: true, Generation: 3, Handoff: "lb-b"},
		},
		Requests: []failoverRequest{{Group: "tg1", Target: "lb-b", ID: 99}, {Group: "tg-2", ID: 100}},
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	hb := sampleHeartbeat()
	b, err := hb.marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, hb) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, hb)
	}
	if len(b) > maxHeartbeat {
		t.Fatalf("%d bytes > maxHeartbeat %d", len(b), maxHeartbeat)
	}
}

func TestHeartbeatRefusesMalformed(t *testing.T) {
	good, _ := sampleHeartbeat().marshal(nil)
	cases := map[string][]byte{
		"empty":           {},
		"bad magic":       append([]byte("XH"), good[2:]...),
		"version 2":       append([]byte{'F', 'H', 2}, good[3:]...),
		"flags":           append([]byte{'F', 'H', 1, 1}, good[4:]...),
		"trailing":        append(bytes.Clone(good), 0),
		"truncated":       good[:len(good)-1],
		"empty sender":    {'F', 'H', 1, 0, 0},
		"name with /":     append([]byte{'F', 'H', 1, 0, 3, 'a', '/', 'b'}, make([]byte, 19)...),
		"too many groups": append(append([]byte{'F', 'H', 1, 0, 1, 'a'}, make([]byte, 17)...), maxGroups+1),
	}
	for name, b := range cases {
		if _, err := unmarshal(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Every truncation of a good heartbeat is refused, never a panic.
	for i := range good {
		if _, err := unmarshal(good[:i]); err == nil {
			t.Errorf("truncated to %d bytes: accepted", i)
		}
	}
}

func TestHeartbeatMarshalRefusesWhatDoesNotFit(t *testing.T) {
	hb := &heartbeat{Sender: string(make([]byte, 64))}
	if _, err := hb.marshal(nil); err == nil {
		t.Error("64-byte sender accepted")
	}
	hb = &heartbeat{Sender: "a", Groups: make([]groupClaim, maxGroups+1)}
	if _, err := hb.marshal(nil); err == nil {
		t.Error("too many groups accepted")
	}
}

func FuzzHeartbeat(f *testing.F) {
	good, _ := sampleHeartbeat().marshal(nil)
	f.Add(good)
	f.Add([]byte("FH\x01\x00\x01a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := unmarshal(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		out, err := hb.marshal(nil)
		if err != nil {
			t.Fatalf("decoded heartbeat does not re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
	})
}
