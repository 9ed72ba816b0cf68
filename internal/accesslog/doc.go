// Package accesslog owns the HTTP access log's output: the slog.Handler that
// formats each request record (one JSON object per line, or a HAProxy-like
// one-line text format) and the destinations it writes to — a file that can
// be reopened after logrotate moved it, stdout/stderr, or the local syslog
// socket.
//
// The data path (package virtual) emits one slog record per request with the
// message "request" and the attributes listed in Fields; this package only
// formats and writes them. Every record becomes exactly one Write call, so a
// syslog destination sends one datagram per request and file lines never
// interleave.
package accesslog
