package sockmap

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ErrFull is returned by Splice when the relay holds as many flows as it
// was created for.
var ErrFull = errors.New("sockmap: the relay's socket map is full")

// DefaultWindow is how many bytes one direction may redirect beyond what
// the destination socket has taken into its send queue (see Relay).
const DefaultWindow = 4 << 20

// Relay is one socket map with its verdict program attached: flows handed
// to it (Splice) have their bytes moved socket to socket by the kernel.
// Create it with New; Close it once its flows have ended.
type Relay struct {
	socks, state, ctl *ebpf.Map
	prog              *ebpf.Program
	capacity          int
	window            uint64
	flows             atomic.Int64
	bufs              sync.Pool // user-space copies (passed bytes), 64 KiB
	closeOnce         sync.Once
	closeErr          error
}

// Options configure New.
type Options struct {
	// Flows bounds how many flows (socket pairs) the relay holds at once
	// (default 32768: 65536 sockets).
	Flows int
	// Window is how many bytes one direction may have redirected and not
	// yet taken into the destination's send queue before the program
	// stops redirecting and user space takes over until it drains
	// (default DefaultWindow). It bounds the kernel memory a flow toward a
	// slow reader can hold.
	Window int
}

// New creates the maps and the program and attaches the program to the
// map. It fails without CAP_BPF and CAP_NET_ADMIN, or on a kernel without
// sockmap stream verdicts (Linux < 5.13).
func New(o Options) (*Relay, error) {
	if o.Flows <= 0 {
		o.Flows = 32768
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	r := &Relay{capacity: o.Flows, window: uint64(o.Window)}
	r.bufs.New = func() any { b := make([]byte, 64<<10); return &b }
	var err error
	r.socks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "fulcrum_socks", Type: ebpf.SockHash, KeySize: 8, ValueSize: 4, MaxEntries: uint32(2 * o.Flows)})
	if err != nil {
		return nil, fmt.Errorf("creating the socket map: %w", err)
	}
	r.state, err = ebpf.NewMap(&ebpf.MapSpec{Name: "fulcrum_state", Type: ebpf.Hash, KeySize: 8, ValueSize: stateSize, MaxEntries: uint32(2 * o.Flows)})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("creating the state map: %w", err)
	}
	// No preallocation: an update replaces the element under RCU, so the
	// program never reads a value user space is half-way through writing.
	r.ctl, err = ebpf.NewMap(&ebpf.MapSpec{Name: "fulcrum_ctl", Type: ebpf.Hash, KeySize: 8, ValueSize: ctlSize, MaxEntries: uint32(2 * o.Flows), Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("creating the control map: %w", err)
	}
	r.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "fulcrum_verdict", Type: ebpf.SkSKB, License: "Dual MIT/GPL", Instructions: program(r.socks, r.state, r.ctl)})
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("loading the verdict program: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: r.socks.FD(), Program: r.prog, Attach: ebpf.AttachSkSKBVerdict}); err != nil {
		r.Close()
		return nil, fmt.Errorf("attaching the verdict program: %w", err)
	}
	return r, nil
}

// Close releases the maps and the program. Sockets still in the map leave
// it (they go back to plain TCP sockets).
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		if r.prog != nil {
			errs = append(errs, r.prog.Close())
		}
		for _, m := range []*ebpf.Map{r.socks, r.state, r.ctl} {
			if m != nil {
				errs = append(errs, m.Close())
			}
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// Flows is how many flows the relay holds now.
func (r *Relay) Flows() int { return int(r.flows.Load()) }

// Capacity is how many flows the relay can hold.
func (r *Relay) Capacity() int { return r.capacity }
