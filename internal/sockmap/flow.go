package sockmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A Flow is one socket pair handed to a Relay.
type Flow struct {
	r    *Relay
	a, b *net.TCPConn
	dirs [2]*direction // a→b, b→a
	once atomicOnce
}

// direction is one way of a flow: src's received bytes go to dst.
type direction struct {
	r        *Relay
	src, dst *net.TCPConn
	srcRC    syscall.RawConn
	dstRC    syscall.RawConn
	cookie   uint64 // src's socket cookie: key of state and ctl
	// consumed0 is how many bytes of src's stream had been read before the
	// hand-off (nothing reads src from then on except through the program).
	consumed0 uint64
	// dstBase is how many bytes had been written into dst at the hand-off.
	dstBase uint64
	// finBefore: src had received its FIN before the hand-off (the FIN
	// counts one in tcpi_bytes_received).
	finBefore bool
	consumed  atomic.Uint64 // bytes user space read from src and wrote to dst
	// outside: src could not join the map (it received its FIN between
	// the check and the insertion): this direction is copied by user
	// space from src's plain receive queue.
	outside bool
	final   atomic.Uint64 // redirected, read when the flow left the map
	done    atomic.Bool   // dst got its FIN
}

type atomicOnce struct{ done atomic.Bool }

func (o *atomicOnce) do(f func()) {
	if o.done.CompareAndSwap(false, true) {
		f()
	}
}

// ErrClosing is returned by Splice when a socket has already received its
// peer's FIN: Linux refuses such a socket in a sockmap.
var ErrClosing = errors.New("sockmap: a socket has received its FIN already")

// Splice hands the connected pair a, b to the kernel: from now on what a
// receives is sent on b and the reverse, without crossing into user space,
// until Run returns. Neither socket may be read or written by anyone else
// once Splice is called. It fails with ErrFull when the relay is full, and
// with other errors when a socket cannot be added (then nothing is left in
// the maps and the sockets can be relayed another way).
func (r *Relay) Splice(a, b *net.TCPConn) (*Flow, error) {
	if r.flows.Add(1) > int64(r.capacity) {
		r.flows.Add(-1)
		return nil, ErrFull
	}
	f := &Flow{r: r, a: a, b: b}
	var err error
	if f.dirs[0], err = newDirection(r, a, b); err != nil {
		r.flows.Add(-1)
		return nil, err
	}
	if f.dirs[1], err = newDirection(r, b, a); err != nil {
		r.flows.Add(-1)
		return nil, err
	}
	// The program's records first (peer, zero counters, initial credit),
	// then the sockets: a skb that arrives before the peer is in the map
	// fails its redirect and is left on its socket, counted as passed.
	for _, d := range f.dirs {
		peer := f.dirs[0].cookie
		if d == f.dirs[0] {
			peer = f.dirs[1].cookie
		}
		var st [stateSize]byte
		binary.LittleEndian.PutUint64(st[offPeer:], peer)
		if err := r.state.Put(d.cookie, st[:]); err != nil {
			f.forget()
			return nil, fmt.Errorf("sockmap: state: %w", err)
		}
		if err := d.setCtl(0, r.window); err != nil {
			f.forget()
			return nil, fmt.Errorf("sockmap: ctl: %w", err)
		}
	}
	for _, d := range f.dirs {
		if err := d.baseline(); err != nil {
			f.forget()
			return nil, err
		}
		// Linux lets only ESTABLISHED (and listening) TCP sockets join a
		// sockmap: one that has its peer's FIN already is refused.
		if d.finBefore {
			f.forget()
			return nil, ErrClosing
		}
	}
	for i, d := range f.dirs {
		var serr error
		if err := d.srcRC.Control(func(fd uintptr) {
			serr = r.socks.Put(d.cookie, uint32(fd))
		}); err != nil || serr != nil {
			if i == 0 {
				f.forget()
				return nil, fmt.Errorf("sockmap: adding a socket: %w", errors.Join(err, serr))
			}
			// The first socket is in the map and may have bytes queued
			// for user space already (its redirects fail while its peer
			// is outside): taking it out would lose them. Keep it; the
			// other direction is copied in user space.
			d.outside = true
		}
	}
	return f, nil
}

