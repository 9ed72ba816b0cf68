package virtual

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawIO reads and writes a TCP socket with raw system calls. The socket is
// non-blocking (Go's poller owns it), so a read or a write never blocks in
// the kernel; a raw system call then skips the runtime's entersyscall and
// exitsyscall. Those matter on the HTTP path, where every request is four
// short socket calls: with GOMAXPROCS=1 the runtime's monitor otherwise
// takes the only P away from a goroutine caught in a system call at its
// tick and hands it to another thread, and the goroutine must win it back
// on return (futex wake-ups, thread switches, a monitor that never slows
// down). Waiting is still Go's: EAGAIN parks the goroutine in the poller
// through syscall.RawConn, which keeps deadlines and Close working as for
// any net.Conn. cloudwego/netpoll reads and writes the same way.
type rawIO struct {
	rc   syscall.RawConn
	conn *net.TCPConn // for the addresses of an error

	// The state of the read and of the write in progress, and the
	// callbacks made once: closures per call would cost two allocations
	// per system call. A read and a write may run at the same time (a
	// request body is sent while the response is read), never two reads
	// or two writes.
	rbuf    []byte
	rn      int
	rerrno  syscall.Errno
	rwait   bool // wait for data on EAGAIN (else return at once)
	readFn  func(uintptr) bool
	wbuf    []byte
	wdone   int
	werrno  syscall.Errno
	writeFn func(uintptr) bool
}

func newRawIO(c *net.TCPConn) *rawIO {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{rc: rc, conn: c}
	r.readFn, r.writeFn = r.doRead, r.doWrite
	return r
}

func (r *rawIO) doRead(fd uintptr) bool {
	for {
		r.rn, r.rerrno = sysRead(int(fd), r.rbuf)
		if r.rerrno != unix.EINTR {
			return r.rerrno != unix.EAGAIN || !r.rwait
		}
	}
}

func (r *rawIO) doWrite(fd uintptr) bool {
	for r.wdone < len(r.wbuf) {
		n, e := sysWrite(int(fd), r.wbuf[r.wdone:])
		switch e {
		case 0:
			r.wdone += n
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait until writable, then go on
		default:
			r.werrno = e
			return true
		}
	}
	return true
}

func sysRead(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func sysWrite(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// readOnce makes one read: with wait, EAGAIN waits for data in Go's
// poller (until the read deadline); without, it returns errno EAGAIN.
// err is the poller's (deadline passed, closed).
func (r *rawIO) readOnce(b []byte, wait bool) (n int, errno syscall.Errno, err error) {
	r.rbuf, r.rwait = b, wait
	err = r.rc.Read(r.readFn)
	n, errno = r.rn, r.rerrno
	r.rbuf, r.rn, r.rerrno = nil, 0, 0
	return n, errno, err
}

func (r *rawIO) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, errno, err := r.readOnce(b, true)
	switch {
	case err != nil: // deadline passed, or closed
		return 0, r.opError("read", err)
	case errno != 0:
		return 0, r.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (r *rawIO) write(b []byte) (int, error) {
	r.wbuf, r.wdone, r.werrno = b, 0, 0
	err := r.rc.Write(r.writeFn)
	done, errno := r.wdone, r.werrno
	r.wbuf = nil
	switch {
	case err != nil:
		return done, r.opError("write", err)
	case errno != 0:
		return done, r.opError("write", os.NewSyscallError("write", errno))
	}
	return done, nil
}

// waitReadable waits (until the read deadline) for the socket to have data
// or an end, without reading it: a peek, so that the waiting costs no
// buffer.
func (r *rawIO) waitReadable() error {
	var one [1]byte
	err := r.rc.Read(func(fd uintptr) bool {
		_, _, e := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return e != unix.EAGAIN
	})
	if err != nil {
		return r.opError("read", err)
	}
	return nil
}

// opError dresses an error as net.Conn's methods do.
func (r *rawIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: err}
}
