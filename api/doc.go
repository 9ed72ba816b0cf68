// Package api is Fulcrum's management plane: the REST API, the Prometheus
// metrics endpoint, the built-in web dashboard, and the Go client the
// `fulcrum show|member|reload|delete` commands use.
//
// # What it owns
//
//   - The wire types of the management API (VirtualStatus, PoolStatus,
//     MemberStatus, ConnectionStatus, PersistenceRecord) and their JSON shape.
//   - The HTTP handler (NewHandler): /api/v1/..., /metrics, /healthz and the
//     dashboard at /, with bearer-token authentication and JSON errors.
//   - Metrics: counters and gauges are read from the Backend when Prometheus
//     scrapes (a custom collector emitting const metrics, so the data path pays
//     nothing per request for them); the request-latency histogram and the
//     rejected-input counter are fed by the data path through RequestObserver
//     and Rejected.
//   - Client, a small typed client for the same endpoints.
//
// # What it must not touch
//
// The package never imports the engine, the data plane, the pool or the
// configuration packages. Everything it shows or changes goes through the
// Backend interface, which the engine implements. That keeps the management
// plane replaceable and testable with a fake backend, and keeps the data
// path free of HTTP concerns.
//
// # F5 equivalent
//
// iControl REST and tmsh's read-only views: `tmsh show ltm virtual`,
// `show ltm pool ... members`, `show sys connection`, `show ltm persistence
// persist-records`, `modify ltm pool P members modify { M { session
// user-disabled } }`, `load sys config`, `delete sys connection`, `delete
// ltm persistence persist-records`, `list` (GET /api/v1/config, with
// secrets redacted by RedactConfig); the Configuration utility's
// Local Traffic › Network Map for the dashboard; Telemetry Streaming's
// Prometheus output for /metrics. HAProxy's runtime API (`set server state`,
// `show stat`, `show sess`) and its stats page fill the same roles.
//
// # Security notes
//
// When Options.Token is set, every endpoint except /healthz and the
// dashboard page itself requires "Authorization: Bearer TOKEN". The
// dashboard page is static HTML with no data in it; it asks the operator for
// the token and sends it on every API call, so serving it without the token
// leaks nothing. State-changing requests from a browser page of another
// origin are refused (http.CrossOriginProtection), because POST
// /api/v1/config accepts any Content-Type and would otherwise be reachable
// by a cross-site form. A management listener reachable from anything but
// loopback should always have a token.
package api
