//go:build linux

package etherip

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// receiver reads protocol-97 packets to one local address (in one network
// namespace) and hands each to the endpoint whose remote sent it.
type receiver struct {
	key recvKey
	v6  bool
	f   *os.File
	rc  syscall.RawConn

	// routes maps a remote address to its endpoint; replaced, never
	// modified, under Mux.mu, and read without locking per packet.
	routes atomic.Pointer[map[netip.Addr]*Endpoint]
	refs   int // under Mux.mu

	// batchMu is held while a batch is dispatched, so that detach can wait
	// until no packet is being written to an endpoint it removed.
	batchMu sync.Mutex

	packets, bytes, errors atomic.Uint64
	drops                  [NumDropReasons]atomic.Uint64

	done chan struct{}
}

// attach registers e with the receiver for key, creating the receiver (in
// the calling thread's namespace) if it is the first.
func (m *Mux) attach(key recvKey, e *Endpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recv[key]
	remote := e.cfg.Remote.WithZone("")
	if r != nil {
		if _, dup := (*r.routes.Load())[remote]; dup {
			return fmt.Errorf("etherip: a tunnel from %s to %s already exists", key.local, remote)
		}
	} else {
		f, err := openRecvSocket(e.cfg.Local)
		if err != nil {
			return err
		}
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return err
		}
		r = &receiver{key: key, v6: key.local.Is6(), f: f, rc: rc, done: make(chan struct{})}
		r.routes.Store(&map[netip.Addr]*Endpoint{})
		if m.recv == nil {
			m.recv = make(map[recvKey]*receiver)
		}
		m.recv[key] = r
		go r.loop()
	}
	old := *r.routes.Load()
	routes := make(map[netip.Addr]*Endpoint, len(old)+1)
	for k, v := range old {
		routes[k] = v
	}
	routes[remote] = e
	r.routes.Store(&routes)
	r.refs++
	e.rx = r
	return nil
}

// detach removes e from its receiver and returns once the receiver no
// longer touches e; the last endpoint closes the receiver.
func (m *Mux) detach(e *Endpoint) {
	r := e.rx
	m.mu.Lock()
	old := *r.routes.Load()
	routes := make(map[netip.Addr]*Endpoint, len(old))
	for k, v := range old {
		if v != e {
			routes[k] = v
		}
	}
	r.routes.Store(&routes)
	r.refs--
	last := r.refs == 0
	if last {
		delete(m.recv, r.key)
	}
	m.mu.Unlock()
	if last {
		r.f.Close()
		<-r.done
		return
	}
	// Wait out a batch that may have looked e up in the old map: the
	// empty critical section is the point.
	r.batchMu.Lock()
	//lint:ignore SA2001 a barrier: the receiver holds batchMu while it dispatches a batch
	r.batchMu.Unlock()
}

// Stats returns a snapshot of the counters of every receiver the Mux has
// open, ordered by local address.
func (m *Mux) Stats() []ReceiverStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ReceiverStats, 0, len(m.recv))
	for _, r := range m.recv {
		out = append(out, r.stats())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Local.Less(out[j].Local) })
	return out
}

// stats must be called with Mux.mu held.
func (r *receiver) stats() ReceiverStats {
	s := ReceiverStats{
		Local:   r.key.local,
		Tunnels: r.refs,
		Packets: r.packets.Load(),
		Bytes:   r.bytes.Load(),
		Errors:  r.errors.Load(),
	}
	for i := range s.Drops {
		s.Drops[i] = r.drops[i].Load()
	}
	return s
}

// rxState is the receiver goroutine's reusable memory.
type rxState struct {
	slab  []byte
	iovs  [rxBatch]unix.Iovec
	msgs  [rxBatch]unix.Mmsghdr
	names [rxBatch]unix.RawSockaddrInet6
	drops [NumDropReasons]uint64
	gro   []*Endpoint // endpoints with a run to flush at the end of the batch
}

// rxSlot is one packet's room: headroom plus the largest packet.
const (
	rxHeadroom = 16
	rxSlot     = rxHeadroom + rxBufSize
)

func (r *receiver) loop() {
	defer close(r.done)
	st := &rxState{slab: make([]byte, rxBatch*rxSlot)}
	for i := range st.msgs {
		// Headroom in front of each packet takes the virtio-net header
		// of the TAP write in place.
		st.iovs[i].Base = &st.slab[i*rxSlot+rxHeadroom]
		st.iovs[i].SetLen(rxBufSize)
		h := &st.msgs[i].Hdr
		h.Iov = &st.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&st.names[i]))
	}
	var (
		n    int
		rerr unix.Errno
	)
	recvFn := func(fd uintptr) bool {
		for i := range st.msgs {
			st.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			st.msgs[i].Hdr.Flags = 0
		}
		var e unix.Errno
		for range 8 { // EINTR retries
			n, e = mmsg(unix.SYS_RECVMMSG, fd, st.msgs[:])
			if e != unix.EINTR {
				break
			}
		}
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		rerr = e
		if e != 0 {
			n = 0
		}
		return true
	}
	for {
		if err := r.rc.Read(recvFn); err != nil {
			return // closed
		}
		if rerr != 0 {
			// A pending socket error (an ICMP error for a packet one
			// of the endpoints sent) is reported once and cleared.
			r.errors.Add(1)
			continue
		}
		r.dispatch(st, n)
	}
}

