package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by an NS method called after Close.
var ErrClosed = errors.New("testnet: namespace closed")

// netnsDir is where iproute2 keeps named namespaces; a namespace bound there
// is what `ip netns exec NAME` enters.
const netnsDir = "/run/netns"

// NS is a named network namespace, visible to `ip netns exec NAME`.
//
// Go code runs inside it through Do, which hands the function to a goroutine
// that is locked to an OS thread switched into the namespace for the NS's
// whole life. Sockets keep the namespace they were created in, so the pattern
// is: create listeners, dialers and packet sockets inside Do, then use them
// from any goroutine. Goroutines started inside fn are NOT in the namespace.
//
// All methods are safe for concurrent use; calls to Do are serialised.
type NS struct {
	name   string
	owned  bool // created by us: deleted on Close
	handle netns.NsHandle
	nl     *netlink.Handle

	reqs chan func()
	quit chan struct{}
	done chan struct{} // closed when the worker goroutine has exited

	closeOnce sync.Once
	closeErr  error
}

// NewNS creates the named network namespace (like `ip netns add NAME`) with
// its loopback up. It fails if the name is taken. Close deletes it.
func NewNS(name string) (*NS, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(netnsDir, name)); err == nil {
		return nil, fmt.Errorf("testnet: namespace %q already exists", name)
	}
	// iproute2 sets up /run/netns as a shared mount so that later
	// `ip netns exec` sees the binding; doing it through ip keeps us
	// exactly compatible with what an operator types by hand.
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testnet: ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	n, err := openNS(name, true)
	if err != nil {
		_ = deleteNamed(name)
		return nil, err
	}
	if err := n.LinkUp("lo"); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// OpenNS attaches to an existing named namespace. Close releases it without
// deleting it.
func OpenNS(name string) (*NS, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	return openNS(name, false)
}

// TempNS creates a namespace for one test and deletes it in t.Cleanup. It
// skips the test when not running as root.
func TempNS(tb testing.TB, name string) *NS {
	tb.Helper()
	SkipIfNotRoot(tb)
	n, err := NewNS(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("testnet: closing namespace %s: %v", name, err)
		}
	})
	return n
}

// SkipIfNotRoot skips tb unless the process runs as root, which creating
// namespaces, veths and raw sockets requires.
func SkipIfNotRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("testnet: needs root (network namespaces, veths, raw sockets)")
	}
}

func validName(name string) error {
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "/\x00 ") || name == "." || name == ".." {
		return fmt.Errorf("testnet: invalid namespace name %q", name)
	}
	return nil
}