func newDirection(r *Relay, src, dst *net.TCPConn) (*direction, error) {
	d := &direction{r: r, src: src, dst: dst}
	var err error
	if d.srcRC, err = src.SyscallConn(); err != nil {
		return nil, err
	}
	if d.dstRC, err = dst.SyscallConn(); err != nil {
		return nil, err
	}
	var gerr error
	if err := d.srcRC.Control(func(fd uintptr) {
		d.cookie, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); err != nil || gerr != nil {
		return nil, fmt.Errorf("sockmap: SO_COOKIE: %w", errors.Join(err, gerr))
	}
	return d, nil
}

// baseline records, before src joins the map, how much of src's stream was
// consumed and how much of dst's was written. Nothing reads src now, so
// received-minus-queued is stable: it is read until two readings agree.
func (d *direction) baseline() error {
	var err error
	for range 100 {
		var r1, r2 uint64
		var inq int
		if r1, err = received(d.srcRC); err != nil {
			break
		}
		if inq, err = ioctl(d.srcRC, unix.SIOCINQ); err != nil {
			break
		}
		if r2, err = received(d.srcRC); err != nil {
			break
		}
		if r1 == r2 {
			d.consumed0 = r1 - uint64(inq)
			ti, err := tcpInfo(d.srcRC)
			if err != nil {
				return err
			}
			d.finBefore = ti.State != unix.BPF_TCP_ESTABLISHED
			d.dstBase, err = written(d.dstRC)
			return err
		}
	}
	if err == nil {
		err = errors.New("the receive queue kept changing")
	}
	return fmt.Errorf("sockmap: baseline: %w", err)
}

// forget removes the flow's sockets and records from the maps.
func (f *Flow) forget() {
	f.once.do(func() {
		for _, d := range f.dirs {
			if d == nil {
				continue
			}
			if red, _, err := d.counters(); err == nil {
				d.final.Store(red)
			}
			f.r.socks.Delete(d.cookie)
			f.r.state.Delete(d.cookie)
			f.r.ctl.Delete(d.cookie)
		}
		f.r.flows.Add(-1)
	})
}

// Counts returns how many bytes went a→b and b→a so far: redirected by the
// kernel plus copied by user space.
func (f *Flow) Counts() (ab, ba uint64) {
	x, _ := f.dirs[0].moved()
	y, _ := f.dirs[1].moved()
	return x, y
}

// Result says how a flow ended.
type Result struct {
	// Err is the first failure of either direction (nil: both sides sent
	// their FIN and every byte reached the other side's send queue).
	Err error
	// Reset is set when a side reset its connection (ECONNRESET).
	Reset bool
}

// Run relays until both directions are finished or one fails, then takes
// the sockets out of the map. Each direction forwards src's FIN to dst
// (shutdown SHUT_WR) only once every byte src sent before it is in dst's
// send queue. On a failure both sockets are left open: the caller closes
// (or resets) them. ctx ends the waits Run does in user space.
//
// halfClosed, when not nil, is called once, when the first direction has
// finished cleanly (a FIN went through), with 0 for a→b and 1 for b→a.
func (f *Flow) Run(ctx context.Context, halfClosed func(dir int)) Result {
	defer f.forget()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	for i, d := range f.dirs {
		go func() {
			err := d.run(ctx)
			if err == nil && halfClosed != nil {
				halfClosed(i)
			}
			errs <- err
		}()
	}
	var res Result
	for range 2 {
		err := <-errs
		if err != nil && res.Err == nil {
			res.Err = err
			res.Reset = errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
			// The other direction must not wait for a FIN that will not come.
			cancel()
			f.wake()
		}
	}
	return res
}

// wake makes both directions' pending reads return (a deadline in the past).
func (f *Flow) wake() {
	f.a.SetReadDeadline(time.Unix(1, 0))
	f.b.SetReadDeadline(time.Unix(1, 0))
}

// moved is bytes redirected plus bytes copied, and the program's counters.
func (d *direction) moved() (uint64, error) {
	red, _, err := d.counters()
	if err != nil {
		red = d.final.Load() // the flow has left the map
	}
	return red + d.consumed.Load(), err
}

func (d *direction) counters() (redirected, passed uint64, err error) {
	var st [stateSize]byte
	if err := d.r.state.Lookup(d.cookie, st[:]); err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint64(st[offRedirected:]), binary.LittleEndian.Uint64(st[offPassed:]), nil
}

func (d *direction) setCtl(consumed, limit uint64) error {
	var c [ctlSize]byte
	binary.LittleEndian.PutUint64(c[offConsumed:], consumed)
	binary.LittleEndian.PutUint64(c[offLimit:], limit)
	return d.r.ctl.Put(d.cookie, c[:])
}

// run is one direction: sleep in the poller while the kernel redirects;
// wake when the program left bytes on src (credit used up, or the peer was
// not in the map yet) and copy them once the redirected ones are all in
// dst; at src's end of stream, forward the FIN.
func (d *direction) run(ctx context.Context) error {
	bp := d.r.bufs.Get().(*[]byte)
	defer d.r.bufs.Put(bp)
	buf := *bp
	for {
		n, err := d.read(buf)
		if n > 0 {
			if werr := d.forward(ctx, buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return d.finish(ctx, buf)
		}
		if err != nil {
			return err
		}
	}
}

// read reads what the program left on src, waiting in Go's poller.
func (d *direction) read(buf []byte) (int, error) {
	var n int
	var rerr error
	err := d.srcRC.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Read(int(fd), buf)
			if rerr != unix.EINTR {
				break
			}
		}
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// forward writes bytes read from src to dst after every redirected byte
// has reached dst, then opens the credit again.
func (d *direction) forward(ctx context.Context, b []byte) error {
	if d.outside {
		for len(b) > 0 {
			n, err := d.dst.Write(b)
			d.consumed.Add(uint64(n))
			b = b[n:]
			if err != nil {
				return err
			}
		}
		return nil
	}
	red, err := d.drained(ctx)
	if err != nil {
		return err
	}
	for len(b) > 0 {
		n, err := d.dst.Write(b)
		d.consumed.Add(uint64(n))
		b = b[n:]
		if err != nil {
			return err
		}
	}
	_, passed, err := d.counters()
	if err != nil {
		return err
	}
	c := d.consumed.Load()
	if c != passed {
		// More is waiting on src: the program keeps leaving bytes there
		// until this catches up, so the credit can wait.
		return d.setCtl(c, red)
	}
	return d.setCtl(c, red+d.r.window)
}

// drained waits until dst has taken every byte the program redirected into
// its send queue, and returns that count. The program is not redirecting
// meanwhile (bytes wait in user space, so passed != consumed).
func (d *direction) drained(ctx context.Context) (uint64, error) {
	wait := 5 * time.Microsecond
	for {
		red, _, err := d.counters()
		if err != nil {
			return 0, err
		}
		w, err := written(d.dstRC)
		if err != nil {
			return 0, err
		}
		if w-d.dstBase-d.consumed.Load() >= red {
			return red, nil
		}
		if err := pause(ctx, wait); err != nil {
			return 0, err
		}
		wait = min(2*wait, 500*time.Microsecond)
	}
}

// finish handles src's end of stream: every byte src received must have
// been through the program (redirected or read here) and reached dst
// before dst gets the FIN.
func (d *direction) finish(ctx context.Context, buf []byte) error {
	if d.outside {
		// Every byte went through this goroutine, already written.
		if err := d.dst.CloseWrite(); err != nil {
			return err
		}
		d.done.Store(true)
		return nil
	}
	wait := 20 * time.Microsecond
	for {
		got, err := received(d.srcRC)
		if err != nil {
			return err
		}
		red, passed, err := d.counters()
		if err != nil {
			return err
		}
		c := d.consumed.Load()
		if passed > c {
			// Left on src after the FIN was seen: copy it.
			n, rerr := d.readNow(buf)
			if n > 0 {
				if err := d.forward(ctx, buf[:n]); err != nil {
					return err
				}
				continue
			}
			if rerr != nil && rerr != unix.EAGAIN {
				return rerr
			}
		} else if got-d.consumed0-d.finSeq() == red+passed {
			if _, err := d.drained(ctx); err != nil {
				return err
			}
			if err := d.dst.CloseWrite(); err != nil {
				return err
			}
			d.done.Store(true)
			return nil
		}
		if err := pause(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 5*time.Millisecond)
	}
}

// pause sleeps for d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	time.Sleep(d)
	return ctx.Err()
}

// finSeq is what src's FIN added to tcpi_bytes_received since the hand-off.
func (d *direction) finSeq() uint64 {
	if d.finBefore {
		return 0
	}
	return 1
}

// readNow reads without waiting.
func (d *direction) readNow(buf []byte) (int, error) {
	var n int
	var rerr error
	err := d.srcRC.Control(func(fd uintptr) {
		n, rerr = unix.Read(int(fd), buf)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}

func tcpInfo(rc syscall.RawConn) (*unix.TCPInfo, error) {
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return nil, err
	}
	return ti, gerr
}

// received is how many bytes of the stream the socket has received
// (TCP_INFO tcpi_bytes_received).
func received(rc syscall.RawConn) (uint64, error) {
	ti, err := tcpInfo(rc)
	if err != nil {
		return 0, err
	}
	return ti.Bytes_received, nil
}

// written is how many bytes were written into the socket: acknowledged
// plus still queued (tcpi_bytes_acked, then SIOCOUTQ: read in this order,
// the sum can only fall short, never run ahead).
func written(rc syscall.RawConn) (uint64, error) {
	ti, err := tcpInfo(rc)
	if err != nil {
		return 0, err
	}
	outq, err := ioctl(rc, unix.SIOCOUTQ)
	if err != nil {
		return 0, err
	}
	return ti.Bytes_acked + uint64(outq), nil
}

func ioctl(rc syscall.RawConn, req uint) (int, error) {
	var v int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		v, ierr = unix.IoctlGetInt(int(fd), req)
	}); err != nil {
		return 0, err
	}
	return v, ierr
}
