// Package h1 is Fulcrum's HTTP/1.1 message parser and body framer for the
// full proxy: it reads one request or response head from a *bufio.Reader,
// decides how the body that follows is delimited, and copies that body to the
// other side in valid framing.
//
// It is deliberately not net/http. A proxy must forward what it received, so
// header order and the case of field names are kept, nothing is canonicalised
// and nothing is added. It must also never disagree with the peer behind it
// about where a message ends, so the parser is strict where leniency enables
// request smuggling or response splitting (RFC 9112 §11.2) and lenient only
// where the RFC asks for robustness and the leniency cannot be misread:
//
//   - bare LF is accepted as a line end in the head (RFC 9112 §2.2) but a bare
//     CR anywhere is refused, as is obs-fold, whitespace before the colon, a
//     field name that is not a token, and control characters in values;
//   - Transfer-Encoding and Content-Length together, differing Content-Length
//     values, a Content-Length that is not plain digits, Transfer-Encoding in
//     HTTP/1.0, and chunked used twice or not last are all refused (400);
//     an unknown final transfer coding is refused with 501;
//   - in the chunked body, every framing line must end in CRLF (the body is not
//     the head, RFC 9112 §7.1), sizes are bounded to 2^62, and chunk
//     extensions are checked against their grammar and then dropped;
//   - a few empty lines before a request line are skipped (RFC 9112 §2.2).
//
// Parsing allocates one string for the whole head (every field, method and
// target is a substring of it), one Header slice and the message struct; the
// benchmark in this package keeps that honest.
//
// Errors: every parse error is an *Error whose Status is what a server should
// answer (400, 431, 501 or 505) and which wraps ErrMalformed,
// ErrHeaderTooLarge, ErrTooManyHeaders or ErrVersion. I/O errors from the
// underlying reader (timeouts, resets) are returned wrapped but are not parse
// errors; StatusOf reports 0 for them. A proxy that fails to parse a response
// answers its client 502 whatever the Status says.
//
// What it must not touch: connections, timeouts, pooling, header rewriting
// policy (X-Forwarded-For, hop-by-hop removal) and the choice of what to send
// on error all belong to the proxy loop (package virtual). This package only
// reads, validates and writes messages.
//
// F5 equivalent: the HTTP parser behind the "http" profile of a Standard
// virtual server (its max header size and count become Limits), run with the
// strictness of HAProxy's default h1 parser (no "option
// accept-invalid-http-request") rather than BIG-IP's historical leniency.
package h1
