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
}

func newRawIO(c *net.TCPConn) *rawIO {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawIO{rc: rc, conn: c}
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

func (r *rawIO) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, errno = sysRead(int(fd), b)
			if errno != unix.EINTR {
				return errno != unix.EAGAIN
			}
		}
	})
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
	done := 0
	var errno syscall.Errno
	err := r.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			n, e := sysWrite(int(fd), b[done:])
			switch e {
			case 0:
				done += n
			case unix.EINTR:
			case unix.EAGAIN:
				return false // wait until writable, then go on
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return done, r.opError("write", err)
	case errno != 0:
		return done, r.opError("write", os.NewSyscallError("write", errno))
	}
	return done, nil
}

// opError dresses an error as net.Conn's methods do.
func (r *rawIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.conn.LocalAddr(), Addr: r.conn.RemoteAddr(), Err: err}
}
