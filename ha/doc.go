// Package ha is Fulcrum's high availability: the device group, failure
// detection by heartbeats, and traffic groups moving between devices (F5:
// device service clustering — a Sync-Failover device group with floating
// traffic groups, network failover on UDP 1026).
//
// It owns: the heartbeat sockets (one per HA path), what this device knows
// of its peers, and which traffic groups are active here. It drives the
// engine only through Lifecycle (start or stop the virtual servers of a
// traffic group) and the host only through netcfg (floating addresses).
// It does not reach into listeners, tables or connections.
//
// # Decisions
//
// Every device runs the same rule on what it has heard (decide.go): a group
// is held by the device that claims it with the highest generation (ties:
// earlier in HA order); when no live device claims it, the first live device
// in HA order that is not holding back takes it with a generation one above
// any it has seen. A peer is live while any of its HA paths delivered an
// authentic heartbeat within dead_time. An active device releases a group
// before anyone else takes it when the operator moves it or auto failback
// hands it back: it stops its virtuals, removes the addresses, and only then
// says so in its heartbeat, naming the device it hands the group to.
//
// With two devices this is the behaviour of F5 network failover and of
// VRRP: if every HA path is cut, both devices go active. Groups of three or
// more devices decide by majority instead (quorum_mode.go, ha/quorum): the
// raft leader assigns each group, and a device serves only while it is
// assigned the group and in touch with a majority.
//
// # Stalls and crashes
//
// The loop that sends heartbeats is the loop that decides and renews the
// floating addresses' lifetime (netcfg). If that loop was stalled for
// dead_time or more (SIGSTOP, a hung host), peers have taken its groups
// over: on resuming it releases every group before doing anything else and
// waits dead_time before taking any again. A crashed process cannot do that;
// its addresses lapse by their lifetime, and a restarted process removes any
// left over before it starts.
package ha
