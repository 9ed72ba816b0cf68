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
//
// Connection mirroring (version 2) adds, on the same stream:
//
//	open    sender → receiver  seq, id u64, kind u8 (0 tcp, 1 udp, 2 http),
//	                           age i64, virtual, pool, member, client
//	                           socket, server socket: a connection at stream
//	                           offset 0 in both directions (udp: a flow,
//	                           whose sockets carry addresses only; http: an
//	                           idle client connection, the client socket
//	                           alone, no member and no server socket)
//	data    sender → receiver  seq, id, dir u8, offset u64, acked u64,
//	                           length u32, bytes: relayed bytes, mirrored
//	                           before they are written to the other side;
//	                           acked is how much of dir the receiving peer
//	                           has acknowledged (what the standby may drop)
//	close   sender → receiver  seq, id: ended, or no longer resumable
//	half    sender → receiver  seq, id, dir u8: the sender of direction
//	                           dir sent its FIN (relayed on); the
//	                           connection cannot move, and the device that
//	                           takes over resets both sides (no half-open
//	                           leftovers)
//	final   sender → receiver  seq, id, acked u64 ×2, sent u64 ×2,
//	                           timestamp u32 ×2: a planned handover; the
//	                           connection is frozen and every byte it holds
//	                           has been sent on the channel; sent is how
//	                           far each direction went out to its peer
//
// A socket is local and remote address (16 bytes, family, port each), the
// sequence numbers of stream offset 0 out and in, MSS u16, send and
// receive window scale u8, option flags u8, TSval u32 and the repair
// window (five u32).
const (
	frameHello     = 1
	frameBegin     = 2
	frameRecord    = 3
	frameDelete    = 4
	frameEnd       = 5
	frameAck       = 6
	frameConnOpen  = 7
	frameConnData  = 8
	frameConnClose = 9
	frameConnFinal = 10
	frameConnHalf  = 11

	wireVersion = 2
	maxFrame    = maxConnData + 64
	maxKey      = 4096
	// maxConnData is the most bytes one data frame carries (a relay's read).
	maxConnData = 64 << 10
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

	// connection frames
	id     uint64
	dir    byte
	offset uint64
	acked  [2]uint64 // data: acked[0] is the direction's; final: both
	data   []byte
	setup  *ConnSetup
	ts     [2]uint32 // final: client and server socket TSval
	sent   [2]uint64 // final: bytes sent to the receiving peer, per direction
}

type encoder struct {
	b []byte
}

func (e *encoder) u8(v byte)     { e.b = append(e.b, v) }
func (e *encoder) u64(v uint64)  { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)   { e.u64(uint64(v)) }
func (e *encoder) str8(s string) { e.u8(byte(len(s))); e.b = append(e.b, s...) }
func (e *encoder) u16(v uint16)  { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32)  { e.b = binary.BigEndian.AppendUint32(e.b, v) }

func (e *encoder) addrPort(ap netip.AddrPort) {
	a16 := ap.Addr().As16()
	e.b = append(e.b, a16[:]...)
	if ap.Addr().Is4() {
		e.u8(4)
	} else {
		e.u8(6)
	}
	e.u16(ap.Port())
}

func (e *encoder) socket(s *Socket) {
	e.addrPort(s.Local)
	e.addrPort(s.Remote)
	e.u32(s.SendSeq)
	e.u32(s.RecvSeq)
	e.u16(s.MSS)
	e.u8(s.SndWscale)
	e.u8(s.RcvWscale)
	var flags byte
	for i, on := range []bool{s.WindowScaling, s.SACK, s.Timestamps, s.HasWindow} {
		if on {
			flags |= 1 << i
		}
	}
	e.u8(flags)
	e.u32(s.Timestamp)
	for _, w := range s.Window {
		e.u32(w)
	}
}
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
		e.addrPort(r.Member)
		e.i64(int64(r.Timeout))
		e.i64(int64(now.Sub(r.Created)))
		remaining := int64(0)
		if r.Timeout > 0 {
			remaining = int64(r.Expires.Sub(now))
		}
		e.i64(remaining)
	case frameConnOpen:
		st := f.setup
		if st == nil || len(st.Virtual) > 255 || len(st.Pool) > 255 || st.Kind > KindHTTP || !st.Client.valid() ||
			st.Kind != KindHTTP && (!st.Member.IsValid() || !st.Server.valid()) {
			return b, errors.New("mirror: connection setup cannot be encoded")
		}
		e.u64(f.seq)
		e.u64(f.id)
		e.u8(st.Kind)
		e.i64(int64(now.Sub(st.At)))
		e.str8(st.Virtual)
		e.str8(st.Pool)
		if st.Kind == KindHTTP {
			e.socket(&st.Client) // no member, no server socket
			break
		}
		e.addrPort(st.Member)
		e.socket(&st.Client)
		e.socket(&st.Server)
	case frameConnData:
		if len(f.data) > maxConnData || f.dir > 1 {
			return b, errors.New("mirror: connection data cannot be encoded")
		}
		e.u64(f.seq)
		e.u64(f.id)
		e.u8(f.dir)
		e.u64(f.offset)
		e.u64(f.acked[0])
		e.u32(uint32(len(f.data)))
		e.b = append(e.b, f.data...)
	case frameConnClose:
		e.u64(f.seq)
		e.u64(f.id)
	case frameConnHalf:
		if f.dir > 1 {
			return b, errors.New("mirror: half-close cannot be encoded")
		}
		e.u64(f.seq)
		e.u64(f.id)
		e.u8(f.dir)
	case frameConnFinal:
		e.u64(f.seq)
		e.u64(f.id)
		e.u64(f.acked[0])
		e.u64(f.acked[1])
		e.u64(f.sent[0])
		e.u64(f.sent[1])
		e.u32(f.ts[0])
		e.u32(f.ts[1])
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

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

