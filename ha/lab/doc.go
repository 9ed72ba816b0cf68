// Package lab is the device-group lab: real fulcrum processes, each in its
// own network namespace on a shared bridge with a second, direct HA link,
// a client namespace probing a virtual server on a floating address, and
// the failures an operator meets — kill -9, SIGSTOP/SIGCONT, HA paths cut,
// an operator's failover. Its tests are the proof of docs/ha.md; with
// FULCRUM_HA_BENCH=1 it also measures failover times beside keepalived's
// VRRP in the same namespaces (docs/ha.md has the figures).
//
// The package has no non-test code.
package lab
