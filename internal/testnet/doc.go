// Package testnet builds network-namespace topologies for Fulcrum's tests and
// benchmarks, and runs a user-space WAN emulator between them.
//
// # Namespaces
//
// NS is a named network namespace (visible to `ip netns exec`), created by
// NewNS or, for one test, TempNS. Its helpers add veth pairs (AddVeth),
// addresses, routes, static neighbours, promiscuous mode, offload settings
// (the `ethtool -K` switches, through the SIOCETHTOOL ioctl) and net.*
// sysctls, using netlink (github.com/vishvananda/netlink) rather than
// shelling out; `ip netns add/del` and `tc` are the only commands run.
// NS.Do runs Go code inside the namespace on a goroutine whose OS thread was
// switched with setns(2) once and is never switched back (it dies with the
// NS), so no other goroutine can ever inherit the wrong namespace. Sockets
// keep the namespace they were created in: create listeners and dial inside
// Do (NS.Listen, NS.Dial, NS.ListenPacket do that), use them anywhere.
// NS.Command and NS.Run run programs through `ip netns exec`.
//
// # The WAN emulator
//
// StartWAN (or NewWAN in a test) builds
//
//	client ns                router ns                 server ns
//	eth0 198.18.0.1  ⇄ veth ⇄ rc ─[delay line]─ rs ⇄ veth ⇄ eth0 198.18.0.2
//	2001:db8:4ae::1             AF_PACKET      tbf          2001:db8:4ae::2
//
// and carries real kernel TCP between the two end namespaces, so congestion
// control, TCP profiles and socket options act on real packets.
//
// Why AF_PACKET bridging and not TUN routing: the router namespace has no
// addresses and its kernel never routes; the delay line reads whole Ethernet
// frames from one router-side veth with an AF_PACKET socket and writes them,
// unchanged, out of the other. Client and server share one IPv4 and one IPv6
// subnet and reach each other directly, with static neighbour entries so no
// ARP or NDP ever crosses the emulated path. Compared with TUN, nothing is
// rewritten (TTL, MAC), both IP versions need no extra routing, and the
// egress veth keeps a qdisc on which tc tbf can shape.
//
// Per direction a reader goroutine takes each frame with its kernel receive
// timestamp (SO_TIMESTAMPNS, the moment the frame entered the router
// namespace), decides random loss, draws jitter, and queues a copy due at
// timestamp+delay(+jitter). Without reordering, a frame is never due before
// the one ahead of it. A sender goroutine locked to its own OS thread, with
// that thread's timer slack lowered to 1 ns, sleeps in clock_nanosleep(2)
// until the head of a min-heap is due and sends it. time.Sleep is not used:
// on Linux its wake-ups land ~0.8 ms late (the runtime waits in epoll with
// millisecond resolution), while clock_nanosleep wakes within tens of
// microseconds. Every frame's lateness (send time − due time) is recorded;
// WAN.Stats reports its mean, quantiles and maximum, so the scheduling error
// of any run is measured rather than assumed.
//
// Offloads: the end veths have TSO/GSO/GRO, scatter-gather and transmit
// checksum offload turned off, so every TCP segment is its own MTU-sized
// frame with a complete checksum. Super-packets would make loss and rate act
// on 64 KB aggregates, and CHECKSUM_PARTIAL frames read through AF_PACKET
// carry no valid checksum. A frame longer than a jumbo frame is counted in
// LinkStats.Oversize and dropped.
//
// Rate: when RateBits is set, a tc tbf qdisc on each router egress veth
// (rc, rs) shapes what the delay line emits, so the queue sits at the
// bottleneck router as on a real path. Its queue limit defaults to one
// bandwidth-delay product; tbf drops count in LinkStats.QueueDrops.
//
// Loss is Bernoulli per frame and direction (not Gilbert-Elliott bursts);
// ARP frames are exempt. Loss and jitter come from a PCG generator seeded
// from WANConfig.Seed, so a run can be repeated.
//
// # What it must not touch
//
// Only namespaces it creates (names "fwan-<pid>-<hex>-{client,router,server}"
// by default) and the benchmarking ranges 198.18.0.0/15 and 2001:db8::/32
// inside them; never the host namespace's links, routes or sysctls. Host-wide
// state it reads but does not change: the available congestion controls.
//
// # Equivalents
//
// Linux `tc qdisc add ... netem delay/loss` (absent from these kernels) plus
// `tc tbf`; F5's lab practice of a WAN emulator appliance between client and
// BIG-IP; HAProxy's test suites use netem the same way.
package testnet
