package flowhold

import (
	"encoding/binary"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Guard drops, until release is called, outbound TCP packets with FIN or
// RST set whose socket mark (SO_MARK, meta mark) is mark. A process marks
// the sockets whose end it alone may announce; if it dies, the kernel
// closes them with FINs and resets that this rule keeps from leaving.
// Before it ends such a connection itself, the process clears the mark.
func (h *Holder) Guard(mark uint32) (release func() error, err error) {
	return h.install(func(id uint64, in, out *nftables.Chain) ([]*nftables.Set, []pending, error) {
		m := binary.NativeEndian.AppendUint32(nil, mark)
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
		return nil, nil, nil
	})
}

const tcpFIN = 0x01
