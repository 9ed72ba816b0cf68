// Package tcp is Fulcrum's TCP profile: the model of the settings an
// operator writes under profiles.tcp, the built-in profiles, inheritance,
// load-time checks, and the mapping of every setting onto what the Linux
// kernel offers for one socket (setsockopt), reading it back
// (getsockopt/TCP_INFO) and sizing buffers from the measured bandwidth-delay
// product.
//
// What it owns:
//   - Settings (what a profile writes; nil = inherit) and Profile (resolved,
//     every value filled in), Builtins and Resolve (parent chains, cycles,
//     ranges, the built-in names);
//   - System (a snapshot of the sysctls that govern what cannot be set per
//     socket), AvailableCongestionControls and Notices (the reference's three
//     proxy-buffer rules, system-wide settings that differ from the host, and
//     settings Linux cannot honour per socket);
//   - socket application: ListenControl / ApplyListener for the listening
//     socket, DialControl for the server-side socket before connect, ApplyConn
//     for every connection, ReadBack / GetInfo to see what the kernel holds,
//     AutoTune and AutoProxyBuffer for "auto" sizes, and small helpers the data
//     path needs (QuickAck, Abort, NegotiatedMSS).
//
// What it must not touch: the proxy data path (copying between sockets, the
// proxy buffers themselves, idle/FIN_WAIT/CLOSE_WAIT/zero-window timers, the
// reset-on-timeout decision) belongs to package virtual, which reads the
// Profile's values; it never changes sysctls or routes (host-wide state) —
// where Linux has only a system-wide or per-route knob it says so in a notice
// and in docs/tcp-profiles.md instead of pretending. It does not import
// config (config imports it).
//
// F5 equivalent: the LTM TCP profile (ltm profile tcp, with defaults-from
// inheritance and the built-ins tcp, tcp-lan-optimized, tcp-wan-optimized,
// tcp-mobile-optimized). HAProxy has a handful of the same knobs spread over
// bind/server options (tcp-ut, mss, tos, nodelay-less "tcp-smart-*",
// tune.rcvbuf/sndbuf, defer-accept).
package tcp