// dispatch hands the n packets in st to their endpoints. It allocates
// nothing, whatever the packets hold.
func (r *receiver) dispatch(st *rxState, n int) {
	r.batchMu.Lock()
	defer r.batchMu.Unlock()
	routes := *r.routes.Load()
	var bytes uint64
	for i := range n {
		m := &st.msgs[i]
		l := int(m.Len)
		bytes += uint64(l)
		if m.Hdr.Flags&unix.MSG_TRUNC != 0 || l > rxBufSize {
			st.drops[DropOversize]++
			continue
		}
		slot := st.slab[i*rxSlot : i*rxSlot+rxHeadroom+l]
		buf := slot[rxHeadroom:]
		var (
			src netip.Addr
			pkt []byte
		)
		if r.v6 {
			// AF_INET6 raw sockets deliver the payload only; the source
			// is in the socket address.
			src = netip.AddrFrom16(st.names[i].Addr)
			pkt = buf
		} else {
			// AF_INET raw sockets deliver the IPv4 header too (after
			// reassembly).
			if l < 20 || buf[0]>>4 != 4 {
				st.drops[DropBadOuter]++
				continue
			}
			ihl := int(buf[0]&0x0f) * 4
			if ihl < 20 || ihl > l || buf[9] != Protocol || binary.BigEndian.Uint16(buf[6:])&0x3fff != 0 {
				st.drops[DropBadOuter]++
				continue
			}
			src = netip.AddrFrom4([4]byte(buf[12:16]))
			pkt = buf[ihl:]
		}
		e := routes[src]
		if e == nil {
			st.drops[DropForeignSource]++
			continue
		}
		if e.input(slot, len(slot)-len(pkt)) && !e.groQueued {
			e.groQueued = true
			st.gro = append(st.gro, e)
		}
	}
	for _, e := range st.gro {
		e.flushGRO()
		e.groQueued = false
	}
	clear(st.gro)
	st.gro = st.gro[:0]
	r.packets.Add(uint64(n))
	r.bytes.Add(bytes)
	for i, d := range st.drops {
		if d != 0 {
			r.drops[i].Add(d)
			st.drops[i] = 0
		}
	}
}

// input decapsulates one packet from the remote, slot[off:], and writes
// its frame to the TAP or adds it to the endpoint's GRO run; it reports
// whether a run is pending. slot[:off] is free room of at least
// rxHeadroom bytes. It runs on the receiver's goroutine.
func (e *Endpoint) input(slot []byte, off int) bool {
	frame, reason, ok := decap(slot[off:], e.cfg.AcceptReversed)
	if !ok {
		e.c.drops[reason].Add(1)
		return e.gro.segs > 0
	}
	if len(frame) > e.maxFrame {
		e.c.drops[DropOversize].Add(1)
		return e.gro.segs > 0
	}
	if e.cfg.ClampMSS {
		ClampMSS(frame, e.cfg.MTU)
	}
	g, cand := groCandidate(frame)
	if cand && e.gro.add(frame, g) {
		e.gro.bytes += len(frame)
		return true
	}
	if e.gro.segs > 0 {
		e.flushGRO()
	}
	if cand {
		e.gro.start(frame, g)
		e.gro.bytes = len(frame)
		return true
	}
	// Not joinable: write it as it is, behind an empty virtio-net header
	// built in the headroom.
	fstart := len(slot) - len(frame)
	out := slot[fstart-vnetHdrLen:]
	vnetHdr{}.encode(out)
	e.writeOut(out, 1, len(frame))
	return false
}

// flushGRO writes the pending run, if any.
func (e *Endpoint) flushGRO() {
	if e.gro.segs == 0 {
		return
	}
	segs, bytes := e.gro.segs, e.gro.bytes
	e.writeOut(e.gro.finish(), segs, bytes)
}

// writeOut writes a virtio-net header and frame to the TAP, counting it
// as segs frames of bytes in total.
func (e *Endpoint) writeOut(out []byte, segs, bytes int) {
	e.wframe, e.werr = out, nil
	if err := e.tapRC.Write(e.writeFn); err != nil || e.werr != nil {
		e.c.tapWriteErrors.Add(uint64(segs))
		return
	}
	e.c.rxPackets.Add(uint64(segs))
	e.c.rxBytes.Add(uint64(bytes))
}

// writeTAP is the RawConn callback of writeOut. It never waits: a TAP that
// cannot take a frame now (which the kernel does not normally do) costs
// that frame, not the other tunnels on the receiver.
func (e *Endpoint) writeTAP(fd uintptr) bool {
	for range 8 { // EINTR retries
		_, err := unix.Write(int(fd), e.wframe)
		if err != unix.EINTR {
			e.werr = err
			return true
		}
	}
	e.werr = unix.EINTR
	return true
}
