package virtual

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestIsLocalFault(t *testing.T) {
	wrap := func(e syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{wrap(syscall.EMFILE), true},
		{wrap(syscall.ENFILE), true},
		{wrap(syscall.ENOBUFS), true},
		{wrap(syscall.EADDRNOTAVAIL), true},
		{fmt.Errorf("socket: %w", syscall.EMFILE), true},
		{wrap(syscall.ECONNREFUSED), false},
		{wrap(syscall.ETIMEDOUT), false},
		{wrap(syscall.EHOSTUNREACH), false},
		{nil, false},
	} {
		if got := isLocalFault(tc.err); got != tc.want {
			t.Errorf("isLocalFault(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
