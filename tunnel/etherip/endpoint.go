//go:build linux

package etherip

import (
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Stats is a snapshot of an Endpoint's counters. Bytes are Ethernet frame
// bytes (without the EtherIP header and outer IP header).
type Stats struct {
	// TxPackets and TxBytes count frames read from the TAP and sent to the
	// remote.
	TxPackets, TxBytes uint64
	// RxPackets and RxBytes count frames received from the remote and
	// written to the TAP.
	RxPackets, RxBytes uint64
	// TAPWriteErrors counts decapsulated frames the TAP refused.
	TAPWriteErrors uint64
	// Drops counts dropped packets (received) and frames (to send) by
	// reason. DropForeignSource is always zero here: a packet from an
	// unknown source belongs to no endpoint and is counted on the
	// receiver (ReceiverStats).
	Drops [NumDropReasons]uint64
}

// ReceiverStats is a snapshot of a shared receiver's counters: one raw
// socket per (network namespace, local address) that all endpoints with
// that local address read from.
type ReceiverStats struct {
	Local   netip.Addr
	Tunnels int // endpoints using it
	// Packets and Bytes count protocol-97 packets received (outer payload
	// bytes), whatever became of them.
	Packets, Bytes uint64
	// Errors counts receive errors reported by the socket (pending ICMP
	// errors, for example).
	Errors uint64
	// Drops counts packets dropped before they reached an endpoint:
	// DropForeignSource, DropBadOuter, DropOversize.
	Drops [NumDropReasons]uint64
}

type counters struct {
	txPackets, txBytes atomic.Uint64
	_                  [48]byte // keep the two directions' hot counters apart
	rxPackets, rxBytes atomic.Uint64
	tapWriteErrors     atomic.Uint64
	drops              [NumDropReasons]atomic.Uint64
}

// Endpoint is one end of an EtherIP tunnel: a TAP device and a send socket
// of its own, plus a share of a receiver. Its methods are safe for
// concurrent use.
type Endpoint struct {
	cfg      Config // normalized
	name     string
	maxFrame int // MTU + Ethernet header + two VLAN tags

	tap   *os.File
	tapRC syscall.RawConn
	tx    *os.File
	txRC  syscall.RawConn
	rx    *receiver
	mux   *Mux

	// Used only by the receiver's goroutine.
	gro       groRun
	groQueued bool
	wframe    []byte
	werr      error
	writeFn   func(fd uintptr) bool

	c counters

	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Data-path sizes.
const (
	// txBatch frames are read from the TAP before one sendmmsg.
	txBatch = 64
	// rxBatch packets are taken per recvmmsg.
	rxBatch = 64
	// rxBufSize holds any IP packet the kernel can deliver; a longer one
	// is truncated and counted as DropOversize.
	rxBufSize = 65536
)

// New creates an endpoint with a receiver of its own (use a Mux to share
// one among tunnels with the same local address). The TAP device and the
// sockets are created in the calling goroutine's network namespace.
func New(cfg Config) (*Endpoint, error) { return new(Mux).New(cfg) }

// Mux shares receivers among endpoints: one raw socket per (network
// namespace, local address), reading every protocol-97 packet to that
// address and dispatching it by source address to the endpoint whose
// Remote it is, so N tunnels do not each receive, inspect and count every
// packet. A packet from an address that is no tunnel's remote is counted
// as DropForeignSource on the receiver. The zero Mux is ready to use; it
// needs no closing (a receiver closes with its last endpoint).
type Mux struct {
	mu   sync.Mutex
	recv map[recvKey]*receiver
}

type recvKey struct {
	ns    nsID
	local netip.Addr
}

// New creates an endpoint in the calling goroutine's network namespace,
// sharing the receiver for its local address with this Mux's other
// endpoints there. Two endpoints with the same local and remote addresses
// in one namespace are refused.
func (m *Mux) New(cfg Config) (*Endpoint, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	// Every descriptor is created in the namespace of the current thread:
	// keep it the same thread throughout.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := currentNetNS()
	if err != nil {
		return nil, err
	}
	e := &Endpoint{cfg: cfg, mux: m, maxFrame: cfg.MTU + ethHeaderLen + 2*vlanTagLen}
	e.writeFn = e.writeTAP
	e.gro.buf = make([]byte, vnetHdrLen+groMax+64)
	tap, name, err := openTAP(cfg.Name, cfg.MTU)
	if err != nil {
		return nil, err
	}
	e.tap, e.name = tap, name
	tx, err := openSendSocket(cfg.Local, cfg.Remote, cfg.DontFragment)
	if err != nil {
		tap.Close()
		return nil, err
	}
	e.tx = tx
	if e.tapRC, err = tap.SyscallConn(); err == nil {
		e.txRC, err = tx.SyscallConn()
	}
	if err == nil {
		err = m.attach(recvKey{ns: ns, local: cfg.Local.WithZone("")}, e)
	}
	if err != nil {
		tx.Close()
		tap.Close()
		return nil, err
	}
	e.wg.Add(1)
	go e.tapLoop()
	return e, nil
}

// Name returns the TAP device's name.
func (e *Endpoint) Name() string { return e.name }

// Config returns the endpoint's configuration with defaults filled in
// (MTU) and addresses unmapped.
func (e *Endpoint) Config() Config { return e.cfg }

// MTU returns the TAP device's MTU.
func (e *Endpoint) MTU() int { return e.cfg.MTU }

// Stats returns a snapshot of the endpoint's counters.
func (e *Endpoint) Stats() Stats {
	s := Stats{
		TxPackets:      e.c.txPackets.Load(),
		TxBytes:        e.c.txBytes.Load(),
		RxPackets:      e.c.rxPackets.Load(),
		RxBytes:        e.c.rxBytes.Load(),
		TAPWriteErrors: e.c.tapWriteErrors.Load(),
	}
	for i := range s.Drops {
		s.Drops[i] = e.c.drops[i].Load()
	}
	return s
}

// ReceiverStats returns a snapshot of the counters of the receiver this
// endpoint shares.
func (e *Endpoint) ReceiverStats() ReceiverStats {
	e.mux.mu.Lock()
	defer e.mux.mu.Unlock()
	return e.rx.stats()
}

// Close stops the endpoint's goroutines, deletes its TAP device and closes
// its sockets (and the shared receiver, if this was its last endpoint).
// After Close returns no frame is written to the TAP any more. It is
// idempotent.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		e.mux.detach(e)
		// Closing the only descriptor of a non-persistent TAP deletes the
		// device; the poller closes it once the loop has let go of it.
		e.tap.Close()
		e.tx.Close()
		e.wg.Wait()
	})
	return nil
}

