// Package virtual owns the listeners and the per-connection flow of every
// virtual-server type: tcp (L4 full proxy through bounded proxy buffers),
// udp (datagram proxy with a flow table), and http (HTTP/1.1 full proxy with
// per-request balancing and server-side connection reuse), each optionally
// terminating TLS (client-ssl) and re-encrypting (server-ssl).
//
// A Listener holds the Plan it serves behind an atomic pointer. Reload swaps
// the pointer; a connection reads the Plan once when it is accepted and
// finishes on it, so established connections never see a half-applied
// configuration. Listeners whose address did not change are never closed.
//
// Where this departs from DESIGN.md, and why:
//   - No splice(2) on the L4 path (DESIGN §1 suggests it). A spliced flow
//     between sockets with multi-megabyte buffers stalled for seconds on the
//     development kernel (the receiving socket kept a zero window with an
//     empty queue), which a proxy must never do; TestTCPLargeBuffersDoNotStall
//     in package engine reproduces it against a splice relay. Each direction
//     is instead a relay through 64 KiB chunks taken from a pool only while
//     data waits, which also gives F5's proxy-buffer high/low marks exact
//     meaning (relay.go).
//   - Idle HTTP client connections hold no goroutine: the parker (parker.go)
//     keeps them in an epoll set of the listener's own, edge-triggered and
//     registered once per connection, waited on through Go's poller, and
//     hands a connection to a worker goroutine (kept with its grown stack
//     while there is work) when data arrives. The same set is the readiness
//     oracle of the request path: a request waits for its member's response
//     there instead of failing a read first, and an idle server connection
//     the loop saw nothing on over a whole round is reused without a peek.
//     Socket reads and writes of the HTTP path are raw non-blocking system
//     calls through syscall.RawConn (rawio.go).
//
// An http request is an exchange (exchange.go) in named steps: rewrite,
// connect (persistence and balancing with reselect: members that refused
// are skipped for the request, so a dead priority group spills over into
// the next and a persisted client is re-persisted), send (a body goes out
// while the response is already watched for, so an early answer such as
// 413 is forwarded), forward, finish. The member's slot is a lease released
// exactly once. Every failure is charged to whoever caused it (fault.go,
// exchange.go): the client (client errors, never the member's health), the
// member (errors and passive health), or Fulcrum's own resources (a
// "local_resources" rejection, never the member). Idle deadlines are
// renewed while an exchange moves bytes (countConn), so idle means idle,
// not a total time. OneConnect reuses an idle server connection only when
// it is clean (the member sent nothing while it idled) and only under the
// same key (member, server-ssl configuration, serverside profile, source).
//
// Listen opens the socket for a plan and Serve (ServeUDP) serves one handed
// in, as net/http's Server.Serve; Plan.DialContext replaces the dialer (as
// net/http's Transport.DialContext). UDP flows hold no goroutine and no
// buffer of their own: one epoll set per listener and a shared buffer
// (udp.go), and the table is bounded by the virtual's connection limit.
//
// It must not own configuration parsing (package config), member state and
// balancing (package pool), health (package monitor) or the tables' internals
// (packages conntrack and persist): it calls their APIs.
//
// F5 equivalent: the "Standard" virtual server and its clientside/serverside
// flows (TMM), with OneConnect for HTTP.
package virtual
