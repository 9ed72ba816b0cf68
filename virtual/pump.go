package virtual

import (
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// spliceChunk is the most one splice call moves; the pipe is sized to match
// so that one read is always drained by the writes that follow it.
const spliceChunk = 1 << 18

// copyBufPool holds buffers for the non-splice path (TLS, wrapped conns).
type bufPool struct{ p sync.Pool }

func (b *bufPool) get() *[]byte {
	if v := b.p.Get(); v != nil {
		return v.(*[]byte)
	}
	buf := make([]byte, 32<<10)
	return &buf
}
func (b *bufPool) put(p *[]byte) { b.p.Put(p) }

// pump copies src to dst until EOF or error, calling count after every chunk
// so the connection table sees bytes and activity as they happen (io.Copy's
// built-in splice would hide both until the end). Two plain TCP sockets use
// splice(2) through a pipe: the bytes never enter user space.
func pump(dst, src net.Conn, bufs *bufPool, count func(int64)) (int64, error) {
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			n, err, handled := splicePump(d, s, count)
			if handled {
				return n, err
			}
		}
	}
	bp := bufs.get()
	defer bufs.put(bp)
	buf := *bp
	var total int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			total += int64(nw)
			count(int64(nw))
			if werr != nil {
				return total, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return total, nil
			}
			return total, rerr
		}
	}
}

// splicePump moves bytes socket → pipe → socket. handled is false only when
// no pipe could be made; the caller then falls back to copying.
func splicePump(dst, src *net.TCPConn, count func(int64)) (total int64, err error, handled bool) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return 0, nil, false
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	// A bigger pipe moves more per wake-up; failure just keeps the default 64 KiB.
	size, ferr := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, spliceChunk)
	chunk := spliceChunk
	if ferr != nil {
		chunk = 1 << 16
	} else if size < chunk {
		chunk = size
	}
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, err, true
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, err, true
	}
	const flags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
	for {
		var n int64
		var serr error
		rerr := srcRaw.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, p[1], nil, chunk, flags)
			return serr != unix.EAGAIN // false: wait until readable
		})
		if rerr != nil {
			return total, rerr, true
		}
		if serr != nil {
			return total, serr, true
		}
		if n == 0 {
			return total, nil, true // EOF
		}
		left := n
		for left > 0 {
			var m int64
			var werr error
			err := dstRaw.Write(func(fd uintptr) bool {
				m, werr = unix.Splice(p[0], nil, int(fd), nil, int(left), flags)
				return werr != unix.EAGAIN
			})
			if err == nil {
				err = werr
			}
			if err != nil {
				return total, err, true
			}
			if m == 0 {
				return total, errors.New("splice: wrote nothing"), true
			}
			left -= m
			total += m
			count(m)
		}
	}
}
