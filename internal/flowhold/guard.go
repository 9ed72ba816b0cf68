package flowhold

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Guard keeps this host from ending, on its own, connections that another
// host may continue: the connections a process mirrors to a standby. It
// drops outbound TCP packets with FIN or RST set whose mark is its mark,
// and it gives its mark to inbound TCP packets of the flows added to it.
//
// The process marks (SO_MARK) the sockets of those connections; if it
// dies, the kernel closes them, and their FINs and resets stay here.
// Before it ends such a connection itself, the process clears the socket's
// mark and removes its flows. With net.ipv4.fwmark_reflect and
// net.ipv6.fwmark_reflect set (the caller's business), a reset the kernel
// sends for a packet that no socket takes any more carries the packet's
// mark, so a guarded flow whose socket is gone draws no reset either.
type Guard struct {
	h          *Holder
	set4, set6 *nftables.Set
	release    func() error
}

// Guard installs the guard for mark. Close releases it.
func (h *Holder) Guard(mark uint32) (*Guard, error) {
	m := binary.NativeEndian.AppendUint32(nil, mark)
	g := &Guard{h: h}
	release, err := h.install(func(id uint64, in, out *nftables.Chain) ([]*nftables.Set, []pending, error) {
		h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: out, Exprs: concat(
			[]expr.Any{
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			},
			flagsNotEqual(tcpFIN|tcpRST, 0),
			counterDrop(),
		)})
		var sets []*nftables.Set
		for i, fam := range []struct {
			typ   nftables.SetDatatype
			proto byte
			alen  uint32
			daddr uint32
			saddr uint32
		}{
			{nftables.TypeIPAddr, unix.NFPROTO_IPV4, 4, 16, 12},
			{nftables.TypeIP6Addr, unix.NFPROTO_IPV6, 16, 24, 8},
		} {
			set := &nftables.Set{
				Table:         h.table,
				Name:          fmt.Sprintf("g%d_%d", id, i),
				ID:            setID(id, i),
				KeyType:       nftables.MustConcatSetType(fam.typ, nftables.TypeInetService, fam.typ, nftables.TypeInetService),
				Concatenation: true,
			}
			if err := h.conn.AddSet(set, nil); err != nil {
				return nil, nil, err
			}
			sets = append(sets, set)
			words := fam.alen / 4
			r0, r1, r2, r3 := uint32(8), 8+words, 9+words, 9+2*words
			h.conn.AddRule(&nftables.Rule{Table: h.table, Chain: in, Exprs: concat(
				matchTCP(fam.proto),
				[]expr.Any{
					&expr.Payload{DestRegister: r0, Base: expr.PayloadBaseNetworkHeader, Offset: fam.daddr, Len: fam.alen},
					&expr.Payload{DestRegister: r1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Payload{DestRegister: r2, Base: expr.PayloadBaseNetworkHeader, Offset: fam.saddr, Len: fam.alen},
					&expr.Payload{DestRegister: r3, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
					&expr.Lookup{SourceRegister: r0, SetName: set.Name, SetID: set.ID},
					&expr.Immediate{Register: 1, Data: m},
					&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
				},
			)})
		}
		g.set4, g.set6 = sets[0], sets[1]
		return sets, nil, nil
	})
	if err != nil {
		return nil, err
	}
	g.release = release
	return g, nil
}

// Add guards flows (local: this host's address and port).
func (g *Guard) Add(flows ...Flow) error { return g.change(true, flows) }

// Remove stops guarding flows.
func (g *Guard) Remove(flows ...Flow) error { return g.change(false, flows) }

func (g *Guard) change(add bool, flows []Flow) error {
	var v4, v6 []nftables.SetElement
	for _, f := range flows {
		l, r := f.Local.Addr().Unmap(), f.Remote.Addr().Unmap()
		if !l.IsValid() || !r.IsValid() || l.Is4() != r.Is4() {
			return fmt.Errorf("flowhold: invalid flow %v -> %v", f.Local, f.Remote)
		}
		k := nftables.SetElement{Key: flowKey(Flow{Local: netip.AddrPortFrom(l, f.Local.Port()), Remote: netip.AddrPortFrom(r, f.Remote.Port())})}
		if l.Is4() {
			v4 = append(v4, k)
		} else {
			v6 = append(v6, k)
		}
	}
	h := g.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("flowhold: holder closed")
	}
	for _, x := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{g.set4, v4}, {g.set6, v6}} {
		if len(x.elems) == 0 {
			continue
		}
		var err error
		if add {
			err = h.conn.SetAddElements(x.set, x.elems)
		} else {
			err = h.conn.SetDeleteElements(x.set, x.elems)
		}
		if err != nil {
			return wrap("guard flows", err)
		}
	}
	if err := h.conn.Flush(); err != nil {
		return wrap("guard flows", err)
	}
	return nil
}

// Close removes the guard.
func (g *Guard) Close() error { return g.release() }

const tcpFIN = 0x01
