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
// It also owns what an operator changes at run time and expects to find
// after a restart: member states are kept in a state file beside the
// configuration (state.go), and a configuration posted through the API is
// saved over the configuration file (backend.go), both written atomically.
//
// F5 equivalent: TMM's configuration load (mcpd → tmm) plus `tmsh load sys config`.
package engine
