// Package virtual owns the listeners and the per-connection flow of every
// virtual-server type: tcp (L4 full proxy through bounded proxy buffers), udp
// (datagram proxy with a flow table), and http (HTTP/1.1 full proxy with
// per-request balancing and server-side connection reuse), each optionally
// terminating TLS (client-ssl) and re-encrypting (server-ssl).
//
// A Listener holds the Plan it serves behind an atomic pointer. Reload swaps
// the pointer; a connection reads the Plan once when it is accepted and
// finishes on it, so established connections never see a half-applied
// configuration. Listeners whose address did not change are never closed.
//
// It must not own configuration parsing (package config), member state and
// balancing (package pool), health (package monitor) or the tables' internals
// (packages conntrack and persist): it calls their APIs.
//
// F5 equivalent: the "Standard" virtual server and its clientside/serverside
// flows (TMM), with OneConnect for HTTP.
package virtual