// tapLoop reads frames from the TAP, cuts TCP super-frames into segments,
// encapsulates them (each slot starts with the EtherIP header) and sends
// them in batches with sendmmsg.
func (e *Endpoint) tapLoop() {
	defer e.wg.Done()
	slotSize := HeaderLen + e.maxFrame + 64
	slab := make([]byte, txBatch*slotSize)
	rbuf := make([]byte, vnetHdrLen+65536+2*vlanTagLen+ethHeaderLen)
	var (
		slots [txBatch][]byte // frame area of each slot (after the header)
		lens  [txBatch]int
		iovs  [txBatch]unix.Iovec
		msgs  [txBatch]unix.Mmsghdr
		drops [NumDropReasons]uint64
	)
	for i := range slots {
		b := slab[i*slotSize : (i+1)*slotSize : (i+1)*slotSize]
		b[0], b[1] = hdrByte0, 0
		slots[i] = b[HeaderLen:]
		iovs[i].Base = &b[0]
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var (
		pending  int  // slots filled
		rlen     int  // bytes in rbuf
		flushNow bool // nothing more to read right now
		rerr     error
	)
	readFn := func(fd uintptr) bool {
		rlen, flushNow, rerr = 0, false, nil
		for range 8 { // EINTR retries
			n, err := unix.Read(int(fd), rbuf)
			switch err {
			case nil:
				rlen = n
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if pending > 0 {
					flushNow = true
					return true
				}
				return false // wait for the descriptor to be readable
			default:
				rerr = err
				return true
			}
		}
		return false
	}
	var (
		sent int
		serr unix.Errno
	)
	sendFn := func(fd uintptr) bool {
		r, e := mmsg(unix.SYS_SENDMMSG, fd, msgs[sent:pending])
		if e == unix.EAGAIN {
			return false
		}
		serr = e
		if e == 0 {
			sent += r
		}
		return true
	}
	// flush sends the pending slots; false means the endpoint is closed.
	flush := func() bool {
		var bytes uint64
		for i := range pending {
			iovs[i].SetLen(HeaderLen + lens[i])
			bytes += uint64(lens[i])
		}
		failed := 0
		sent = 0
		for sent < pending { // each round sends ≥1 message or skips one
			serr = 0
			if err := e.txRC.Write(sendFn); err != nil {
				return false
			}
			if serr != 0 {
				// sendmmsg reports an error only for the first message
				// of the call: drop that one and go on with the rest.
				if serr == unix.EMSGSIZE {
					drops[DropTooBig]++
				} else {
					drops[DropSendError]++
				}
				bytes -= uint64(lens[sent])
				failed++
				sent++
			}
		}
		for r := range drops {
			if drops[r] != 0 {
				e.c.drops[r].Add(drops[r])
				drops[r] = 0
			}
		}
		if pending > failed {
			e.c.txPackets.Add(uint64(pending - failed))
			e.c.txBytes.Add(bytes)
		}
		pending = 0
		return true
	}
	// queue takes the frame in slot pending.
	queue := func(l int) {
		switch {
		case l < ethHeaderLen:
			drops[DropRuntFrame]++
		case l > e.maxFrame:
			drops[DropOversize]++
		default:
			if e.cfg.ClampMSS {
				ClampMSS(slots[pending][:l], e.cfg.MTU)
			}
			lens[pending] = l
			pending++
		}
	}
	for {
		if err := e.tapRC.Read(readFn); err != nil {
			return // closed
		}
		if rerr != nil {
			return // the device went away
		}
		if flushNow {
			if !flush() {
				return
			}
			continue
		}
		if rlen < vnetHdrLen {
			drops[DropRuntFrame]++
			continue
		}
		h := decodeVnet(rbuf)
		frame := rbuf[vnetHdrLen:rlen]
		gso := h.gsoType &^ vnetGSOECN
		if gso == vnetGSONone {
			if h.flags&vnetFlagNeedsCsum != 0 && !finishChecksum(frame, int(h.csumStart), int(h.csumOffs)) {
				drops[DropRuntFrame]++
				continue
			}
			if len(frame) > len(slots[pending]) {
				drops[DropOversize]++
				continue
			}
			queue(copy(slots[pending], frame))
		} else {
			g, ok := parseTCP(frame)
			mss := int(h.gsoSize)
			if !ok || (gso != vnetGSOTCPv4 && gso != vnetGSOTCPv6) || mss == 0 || g.hdrEnd+mss > e.maxFrame {
				drops[DropOversize]++
				continue
			}
			total := gsoSegments(frame, g, mss)
			for done := 0; done < total; { // each round fills ≥1 slot
				if pending == txBatch && !flush() {
					return
				}
				// Segments are within [hdrEnd, hdrEnd+mss] ≤ maxFrame and
				// never SYNs: nothing for queue to check.
				n := gsoSplit(frame, g, mss, done, slots[pending:], lens[pending:])
				pending += n
				done += n
			}
		}
		if pending == txBatch && !flush() {
			return
		}
	}
}
