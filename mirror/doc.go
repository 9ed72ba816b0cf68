// Package mirror is persistence and connection mirroring between the devices of a device
// group (F5: persistence mirroring over the mirroring channel; HAProxy:
// the peers protocol): the persistence records of virtual servers whose
// profile says `mirror: true` are copied from the device where their
// traffic group is active to the group's other devices (with two, the
// next-active one; with three or more, every other device, whichever the
// majority picks next), so that after a failover every record is honoured
// there.
//
// It owns one channel per traffic group: a TCP port (failover.mirror_port
// plus the group's index) on each of this device's mirror addresses, where
// it receives, and, while the group is active here, a sender that
// connects to the peer's primary mirror address, or its secondary when
// the primary fails. Every channel is mutual TLS 1.3 with the device
// certificates (ha/trust): a device that is not in the group is refused.
//
// A sender starts every connection with a full snapshot and then streams
// changes (persist.Table.Follow: subscribe, then copy, so nothing is lost
// between the two); the receiver applies them in order, acknowledges, and
// at the end of a snapshot removes the group's records the sender no
// longer has. A sender whose event queue overflowed sends a new snapshot;
// one whose receiver stops acknowledging reconnects. Records carry their
// origin, so two devices that both hold a group (every HA path cut) do not
// echo records back and forth.
//
// The same channel carries connection mirroring (conns.go, shadow.go) to
// the group's next device in HA order: the connections of mirrored tcp
// virtuals (both sockets' parameters at setup, then every relayed chunk,
// acknowledged before the relay writes it on: the write gate; a frozen
// connection's final state in a planned handover) and the flows of
// mirrored udp virtuals (their entries). The standby keeps them as
// shadows, bounded, and hands them to the engine when the group goes
// active there (TakeShadows). A new stream from the peer replaces every
// shadow: the connections of the stream before were lost with it.
//
// The wire format (wire.go) is its own, not the API's JSON: times travel
// as an age and a remaining life, so the devices' clocks need not agree.
package mirror
