package accesslog

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Destination is where access-log lines go: a Writer that can be reopened
// (after logrotate) and closed.
type Destination interface {
	io.Writer
	// Reopen reopens a file by its path or reconnects a socket; a no-op
	// for stdout and stderr.
	Reopen() error
	Close() error
}

// DefaultSyslogSocket is the local syslog socket.
const DefaultSyslogSocket = "/dev/log"

// Options says where Open connects for the syslog destination.
type Options struct {
	Stdout, Stderr io.Writer
	SyslogSocket   string // default DefaultSyslogSocket
	SyslogTag      string // default "fulcrum"
}

// Open returns the destination named by a log.access_log value: "stdout",
// "stderr", "syslog" or a file path (opened for appending, created 0640).
func Open(dest string, o Options) (Destination, error) {
	switch dest {
	case "stdout":
		return nopReopen{o.Stdout}, nil
	case "stderr":
		return nopReopen{o.Stderr}, nil
	case "syslog":
		return DialSyslog(o.SyslogSocket, o.SyslogTag)
	}
	return OpenFile(dest)
}

type nopReopen struct{ io.Writer }

func (nopReopen) Reopen() error { return nil }
func (nopReopen) Close() error  { return nil }

// File is an append-only log file that Reopen opens again by name, so that
// after logrotate renamed it new lines go to a new file at the same path.
type File struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// OpenFile opens path for appending, creating it 0640.
func OpenFile(path string) (*File, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
}

// Write appends p.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return 0, os.ErrClosed
	}
	return f.f.Write(p)
}

// Reopen opens the path again and swaps it in; if that fails the old file
// stays in use (lines keep going to the renamed file rather than nowhere).
func (f *File) Reopen() error {
	nf, err := openAppend(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.f
	f.f = nf
	f.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}

// Syslog writes each line as one datagram to a local syslog socket in the
// format of the C library's syslog(3) (RFC 3164 as sent locally; the daemon
// adds the host name): "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE", facility
// local0, severity info.
//
// A write never blocks the data path: when the socket's queue is full (the
// daemon is behind) the line is dropped and counted. When the daemon went
// away (restart), the next write reconnects once.
type Syslog struct {
	path, tag string
	pid       int
	mu        sync.Mutex
	c         *net.UnixConn
	closed    bool
	dropped   atomic.Uint64
	now       func() time.Time
}

// syslogPRI is facility local0 (16) × 8 + severity info (6).
const syslogPRI = 16*8 + 6

// DialSyslog connects to the syslog socket at path (default /dev/log).
func DialSyslog(path, tag string) (*Syslog, error) {
	if path == "" {
		path = DefaultSyslogSocket
	}
	if tag == "" {
		tag = "fulcrum"
	}
	s := &Syslog{path: path, tag: tag, pid: os.Getpid(), now: time.Now}
	c, err := s.dial()
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

func (s *Syslog) dial() (*net.UnixConn, error) {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("syslog socket %s: %w", s.path, err)
	}
	return c, nil
}

// Dropped is how many lines were dropped because the socket was full or
// unreachable.
func (s *Syslog) Dropped() uint64 { return s.dropped.Load() }

// Write sends p (one line; the trailing newline is removed) as one message.
func (s *Syslog) Write(p []byte) (int, error) {
	msg := p
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	frame := make([]byte, 0, len(msg)+64)
	frame = append(frame, '<')
	frame = strconv.AppendInt(frame, syslogPRI, 10)
	frame = append(frame, '>')
	frame = s.now().AppendFormat(frame, time.Stamp)
	frame = append(frame, ' ')
	frame = append(frame, s.tag...)
	frame = append(frame, '[')
	frame = strconv.AppendInt(frame, int64(s.pid), 10)
	frame = append(frame, "]: "...)
	frame = append(frame, msg...)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	err := s.send(frame)
	if err != nil && !errors.Is(err, syscall.EAGAIN) {
		// The daemon restarted or the socket went away: reconnect once.
		if c, derr := s.dial(); derr == nil {
			if s.c != nil {
				s.c.Close()
			}
			s.c = c
			err = s.send(frame)
		}
	}
	if err != nil {
		s.dropped.Add(1)
		return 0, err
	}
	return len(p), nil
}

// send makes one non-blocking attempt: a full socket queue returns EAGAIN
// at once instead of parking the caller.
func (s *Syslog) send(frame []byte) error {
	if s.c == nil {
		return net.ErrClosed
	}
	rc, err := s.c.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		_, werr = syscall.Write(int(fd), frame)
		return true // never wait for writability
	})
	if err != nil {
		return err
	}
	return werr
}

// Reopen reconnects to the socket (after the daemon restarted).
func (s *Syslog) Reopen() error {
	c, err := s.dial()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return net.ErrClosed
	}
	old := s.c
	s.c = c
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the socket.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.c == nil {
		return nil
	}
	err := s.c.Close()
	s.c = nil
	return err
}
