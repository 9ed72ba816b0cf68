package virtual

import (
	"errors"
	"syscall"
)

// Whose fault an error is decides where it is charged: a member's health
// and error counters see only what the member did; Fulcrum's own resource
// limits are logged as Fulcrum's and never take a member out of service.

// isLocalFault reports errors that come from this host's own resources or
// configuration rather than from the member: out of file descriptors,
// kernel buffers or memory, no ephemeral port (or SNAT address) left, a
// missing capability. A dial or socket failure with one of these must not
// feed passive health detection.
func isLocalFault(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range [...]syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, // file descriptors
		syscall.ENOBUFS, syscall.ENOMEM, // kernel buffers, memory
		syscall.EADDRNOTAVAIL, syscall.EADDRINUSE, // ephemeral ports or SNAT addresses exhausted
		syscall.EPERM, syscall.EACCES, // capabilities (IP_TRANSPARENT), local firewall
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
