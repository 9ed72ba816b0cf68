package h1

import (
	"errors"
	"strconv"
)

// Sentinel errors. Every parse error is an *Error that wraps exactly one of
// them, so callers can use errors.Is without caring about the detail.
var (
	// ErrMalformed: the message violates HTTP/1.1 syntax or framing rules.
	ErrMalformed = errors.New("malformed HTTP/1.x message")
	// ErrHeaderTooLarge: the head exceeded Limits.MaxHeaderBytes.
	ErrHeaderTooLarge = errors.New("HTTP head too large")
	// ErrTooManyHeaders: the head had more than Limits.MaxHeaders fields.
	ErrTooManyHeaders = errors.New("too many HTTP header fields")
	// ErrVersion: a syntactically valid HTTP version other than 1.0 or 1.1.
	ErrVersion = errors.New("unsupported HTTP version")
)

// Error is a parse error. Status is the status code a server should answer a
// client with (400, 431, 501 or 505); Reason says in a few words what was
// wrong, for logs (it is not a reason phrase to send); Err is the sentinel.
type Error struct {
	Status int
	Reason string
	Err    error
}

func (e *Error) Error() string {
	return "h1: " + e.Reason + " (" + strconv.Itoa(e.Status) + ")"
}

func (e *Error) Unwrap() error { return e.Err }

// StatusOf returns the status code to answer for err: the Status of an
// *Error in its chain, 431/505/400 for a bare sentinel, and 0 when err is nil
// or is not a parse error (an I/O error such as io.EOF or a timeout, for which
// the caller decides: usually close silently, or 408/504).
func StatusOf(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	switch {
	case errors.Is(err, ErrHeaderTooLarge), errors.Is(err, ErrTooManyHeaders):
		return 431
	case errors.Is(err, ErrVersion):
		return 505
	case errors.Is(err, ErrMalformed):
		return 400
	}
	return 0
}

// malformed builds a 400 error. Reasons are constant strings on hot paths; the
// detail helpers below quote attacker-controlled bytes with a length cap.
func malformed(reason string) *Error {
	return &Error{Status: 400, Reason: reason, Err: ErrMalformed}
}

// quoteCap quotes s for an error message, cutting it at 64 bytes so a hostile
// peer cannot make our logs arbitrarily large.
func quoteCap(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}
