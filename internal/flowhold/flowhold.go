package flowhold

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Flow is one TCP connection as seen from this host.
type Flow struct {
	Local, Remote netip.AddrPort
}

// Holder owns one nftables table (inet family) in one network namespace.
// Its methods are safe for concurrent use.
type Holder struct {
	mu      sync.Mutex
	conn    *nftables.Conn
	table   *nftables.Table
	next    uint64           // id of the next hold
	holds   map[uint64]*hold // live holds
	dropped uint64           // packets dropped by holds already released
	closed  bool
}

// hold is what one Hold or HoldFlows call installed.
type hold struct {
	chains []*nftables.Chain
	sets   []*nftables.Set
}

// Batch limits. The whole batch goes to the kernel in one sendmsg on a
// netlink socket whose send buffer is about 200 KB, so elements are added
// in chunks, several batches if needed.
const (
	elemsPerMessage = 512
	elemsPerBatch   = 2048
)

// TCP flag bits (byte 13 of the TCP header).
const (
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// New opens the nftables table named table (family inet) in the network
// namespace of the calling thread, deleting a table of that name left by an
// earlier process first. Only one process per namespace may own a table
// name. It needs CAP_NET_ADMIN.
func New(table string) (*Holder, error) {
	if table == "" || len(table) > 255 {
		return nil, fmt.Errorf("flowhold: invalid table name %q", table)
	}
	// The lasting netlink socket is created in the namespace of this
	// thread, however the goroutine is scheduled later.
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("flowhold: open network namespace: %w", err)
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(ns.Fd())))
	_ = ns.Close()
	if err != nil {
		return nil, wrap("open nftables netlink socket", err)
	}
	h := &Holder{
		conn:  conn,
		table: &nftables.Table{Name: table, Family: nftables.TableFamilyINet},
		holds: make(map[uint64]*hold),
	}
	// Add (a no-op if it exists), delete, add: one transaction that
	// replaces a stale table, whatever it held, with an empty one.
	conn.AddTable(h.table)
	conn.DelTable(h.table)
	conn.AddTable(h.table)
	if err := conn.Flush(); err != nil {
		_ = conn.CloseLasting()
		return nil, wrap("create table "+table, err)
	}
	return h, nil
}

// Close deletes the table, and with it every hold still in place. Release
// functions called afterwards return nil.
func (h *Holder) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.holds = nil
	h.conn.DelTable(h.table)
	err := h.conn.Flush()
	if cerr := h.conn.CloseLasting(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return wrap("delete table "+h.table.Name, err)
	}
	return nil
}

// Hold drops, until release is called: (1) inbound TCP packets whose
// destination is one of addrs, except pure SYNs (SYN set, ACK not set), so
// that established flows to the addresses freeze while new connections
// still reach listeners, and inbound UDP datagrams to them; and (2)
// outbound TCP packets with RST set whose source is one of addrs. IPv4 and IPv6 addresses may be mixed. Release is
// idempotent and safe to call after Close.
func (h *Holder) Hold(addrs []netip.Addr) (release func() error, err error) {
	var v4, v6 [][]byte
	seen := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() {
			return nil, errors.New("flowhold: invalid address")
		}
		a = a.Unmap().WithZone("")
		if seen[a] {
			continue
		}
		seen[a] = true
		if a.Is4() {
			v4 = append(v4, a.AsSlice())
		} else {
			v6 = append(v6, a.AsSlice())
		}
	}
	if len(seen) == 0 {
		return nil, errors.New("flowhold: no addresses to hold")
	}
	return h.install(func(id uint64, in, out *nftables.Chain) ([]*nftables.Set, []pending, error) {
		var sets []*nftables.Set
		var elems []pending
		for _, fam := range []struct {
			keys   [][]byte
			suffix string
			typ    nftables.SetDatatype
			proto  byte
			daddr  uint32 // offset in the network header
			saddr  uint32
		}{
			{v4, "a4", nftables.TypeIPAddr, unix.NFPROTO_IPV4, 16, 12},
			{v6, "a6", nftables.TypeIP6Addr, unix.NFPROTO_IPV6, 24, 8},
		} {
			if len(fam.keys) == 0 {
				continue
			}
			set := &nftables.Set{
				Table:   h.table,
				Name:    fmt.Sprintf("h%d_%s", id, fam.suffix),
				ID:      setID(id, len(sets)),
				KeyType: fam.typ,
			}
			if err := h.conn.AddSet(set, nil); err != nil {
				return nil, nil, err
			}
			sets = append(sets, set)
			elems = append(elems, pending{set, fam.keys})
			alen := fam.typ.Bytes
			h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: in, Exprs: concat(
				matchTCP(fam.proto),
				[]expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddr, Len: alen},
					&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
				},
				flagsNotEqual(tcpSYN|tcpACK, tcpSYN),
				counterDrop(),
			)})
			// UDP datagrams to the addresses wait too: a flow being
			// re-created must not be started afresh by its own datagram.
			h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: in, Exprs: concat(
				matchL4(fam.proto, unix.IPPROTO_UDP),
				[]expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddr, Len: alen},
					&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
				},
				counterDrop(),
			)})
			h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: out, Exprs: concat(
				matchTCP(fam.proto),
				[]expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fam.saddr, Len: alen},
					&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
				},
				flagsNotEqual(tcpRST, 0),
				counterDrop(),
			)})
		}
		return sets, elems, nil
	})
}

