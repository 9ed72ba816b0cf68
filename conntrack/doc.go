// Package conntrack owns the connection table: one Entry per client
// connection (or UDP flow) the proxy is carrying, with its clientside and
// serverside addresses, byte counters and idle time. It is what
// `fulcrum show connections` and the API print, and its change events
// (created, updated, expired) feed metrics and, later, connection mirroring.
//
// F5 equivalent: the LTM connection table (`show sys connection`,
// `delete sys connection`) and the virtual server idle timeout enforced by
// the TCP/UDP profile's idle-timeout reaper. HAProxy equivalent: the session
// list (`show sess`) and `timeout client/server` on idle sessions.
//
// The table never touches sockets. The proxy adds an entry with a closer
// function; when an entry has been idle longer than its IdleTimeout, the
// reaper calls that closer once, the proxy closes its sockets and then calls
// Remove. The hot path (Touch, AddIn, AddOut) is a few atomic operations
// with no locks and no allocation, and events are only built when someone
// subscribes.
package conntrack
