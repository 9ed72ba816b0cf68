package testnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The delay line normally runs in a child process: the calling program
// re-executed (os.Executable) with childEnv set, caught by this package's
// init before main or TestMain runs. A separate process gives the delay line
// its own Go scheduler: in-process, its sender threads must win a P back
// from the test's own goroutines after every sleep, which on a busy
// two-core machine adds milliseconds of error exactly when a benchmark
// loads the CPU. The parent opens the AF_PACKET sockets in the router
// namespace and hands them over as inherited descriptors, so the child needs
// no namespace switching; a stream socket carries JSON requests (set,
// stats) and the child exits when it reaches EOF, including when the parent
// dies.
const childEnv = "FULCRUM_TESTNET_DELAYLINE"

func init() {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
}

type ctlRequest struct {
	Op       string      `json:"op"` // start, set, stats
	Params   *lineParams `json:"params,omitempty"`
	Seed     uint64      `json:"seed,omitempty"`
	Realtime bool        `json:"realtime,omitempty"`
}

type ctlReply struct {
	Err   string `json:"err,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
}

// Descriptors the child inherits (ExtraFiles start at 3).
const (
	childFdClientSide = 3
	childFdServerSide = 4
	childFdControl    = 5
)

func runChild() int {
	// Few, short-lived allocations per frame; a lazier GC keeps pauses rare.
	debug.SetGCPercent(400)
	// Two readers and two senders: with a P for each, a sender woken from
	// its sleep never waits for a reader to yield one.
	runtime.GOMAXPROCS(max(runtime.NumCPU(), 4))
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "testnet delay line: %v\n", err)
		return 1
	}
	ctlFile := os.NewFile(childFdControl, "control")
	ctl, err := net.FileConn(ctlFile)
	ctlFile.Close()
	if err != nil {
		return fail(err)
	}
	defer ctl.Close()
	var socks [2]*packetSock
	for i, fd := range []int{childFdClientSide, childFdServerSide} {
		if err := unix.SetNonblock(fd, true); err != nil {
			return fail(err)
		}
		s, err := packetSockFromFD(fd)
		if err != nil {
			return fail(err)
		}
		socks[i] = s
	}
	dec, enc := json.NewDecoder(ctl), json.NewEncoder(ctl)
	var line *delayLine
	defer func() {
		if line != nil {
			_ = line.close()
		}
	}()
	for {
		var req ctlRequest
		if err := dec.Decode(&req); err != nil {
			return 0 // EOF: the parent closed the WAN or died
		}
		var rep ctlReply
		switch {
		case req.Op == "start" && line == nil && req.Params != nil:
			line = startDelayLine(socks[0], socks[1], req.Params, req.Seed, req.Realtime)
		case req.Op == "set" && line != nil && req.Params != nil:
			_ = line.set(req.Params)
		case req.Op == "stats" && line != nil:
			st, _ := line.stats()
			rep.Stats = &st
		default:
			rep.Err = fmt.Sprintf("bad request %q", req.Op)
		}
		if err := enc.Encode(&rep); err != nil {
			return 0
		}
	}
}

func packetSockFromFD(fd int) (*packetSock, error) {
	f := os.NewFile(uintptr(fd), fmt.Sprintf("packet:%d", fd))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &packetSock{f: f, rc: rc}, nil
}

// childLine is the parent's handle on a delay line in a child process.
type childLine struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	ctl  net.Conn
	enc  *json.Encoder
	dec  *json.Decoder
	once sync.Once
	err  error
}

// startChildLine starts the child and hands it a and b, which it closes in
// this process whatever happens.
func startChildLine(a, b *packetSock, p *lineParams, seed uint64, realtime bool) (*childLine, error) {
	defer a.close()
	defer b.close()
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("testnet: delay line child: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("testnet: delay line control socket: %w", err)
	}
	parentEnd := os.NewFile(uintptr(fds[0]), "control")
	childEnd := os.NewFile(uintptr(fds[1]), "control")
	defer childEnd.Close()
	ctl, err := net.FileConn(parentEnd)
	parentEnd.Close()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Args = []string{exe + " [testnet delay line]"}
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{a.f, b.f, childEnd}
	// Its own process group: a terminal's Ctrl-C must reach only the
	// parent, which then shuts the child down in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ctl.Close()
		return nil, fmt.Errorf("testnet: delay line child: %w", err)
	}
	c := &childLine{cmd: cmd, ctl: ctl, enc: json.NewEncoder(ctl), dec: json.NewDecoder(ctl)}
	if _, err := c.call(ctlRequest{Op: "start", Params: p, Seed: seed, Realtime: realtime}); err != nil {
		_ = c.close()
		return nil, err
	}
	return c, nil
}

func (c *childLine) call(req ctlRequest) (ctlReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rep ctlReply
	_ = c.ctl.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.enc.Encode(&req); err != nil {
		return rep, fmt.Errorf("testnet: delay line child: %w", err)
	}
	if err := c.dec.Decode(&rep); err != nil {
		return rep, fmt.Errorf("testnet: delay line child: %w", err)
	}
	if rep.Err != "" {
		return rep, errors.New("testnet: delay line child: " + rep.Err)
	}
	return rep, nil
}

func (c *childLine) set(p *lineParams) error {
	_, err := c.call(ctlRequest{Op: "set", Params: p})
	return err
}

func (c *childLine) stats() (Stats, error) {
	rep, err := c.call(ctlRequest{Op: "stats"})
	if err != nil || rep.Stats == nil {
		return Stats{}, err
	}
	return *rep.Stats, nil
}

// close ends the child by closing the control socket, and kills it if it
// has not exited within five seconds.
func (c *childLine) close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.ctl.Close()
		c.mu.Unlock()
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				c.err = fmt.Errorf("testnet: delay line child: %w", err)
			}
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
			c.err = errors.New("testnet: delay line child did not exit; killed")
		}
	})
	return c.err
}