// HoldFlows drops, until release is called, every inbound TCP packet of
// exactly the given flows (SYNs included) and their outbound RSTs. Flows of
// both IP versions may be mixed. The flows go into one hash set per IP
// version keyed by the 4-tuple, matched by one rule per version and
// direction, so the cost of a hold grows with the number of flows only at
// installation (see BenchmarkHoldFlows).
func (h *Holder) HoldFlows(flows []Flow) (release func() error, err error) {
	var v4, v6 [][]byte
	seen := make(map[Flow]bool, len(flows))
	for _, f := range flows {
		l, r := f.Local.Addr().Unmap().WithZone(""), f.Remote.Addr().Unmap().WithZone("")
		if !l.IsValid() || !r.IsValid() || l.Is4() != r.Is4() {
			return nil, fmt.Errorf("flowhold: invalid flow %v -> %v", f.Local, f.Remote)
		}
		k := Flow{netip.AddrPortFrom(l, f.Local.Port()), netip.AddrPortFrom(r, f.Remote.Port())}
		if seen[k] {
			continue
		}
		seen[k] = true
		key := flowKey(k)
		if l.Is4() {
			v4 = append(v4, key)
		} else {
			v6 = append(v6, key)
		}
	}
	if len(seen) == 0 {
		return nil, errors.New("flowhold: no flows to hold")
	}
	return h.install(func(id uint64, in, out *nftables.Chain) ([]*nftables.Set, []pending, error) {
		var sets []*nftables.Set
		var elems []pending
		for _, fam := range []struct {
			keys   [][]byte
			suffix string
			typ    nftables.SetDatatype
			proto  byte
			alen   uint32
			daddr  uint32
			saddr  uint32
		}{
			{v4, "f4", nftables.TypeIPAddr, unix.NFPROTO_IPV4, 4, 16, 12},
			{v6, "f6", nftables.TypeIP6Addr, unix.NFPROTO_IPV6, 16, 24, 8},
		} {
			if len(fam.keys) == 0 {
				continue
			}
			set := &nftables.Set{
				Table:         h.table,
				Name:          fmt.Sprintf("h%d_%s", id, fam.suffix),
				ID:            setID(id, len(sets)),
				KeyType:       nftables.MustConcatSetType(fam.typ, nftables.TypeInetService, fam.typ, nftables.TypeInetService),
				Concatenation: true,
			}
			if err := h.conn.AddSet(set, nil); err != nil {
				return nil, nil, err
			}
			sets = append(sets, set)
			elems = append(elems, pending{set, fam.keys})
			// A concatenation lives in consecutive 32-bit registers
			// (8 = NFT_REG32_00), each field padded to 4 bytes:
			// address, port, address, port.
			words := fam.alen / 4
			r0, r1, r2, r3 := uint32(8), 8+words, 9+words, 9+2*words
			tuple := func(firstAddr, firstPort, secondAddr, secondPort uint32) []expr.Any {
				return []expr.Any{
					&expr.Payload{DestRegister: r0, Base: expr.PayloadBaseNetworkHeader, Offset: firstAddr, Len: fam.alen},
					&expr.Payload{DestRegister: r1, Base: expr.PayloadBaseTransportHeader, Offset: firstPort, Len: 2},
					&expr.Payload{DestRegister: r2, Base: expr.PayloadBaseNetworkHeader, Offset: secondAddr, Len: fam.alen},
					&expr.Payload{DestRegister: r3, Base: expr.PayloadBaseTransportHeader, Offset: secondPort, Len: 2},
					&expr.Lookup{SourceRegister: r0, SetName: set.Name, SetID: set.ID},
				}
			}
			// Inbound: local = destination. Outbound: local = source.
			h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: in, Exprs: concat(
				matchTCP(fam.proto),
				tuple(fam.daddr, 2, fam.saddr, 0),
				counterDrop(),
			)})
			h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: out, Exprs: concat(
				matchTCP(fam.proto),
				tuple(fam.saddr, 0, fam.daddr, 2),
				flagsNotEqual(tcpRST, 0),
				counterDrop(),
			)})
		}
		return sets, elems, nil
	})
}

// pending is a set's elements, added after the set itself.
type pending struct {
	set  *nftables.Set
	keys [][]byte
}

