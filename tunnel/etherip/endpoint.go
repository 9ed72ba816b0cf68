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
	wframe  []byte
	werr    error
	writeFn func(fd uintptr) bool

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

// tapLoop reads frames from the TAP, encapsulates them in place (each
// buffer starts with the EtherIP header) and sends them in batches.
func (e *Endpoint) tapLoop() {
	defer e.wg.Done()
	bufSize := HeaderLen + e.maxFrame + 64
	slab := make([]byte, txBatch*bufSize)
	var (
		bufs [txBatch][]byte
		lens [txBatch]int
		iovs [txBatch]unix.Iovec
		msgs [txBatch]unix.Mmsghdr
	)
	for i := range bufs {
		b := slab[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		b[0], b[1] = hdrByte0, 0
		bufs[i] = b
		iovs[i].Base = &b[0]
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var (
		n    int
		rerr error
	)
	readFn := func(fd uintptr) bool {
		n, rerr = 0, nil
		for n < txBatch {
			m, err := unix.Read(int(fd), bufs[n][HeaderLen:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if err != unix.EAGAIN {
					rerr = err
					return true
				}
				break
			}
			lens[n] = m
			n++
		}
		return n > 0 // nothing yet: wait for the descriptor to be readable
	}
	var (
		sent, queued int
		serr         unix.Errno
	)
	sendFn := func(fd uintptr) bool {
		r, e := mmsg(unix.SYS_SENDMMSG, fd, msgs[sent:queued])
		if e == unix.EAGAIN {
			return false
		}
		serr = e
		if e == 0 {
			sent += r
		}
		return true
	}
	var drops [NumDropReasons]uint64
	for {
		if err := e.tapRC.Read(readFn); err != nil {
			return // closed
		}
		if rerr != nil && n == 0 {
			// A TAP read error other than EAGAIN (the device went away):
			// nothing more will come.
			return
		}
		queued = 0
		var bytes uint64
		for i := range n {
			l := lens[i]
			frame := bufs[i][HeaderLen : HeaderLen+l]
			if l < ethHeaderLen {
				drops[DropRuntFrame]++
				continue
			}
			if l > e.maxFrame {
				drops[DropOversize]++
				continue
			}
			if e.cfg.ClampMSS {
				ClampMSS(frame, e.cfg.MTU)
			}
			// Compact the message array over dropped frames.
			iovs[queued].Base = &bufs[i][0]
			iovs[queued].SetLen(HeaderLen + l)
			msgs[queued].Hdr.Iov = &iovs[queued]
			bytes += uint64(l)
			queued++
		}
		failed := 0
		sent = 0
		for sent < queued { // each round sends ≥1 message or skips one
			serr = 0
			if err := e.txRC.Write(sendFn); err != nil {
				return // closed
			}
			if serr != 0 {
				// sendmmsg reports an error only for the first message
				// of the call: drop that one and go on with the rest.
				if serr == unix.EMSGSIZE {
					drops[DropTooBig]++
				} else {
					drops[DropSendError]++
				}
				bytes -= uint64(iovs[sent].Len) - HeaderLen
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
		if queued > failed {
			e.c.txPackets.Add(uint64(queued - failed))
			e.c.txBytes.Add(bytes)
		}
	}
}
