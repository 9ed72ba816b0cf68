package sockmap

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Layout of the maps' values (little-endian u64 fields).
//
// state (program-owned counters, one per socket, keyed by socket cookie):
//
//	0  peer       cookie of the socket this one's bytes go to
//	8  redirected bytes the program redirected to the peer
//	16 passed     bytes the program left on this socket for user space
//
// ctl (user-owned, one per socket):
//
//	0  consumed   bytes user space has read from this socket and written to the peer
//	8  limit      redirect only while redirected+len <= limit (credit)
const (
	offPeer       = 0
	offRedirected = 8
	offPassed     = 16
	stateSize     = 24

	offConsumed = 0
	offLimit    = 8
	ctlSize     = 16
)

// An sk_skb program's return values.
const (
	skDrop = 0
	skPass = 1
)

// program is the stream verdict: for each skb a socket receives, redirect
// it to the peer's egress when no byte of this socket is waiting in user
// space (passed == consumed: keeps order) and the credit allows it; else
// leave it on the socket (SK_PASS) for user space to read, where it is
// charged to the socket's receive buffer (so TCP's window closes when user
// space does not read: backpressure).
func program(socks, state, ctl *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),              // r6 = skb
		asm.LoadMem(asm.R9, asm.R6, 0, asm.Word), // r9 = skb->len
		// A pure FIN reaches the program as an empty skb. Redirected or
		// passed, it can end up in a psock's backlog queue (the peer's, or
		// this socket's own when that queue holds the other direction's
		// redirected bytes), whose worker takes a 0-byte result for a
		// failure: EPIPE on that socket and every later redirect to it
		// dropped. Dropped, it is gone; the socket has its end of stream
		// (RCV_SHUTDOWN) all the same, so user space reads 0 once the
		// bytes before it are read.
		asm.JEq.Imm(asm.R9, 0, "drop"),
		asm.FnGetSocketCookie.Call(),                 // r0 = cookie(skb->sk)
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord), // key at fp-8
		asm.LoadMapPtr(asm.R1, state.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "untracked"),
		asm.Mov.Reg(asm.R7, asm.R0), // r7 = state
		asm.LoadMapPtr(asm.R1, ctl.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.R0, offConsumed, asm.DWord),
		asm.LoadMem(asm.R2, asm.R7, offPassed, asm.DWord),
		asm.JNE.Reg(asm.R1, asm.R2, "pass"), // bytes wait in user space: keep order
		asm.LoadMem(asm.R1, asm.R0, offLimit, asm.DWord),
		asm.LoadMem(asm.R2, asm.R7, offRedirected, asm.DWord),
		asm.Add.Reg(asm.R2, asm.R9),
		asm.JGT.Reg(asm.R2, asm.R1, "pass"), // out of credit
		asm.LoadMem(asm.R1, asm.R7, offPeer, asm.DWord),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, socks.FD()),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0), // flags 0: the peer's egress
		asm.FnSkRedirectHash.Call(),
		asm.JNE.Imm(asm.R0, skPass, "pass"), // peer not in the map (yet, or any more)
		asm.AddAtomic.Mem(asm.R7, asm.R9, asm.DWord, offRedirected),
		asm.Mov.Imm(asm.R0, skPass),
		asm.Return(),
		asm.AddAtomic.Mem(asm.R7, asm.R9, asm.DWord, offPassed).WithSymbol("pass"),
		asm.Mov.Imm(asm.R0, skPass),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("untracked"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, skDrop).WithSymbol("drop"),
		asm.Return(),
	}
}
