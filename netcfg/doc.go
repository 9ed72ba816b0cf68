// Package netcfg owns the network objects Fulcrum adds to the host: today
// the floating addresses of traffic groups (F5: floating self IPs and
// virtual addresses of a traffic group), added, renewed, removed and
// announced through netlink (github.com/vishvananda/netlink), gratuitous
// ARP (github.com/mdlayher/arp) and unsolicited neighbour advertisements
// (github.com/mdlayher/ndp).
//
// It never touches an address or interface it was not asked to: callers
// name the exact prefix and interface. VLANs, bridges and self IPs (the
// EtherIP work) will live here too.
//
// # Why floating addresses have a lifetime
//
// A Fulcrum process that crashes (kill -9) or hangs (SIGSTOP) on a live
// host cannot remove its addresses, and the kernel would keep answering ARP
// for them while the peer device serves them: two hosts claiming one
// address. So a floating address is added with a short valid lifetime that
// the active device keeps renewing (Lifetime); when the process stops
// renewing, the kernel itself deletes the address within Lifetime plus the
// kernel's lifetime-check granularity (about a second).
package netcfg
