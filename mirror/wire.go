package mirror

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/fulcrum-adc/fulcrum/persist"
)

// The mirroring stream, inside mutual TLS, version 1. Every message is a
// frame: type (1 byte), payload length (4 bytes, big endian, at most
// maxFrame), payload. Strings are a length (1 byte, or 2 for keys and
// values) and bytes. Times travel as durations relative to the moment of
// sending (an age and a remaining life), so the two devices' clocks need
// not agree.
//
//	hello   sender → receiver  version u8, group, device, generation u64
//	begin   sender → receiver  seq u64: a full snapshot follows
//	record  sender → receiver  seq u64, record
//	delete  sender → receiver  seq u64, key
//	end     sender → receiver  seq u64, count u64: the snapshot is complete
//	ack     receiver → sender  seq u64: everything up to seq is applied
const (
	frameHello  = 1
	frameBegin  = 2
	frameRecord = 3
	frameDelete = 4
	frameEnd    = 5
	frameAck    = 6

	wireVersion = 1
	maxFrame    = 16 << 10
	maxKey      = 4096
)

// frame is one decoded message.
type frame struct {
	typ        byte
	seq        uint64
	count      uint64
	version    byte
	group      string
	device     string
	generation uint64
	key        string
	rec        persist.Record
}

type encoder struct {
	b []byte
}

func (e *encoder) u8(v byte)     { e.b = append(e.b, v) }
func (e *encoder) u64(v uint64)  { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)   { e.u64(uint64(v)) }
func (e *encoder) str8(s string) { e.u8(byte(len(s))); e.b = append(e.b, s...) }
func (e *encoder) str16(s string) {
	e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(s)))
	e.b = append(e.b, s...)
}

// appendFrame appends f as a frame to b. Strings longer than the format
// allows are an error (they never come from a valid table).
func appendFrame(b []byte, f *frame, now time.Time) ([]byte, error) {
	e := encoder{b: append(b, f.typ, 0, 0, 0, 0)}
	start := len(e.b)
	switch f.typ {
	case frameHello:
		if len(f.group) > 255 || len(f.device) > 255 {
			return b, errors.New("mirror: name too long")
		}
		e.u8(f.version)
		e.str8(f.group)
		e.str8(f.device)
		e.u64(f.generation)
	case frameBegin, frameAck:
		e.u64(f.seq)
	case frameEnd:
		e.u64(f.seq)
		e.u64(f.count)
	case frameDelete:
		if len(f.key) > maxKey {
			return b, errors.New("mirror: key too long")
		}
		e.u64(f.seq)
		e.str16(f.key)
	case frameRecord:
		r := &f.rec
		if len(r.Key) > maxKey || len(r.Value) > maxKey || len(r.Type) > 255 || len(r.Profile) > 255 ||
			len(r.Virtual) > 255 || len(r.Pool) > 255 || !r.Member.IsValid() {
			return b, fmt.Errorf("mirror: record %q cannot be encoded", r.Key)
		}
		e.u64(f.seq)
		e.str16(r.Key)
		e.str8(r.Type)
		e.str16(r.Value)
		e.str8(r.Profile)
		e.str8(r.Virtual)
		e.str8(r.Pool)
		a16 := r.Member.Addr().As16()
		e.b = append(e.b, a16[:]...)
		if r.Member.Addr().Is4() {
			e.u8(4)
		} else {
			e.u8(6)
		}
		e.b = binary.BigEndian.AppendUint16(e.b, r.Member.Port())
		e.i64(int64(r.Timeout))
		e.i64(int64(now.Sub(r.Created)))
		remaining := int64(0)
		if r.Timeout > 0 {
			remaining = int64(r.Expires.Sub(now))
		}
		e.i64(remaining)
	default:
		return b, fmt.Errorf("mirror: unknown frame type %d", f.typ)
	}
	binary.BigEndian.PutUint32(e.b[start-4:start], uint32(len(e.b)-start))
	return e.b, nil
}

// errMalformed wraps every decoding failure.
var errMalformed = errors.New("mirror: malformed frame")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n > len(d.b) {
		d.err = errMalformed
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str8() string { return string(d.take(int(d.u8()))) }

func (d *decoder) str16() string {
	v := d.take(2)
	if v == nil {
		return ""
	}
	return string(d.take(int(binary.BigEndian.Uint16(v))))
}

// decodeFrame decodes one payload of type typ; now turns relative times
// back into instants.
func decodeFrame(typ byte, payload []byte, now time.Time) (*frame, error) {
	d := decoder{b: payload}
	f := &frame{typ: typ}
	switch typ {
	case frameHello:
		f.version = d.u8()
		f.group = d.str8()
		f.device = d.str8()
		f.generation = d.u64()
	case frameBegin, frameAck:
		f.seq = d.u64()
	case frameEnd:
		f.seq = d.u64()
		f.count = d.u64()
	case frameDelete:
		f.seq = d.u64()
		f.key = d.str16()
		if d.err == nil && (f.key == "" || len(f.key) > maxKey) {
			return nil, fmt.Errorf("%w: delete key length %d", errMalformed, len(f.key))
		}
	case frameRecord:
		f.seq = d.u64()
		r := &f.rec
		r.Key = d.str16()
		r.Type = d.str8()
		r.Value = d.str16()
		r.Profile = d.str8()
		r.Virtual = d.str8()
		r.Pool = d.str8()
		a := d.take(16)
		fam := d.u8()
		pb := d.take(2)
		timeout, age, remaining := int64(d.u64()), int64(d.u64()), int64(d.u64())
		if d.err != nil {
			break
		}
		addr := netip.AddrFrom16([16]byte(a))
		switch fam {
		case 4:
			if !addr.Is4In6() {
				return nil, fmt.Errorf("%w: member family", errMalformed)
			}
			addr = addr.Unmap()
		case 6:
		default:
			return nil, fmt.Errorf("%w: member family %d", errMalformed, fam)
		}
		port := binary.BigEndian.Uint16(pb)
		if r.Key == "" || len(r.Key) > maxKey || len(r.Value) > maxKey || port == 0 || age < 0 || timeout < 0 {
			return nil, fmt.Errorf("%w: record fields", errMalformed)
		}
		r.Member = netip.AddrPortFrom(addr, port)
		r.Timeout = time.Duration(timeout)
		r.Created = now.Add(-time.Duration(age))
		if r.Timeout > 0 {
			r.Expires = now.Add(time.Duration(remaining))
		}
	default:
		return nil, fmt.Errorf("%w: unknown type %d", errMalformed, typ)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes in type %d", errMalformed, len(d.b), typ)
	}
	return f, nil
}

// readFrame reads one frame from r (buf is reused for the payload).
func readFrame(r *bufio.Reader, buf []byte, now func() time.Time) (*frame, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return nil, buf, fmt.Errorf("%w: length %d over %d", errMalformed, n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, buf, err
	}
	f, err := decodeFrame(hdr[0], buf, now())
	return f, buf, err
}
