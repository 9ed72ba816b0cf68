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
//     keeps them in an epoll set of the listener's own, waited on through
//     Go's poller, and starts a goroutine when data arrives. That is what
//     brings an idle connection to about 1.8 KiB.
//
// It must not own configuration parsing (package config), member state and
// balancing (package pool), health (package monitor) or the tables' internals
// (packages conntrack and persist): it calls their APIs.
//
// F5 equivalent: the "Standard" virtual server and its clientside/serverside
// flows (TMM), with OneConnect for HTTP.
package virtual