func openNS(name string, owned bool) (*NS, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("testnet: open namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("testnet: netlink in %s: %w", name, err)
	}
	n := &NS{
		name:   name,
		owned:  owned,
		handle: h,
		nl:     nl,
		reqs:   make(chan func()),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	ready := make(chan error, 1)
	goDedicated(func() { n.worker(ready) })
	if err := <-ready; err != nil {
		nl.Close()
		_ = h.Close()
		if owned {
			_ = deleteNamed(name)
		}
		return nil, err
	}
	return n, nil
}

// worker is the goroutine that lives in the namespace, on a dedicated
// thread (goDedicated) switched with setns and never switched back.
func (n *NS) worker(ready chan<- error) {
	defer close(n.done)
	if err := unix.Setns(int(n.handle), unix.CLONE_NEWNET); err != nil {
		ready <- fmt.Errorf("testnet: setns %s: %w", n.name, err)
		return
	}
	ready <- nil
	for {
		select {
		case fn := <-n.reqs:
			fn()
		case <-n.quit:
			return
		}
	}
}

// Name returns the namespace name (the argument to `ip netns exec`).
func (n *NS) Name() string { return n.name }

// Do runs fn on a thread inside the namespace and returns its error. Sockets
// fn creates belong to the namespace for their whole life. fn must not call
// Do on the same NS (it would deadlock) and should not block for long: calls
// are serialised. A panic in fn is re-raised in the caller.
func (n *NS) Do(fn func() error) error {
	var (
		err error
		pv  any
		ok  bool
	)
	finished := make(chan struct{})
	job := func() {
		defer close(finished)
		defer func() {
			if !ok {
				pv = recover()
			}
		}()
		err = fn()
		ok = true
	}
	select {
	case n.reqs <- job:
	case <-n.quit:
		return ErrClosed
	}
	<-finished
	if !ok {
		panic(pv)
	}
	return err
}

// Listen is net.Listen inside the namespace.
func (n *NS) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenPacket is net.ListenPacket inside the namespace.
func (n *NS) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// Dial is d.DialContext inside the namespace (d may be nil). Use literal
// addresses: name resolution would read the host's resolver configuration.
// The connect, including its handshake over an emulated WAN, runs inside Do,
// so other Do calls on this NS wait for it.
func (n *NS) Dial(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Command returns an exec.Cmd that runs name with args inside the namespace
// through `ip netns exec`.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output;
// a non-zero exit is an error that includes the output.
func (n *NS) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("testnet: %s: %s %s: %w: %s", n.name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// sysctlPath maps "net.ipv4.ip_forward" or "net/ipv4/ip_forward" to its
// /proc/sys path. Interface names may contain dots, so a key with slashes is
// taken literally.
func sysctlPath(key string) string {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	return filepath.Join("/proc/sys", key)
}

// SetSysctl writes a sysctl inside the namespace. Only the net.* tree is
// per-namespace; writing anything else changes the host.
func (n *NS) SetSysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") && !strings.HasPrefix(key, "net/") {
		return fmt.Errorf("testnet: sysctl %s is not per-namespace (only net.* is)", key)
	}
	return n.Do(func() error {
		// /proc/sys/net resolves against the calling thread's namespace.
		if err := os.WriteFile(sysctlPath(key), []byte(value), 0); err != nil {
			return fmt.Errorf("testnet: %s: sysctl %s=%s: %w", n.name, key, value, err)
		}
		return nil
	})
}

// Sysctl reads a sysctl inside the namespace.
func (n *NS) Sysctl(key string) (string, error) {
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(sysctlPath(key))
		if err != nil {
			return fmt.Errorf("testnet: %s: sysctl %s: %w", n.name, key, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}

// Close stops the namespace's worker thread and, if NewNS created the
// namespace, deletes it (like `ip netns del`), which also destroys the
// interfaces inside. Sockets still open inside keep the kernel object alive
// until they are closed, but the name is released at once. Close is
// idempotent and returns the first call's result.
func (n *NS) Close() error {
	n.closeOnce.Do(func() {
		close(n.quit)
		<-n.done
		n.nl.Close()
		_ = n.handle.Close()
		if n.owned {
			n.closeErr = deleteNamed(n.name)
		}
	})
	return n.closeErr
}

func deleteNamed(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
	if err != nil {
		if _, serr := os.Stat(filepath.Join(netnsDir, name)); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("testnet: ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// goDedicated runs fn on a new goroutine locked to its own OS thread, which
// fn may put into an unusual state (another namespace, a real-time class):
// the thread is discarded when fn returns, because the goroutine exits
// still locked and the Go runtime then terminates the thread rather than
// reuse it. The one exception is the process's main thread, which the
// runtime cannot terminate and would park forever (still in the namespace,
// keeping it alive), so if the goroutine lands there it hands fn to another
// goroutine, which cannot be scheduled on the main thread while this one
// holds it locked, and releases the main thread untouched once the other
// has locked its own.
func goDedicated(fn func()) { go dedicated(fn, nil) }

func dedicated(fn func(), handoff chan<- struct{}) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		h := make(chan struct{})
		go dedicated(fn, h)
		<-h
		runtime.UnlockOSThread()
		return
	}
	if handoff != nil {
		close(handoff)
	}
	fn()
	// No UnlockOSThread: see above.
}

// WaitUp waits until an interface's operational state is up (for a veth:
// both ends up and the kernel's link watcher has activated its queue).
// Until then the interface silently drops what is sent, which costs a TCP
// handshake a one-second SYN retransmission.
func (n *NS) WaitUp(dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		l, err := n.link(dev)
		if err != nil {
			return err
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testnet: %s: %s not operationally up after %v (state %v)", n.name, dev, timeout, l.Attrs().OperState)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// DeleteNS deletes a named namespace (like `ip netns del NAME`); deleting a
// name that does not exist is not an error. It is for cleaning up after a
// process that died without closing its namespaces.
func DeleteNS(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	return deleteNamed(name)
}
