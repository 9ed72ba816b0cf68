// Package persist owns session persistence ("stickiness"): the persistence
// table that maps a client identity to the pool member it was sent to, and the
// persistence profiles that decide what that identity is.
//
// F5 equivalent: LTM persistence profiles (ltm persistence source-addr,
// dest-addr, cookie, universal, hash, msrdp, sip, ssl) and the persistence
// records that `show ltm persistence persist-records` prints. HAProxy equivalent: stick tables with
// `stick on src`, `cookie NAME insert` and `stick store-response res.cook()`.
//
// Profile types:
//
//   - source_addr: the client address masked to a prefix (F5 Source Address
//     Affinity with a mask, HAProxy `stick on src`). Table based.
//   - cookie_insert: stateless. The member address and pool name are written
//     into a cookie that carries an HMAC, so no table entry exists and the
//     cookie is honoured by every device that shares the secret (F5 Cookie
//     Insert, Caddy's HMAC cookie). It survives a failover with no mirroring.
//   - cookie_passive: the application sets its own session cookie (for
//     example JSESSIONID); the profile learns "cookie value -> member" from the
//     response and looks the value up on later requests (HAProxy
//     `stick store-response res.cook(JSESSIONID)`, NGINX `sticky learn`).
//     F5's "cookie passive" method is different: it expects the server itself
//     to write a cookie in F5's encoded format. The learning variant is the one
//     that works with unmodified applications, so that is what we implement.
//   - universal: any HTTP request attribute (a header, a query parameter, a
//     cookie or the URI path) as the identity (F5 Universal persistence with
//     an iRule, HAProxy `stick on <expr>`). Table based.
//   - dest_addr: the virtual-side (destination) address masked to a prefix
//     (F5 Destination Address Affinity, HAProxy `stick on dst`). Table based.
//   - hash: a key (source_addr or a universal key) ranked over the pool's
//     members by rendezvous hashing (hash.go): no table, the same answer on
//     every device (F5 Hash persistence, HAProxy `hash-type consistent`).
//   - msrdp, sip, ssl: the first bytes the client sends, read by the
//     bounded parsers in wire.go: the RDP routing token or mstshash cookie
//     (the source address without one), the SIP Call-ID, the TLS session
//     ID (also learnt from the ServerHello). F5 Microsoft Remote Desktop,
//     SIP and SSL persistence. Table based; Peek and Inspect tell the proxy
//     how far and how long to read.
//
// Records are plain values with no pointers into the table, and every change
// is published on an events.Hub (created, updated, expired), so the HA mirror
// can recreate the same table on a peer device and the API can show it.
//
// This package must not choose members, check their health or touch sockets:
// the proxy asks Lookup for a target, decides whether that member is usable,
// and reports its final choice back with Record.
package persist