// install creates a hold's two base chains, lets build queue its sets and
// rules, and commits them, followed by the sets' elements.
func (h *Holder) install(build func(id uint64, in, out *nftables.Chain) ([]*nftables.Set, []pending, error)) (func() error, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("flowhold: holder closed")
	}
	id := h.next
	h.next++
	accept := nftables.ChainPolicyAccept
	in := h.conn.AddChain(&nftables.Chain{
		Name: fmt.Sprintf("h%d_in", id), Table: h.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept,
	})
	out := h.conn.AddChain(&nftables.Chain{
		Name: fmt.Sprintf("h%d_out", id), Table: h.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw, Policy: &accept,
	})
	ho := &hold{chains: []*nftables.Chain{in, out}}
	sets, elems, err := build(id, in, out)
	if err == nil {
		ho.sets = sets
		// The first chunk of elements goes into the batch that creates
		// the rules; later chunks follow in batches of their own.
		err = h.addElements(elems)
	}
	if err != nil {
		h.deleteHold(ho) // whatever part of it was committed
		return nil, wrap("install hold", err)
	}
	h.holds[id] = ho
	var once sync.Once
	var rerr error
	return func() error {
		once.Do(func() { rerr = h.release(id) })
		return rerr
	}, nil
}

// addElements queues the elements in messages of at most elemsPerMessage and
// flushes a batch every elemsPerBatch elements and at the end. Called with
// h.mu held and the hold's chains, sets and rules already queued.
func (h *Holder) addElements(elems []pending) error {
	queued := 0
	for _, p := range elems {
		for start := 0; start < len(p.keys); start += elemsPerMessage {
			end := min(start+elemsPerMessage, len(p.keys))
			batch := make([]nftables.SetElement, 0, end-start)
			for _, k := range p.keys[start:end] {
				batch = append(batch, nftables.SetElement{Key: k})
			}
			if err := h.conn.SetAddElements(p.set, batch); err != nil {
				return err
			}
			queued += end - start
			if queued >= elemsPerBatch {
				if err := h.conn.Flush(); err != nil {
					return err
				}
				queued = 0
			}
		}
	}
	return h.conn.Flush()
}

func (h *Holder) release(id uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	ho, ok := h.holds[id]
	if !ok {
		return nil
	}
	delete(h.holds, id)
	if n, err := h.countHold(ho); err == nil {
		h.dropped += n
	}
	if err := h.deleteHold(ho); err != nil {
		return wrap("release hold", err)
	}
	return nil
}

// deleteHold removes a hold's chains (rules first) and sets in one batch.
// Deleting something that is not there fails the whole batch, so only
// objects that exist are queued.
func (h *Holder) deleteHold(ho *hold) error {
	chains, err := h.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return err
	}
	have := make(map[string]bool)
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == h.table.Name {
			have[c.Name] = true
		}
	}
	for _, c := range ho.chains {
		if have[c.Name] {
			h.conn.FlushChain(c)
			h.conn.DelChain(c)
		}
	}
	sets, err := h.conn.GetSets(h.table)
	if err != nil {
		return err
	}
	haveSet := make(map[string]bool)
	for _, s := range sets {
		haveSet[s.Name] = true
	}
	for _, s := range ho.sets {
		if haveSet[s.Name] {
			h.conn.DelSet(s)
		}
	}
	return h.conn.Flush()
}

// countHold sums the packet counters of a hold's rules.
func (h *Holder) countHold(ho *hold) (uint64, error) {
	var n uint64
	for _, c := range ho.chains {
		rules, err := h.conn.GetRules(h.table, c)
		if err != nil {
			return n, err
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					n += ctr.Packets
				}
			}
		}
	}
	return n, nil
}

// Dropped returns how many packets the Holder's holds have dropped, the
// released ones included.
func (h *Holder) Dropped() (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return h.dropped, nil
	}
	n := h.dropped
	for _, ho := range h.holds {
		c, err := h.countHold(ho)
		if err != nil {
			return n, wrap("read counters", err)
		}
		n += c
	}
	return n, nil
}

// matchTCP matches TCP packets of one IP version (in an inet table).
func matchTCP(nfproto byte) []expr.Any { return matchL4(nfproto, unix.IPPROTO_TCP) }

// matchL4 matches packets of one IP version and transport protocol.
func matchL4(nfproto, proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// flagsNotEqual matches tcp flags & mask != value.
func flagsNotEqual(mask, value byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{value}},
	}
}

func counterDrop() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// flowKey is local address . local port . remote address . remote port,
// each field padded to 4 bytes as the kernel lays out a concatenation.
func flowKey(f Flow) []byte {
	l, r := f.Local.Addr().AsSlice(), f.Remote.Addr().AsSlice()
	k := make([]byte, 0, 2*len(l)+8)
	k = append(k, l...)
	k = binary.BigEndian.AppendUint16(k, f.Local.Port())
	k = append(k, 0, 0)
	k = append(k, r...)
	k = binary.BigEndian.AppendUint16(k, f.Remote.Port())
	k = append(k, 0, 0)
	return k
}

// setID is a set's id within a batch, unique per hold. Setting it
// ourselves keeps google/nftables from allocating one from a package
// counter that is not safe for concurrent use.
func setID(hold uint64, i int) uint32 {
	return uint32(hold)<<2 | uint32(i) | 1<<31
}

// wrap prefixes errors and names the capability a permission error wants.
func wrap(op string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("flowhold: %s: %w (CAP_NET_ADMIN needed)", op, err)
	}
	return fmt.Errorf("flowhold: %s: %w", op, err)
}
