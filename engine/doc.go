// Package engine is the running instance: it compiles a validated
// configuration into pools, persistence profiles, TLS settings and one
// virtual.Plan per virtual server, opens or keeps listeners, points the
// health monitors at the members, and swaps everything atomically on reload.
//
// It owns the runtime objects that outlive a reload: the connection table,
// the persistence table, the monitor manager, pool members (carried over by
// address), per-virtual statistics and listeners whose address did not
// change. It implements api.Backend, so the REST API reads live state through
// it and never reaches into the data plane.
//
// F5 equivalent: TMM's configuration load (mcpd → tmm) plus `tmsh load sys config`.
package engine