// addrPort decodes an address (16 bytes and a family) and a port; zero
// ports are malformed.
func (d *decoder) addrPort() netip.AddrPort {
	a := d.take(16)
	fam := d.u8()
	port := d.u16()
	if d.err != nil {
		return netip.AddrPort{}
	}
	addr := netip.AddrFrom16([16]byte(a))
	switch {
	case fam == 4 && addr.Is4In6():
		addr = addr.Unmap()
	case fam == 6:
	default:
		d.err = fmt.Errorf("%w: address family %d", errMalformed, fam)
		return netip.AddrPort{}
	}
	if port == 0 {
		d.err = fmt.Errorf("%w: port 0", errMalformed)
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, port)
}

func (d *decoder) socket(s *Socket) {
	s.Local = d.addrPort()
	s.Remote = d.addrPort()
	s.SendSeq = d.u32()
	s.RecvSeq = d.u32()
	s.MSS = d.u16()
	s.SndWscale = d.u8()
	s.RcvWscale = d.u8()
	flags := d.u8()
	s.WindowScaling, s.SACK, s.Timestamps, s.HasWindow = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
	s.Timestamp = d.u32()
	for i := range s.Window {
		s.Window[i] = d.u32()
	}
	if d.err == nil && (!s.valid() || flags > 15) {
		d.err = fmt.Errorf("%w: socket fields", errMalformed)
	}
}

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
		r.Member = d.addrPort()
		timeout, age, remaining := int64(d.u64()), int64(d.u64()), int64(d.u64())
		if d.err != nil {
			break
		}
		if r.Key == "" || len(r.Key) > maxKey || len(r.Value) > maxKey || age < 0 || timeout < 0 {
			return nil, fmt.Errorf("%w: record fields", errMalformed)
		}
		r.Timeout = time.Duration(timeout)
		r.Created = now.Add(-time.Duration(age))
		if r.Timeout > 0 {
			r.Expires = now.Add(time.Duration(remaining))
		}
	case frameConnOpen:
		f.seq = d.u64()
		f.id = d.u64()
		kind := d.u8()
		age := int64(d.u64())
		st := &ConnSetup{Kind: kind, Virtual: d.str8(), Pool: d.str8()}
		if kind == KindHTTP {
			d.socket(&st.Client)
		} else {
			st.Member = d.addrPort()
			d.socket(&st.Client)
			d.socket(&st.Server)
		}
		if d.err == nil && (age < 0 || st.Virtual == "" || kind > KindHTTP) {
			return nil, fmt.Errorf("%w: connection setup fields", errMalformed)
		}
		st.At = now.Add(-time.Duration(age))
		f.setup = st
	case frameConnData:
		f.seq = d.u64()
		f.id = d.u64()
		f.dir = d.u8()
		f.offset = d.u64()
		f.acked[0] = d.u64()
		n := d.u32()
		if d.err == nil && (n > maxConnData || f.dir > 1 || f.acked[0] > f.offset+uint64(n) || f.offset > 1<<62) {
			return nil, fmt.Errorf("%w: connection data fields", errMalformed)
		}
		f.data = d.take(int(n))
	case frameConnClose:
		f.seq = d.u64()
		f.id = d.u64()
	case frameConnHalf:
		f.seq = d.u64()
		f.id = d.u64()
		f.dir = d.u8()
		if d.err == nil && f.dir > 1 {
			return nil, fmt.Errorf("%w: half-close direction %d", errMalformed, f.dir)
		}
	case frameConnFinal:
		f.seq = d.u64()
		f.id = d.u64()
		f.acked[0] = d.u64()
		f.acked[1] = d.u64()
		f.sent[0] = d.u64()
		f.sent[1] = d.u64()
		f.ts[0] = d.u32()
		f.ts[1] = d.u32()
		if d.err == nil && (f.sent[0] < f.acked[0] || f.sent[1] < f.acked[1]) {
			return nil, fmt.Errorf("%w: final state sent before acknowledged", errMalformed)
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
