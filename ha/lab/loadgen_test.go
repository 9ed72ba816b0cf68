package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The lab's load generator runs as a child process (this test binary with
// loadgenEnv set) inside the client namespace, so that its sockets need no
// hop through testnet.NS.Do. Each connection comes from a source address
// no earlier connection used (172.16.0.0/12, about a million), so every
// one makes a new persistence record.

const loadgenEnv = "FULCRUM_LAB_LOADGEN"

type loadResult struct {
	Connections uint64 `json:"connections"`
	Failed      uint64 `json:"failed"`
	Seconds     float64
	Errors      []string `json:"errors"` // the first few, for the log
}

func loadgen() int {
	target := os.Getenv(loadgenEnv)
	dur, _ := time.ParseDuration(os.Getenv("LOADGEN_DURATION"))
	workers, _ := strconv.Atoi(os.Getenv("LOADGEN_WORKERS"))
	if dur <= 0 || dur > 10*time.Minute || workers <= 0 || workers > 256 {
		fmt.Fprintln(os.Stderr, "loadgen: LOADGEN_DURATION (<=10m) and LOADGEN_WORKERS (1-256) required")
		return 2
	}
	base := netip.MustParseAddr("172.16.0.0").As4()
	first := uint32(base[0])<<24 | uint32(base[1])<<16
	const span = 1 << 20
	var next, ok, failed atomic.Uint64
	var emu sync.Mutex
	var errs []string
	note := func(err error) {
		failed.Add(1)
		emu.Lock()
		if len(errs) < 5 {
			errs = append(errs, err.Error())
		}
		emu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for ctx.Err() == nil {
				i := next.Add(1)
				if i >= span-1 {
					return
				}
				v := first + uint32(i)
				src := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
				// IP_BIND_ADDRESS_NO_PORT: the port is picked at connect
				// from the whole 4-tuple; a bind to port 0 of tens of
				// thousands of addresses slows down to timeouts.
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: time.Second,
					Control: func(_, _ string, rc syscall.RawConn) error {
						var serr error
						rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1) })
						return serr
					}}
				c, err := d.DialContext(ctx, "tcp", target)
				if err != nil {
					if ctx.Err() == nil {
						note(err)
					}
					continue
				}
				c.SetDeadline(time.Now().Add(time.Second))
				if _, err := io.ReadAtLeast(c, buf, 3); err != nil {
					note(err)
				} else {
					ok.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(loadResult{Connections: ok.Load(), Failed: failed.Load(), Seconds: time.Since(start).Seconds(), Errors: errs})
	return 0
}
