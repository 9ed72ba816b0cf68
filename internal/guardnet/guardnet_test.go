package guardnet

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestCapHoldsExtraConnectionsUntilOneCloses(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, 2, 0)
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var got []net.Conn
	for i := 0; i < 2; i++ {
		select {
		case c := <-accepted:
			got = append(got, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d not accepted", i+1)
		}
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	got[0].Close()
	got[0].Close() // a second Close must not free a second slot
	select {
	case c := <-accepted:
		got = append(got, c)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not accepted after one closed")
	}
	select {
	case <-accepted:
		t.Fatal("a double Close freed two slots")
	case <-time.After(200 * time.Millisecond):
	}
	for _, c := range got[1:] {
		c.Close()
	}
}

// emfileListener fails the first n Accepts with EMFILE, as the kernel does
// when the process has no descriptor left.
type emfileListener struct {
	net.Listener
	n int
}

func (e *emfileListener) Accept() (net.Conn, error) {
	if e.n > 0 {
		e.n--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return e.Listener.Accept()
}

func TestReserveSpentOnEMFILEAndRefilled(t *testing.T) {
	for _, tc := range []struct {
		reserve, failures int
		ok                bool
	}{
		{reserve: 4, failures: 1, ok: true},
		{reserve: 4, failures: 3, ok: true},
		{reserve: 2, failures: 3, ok: false}, // reserve spent: the error reaches the server's back-off
		{reserve: 0, failures: 1, ok: false},
	} {
		t.Run(fmt.Sprintf("reserve%d_failures%d", tc.reserve, tc.failures), func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := New(&emfileListener{Listener: inner, n: tc.failures}, 4, tc.reserve)
			defer l.Close()
			if l.Reserved() != tc.reserve {
				t.Fatalf("reserved %d, want %d", l.Reserved(), tc.reserve)
			}
			client, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			c, err := l.Accept()
			if !tc.ok {
				if err == nil || !outOfDescriptors(err) {
					t.Fatalf("Accept = %v, want the EMFILE error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Accept with a reserve: %v", err)
			}
			if l.Spent() != uint64(tc.failures) || l.Reserved() != tc.reserve-tc.failures {
				t.Errorf("spent %d, reserved %d", l.Spent(), l.Reserved())
			}
			c.Close()
			if l.Reserved() != tc.reserve {
				t.Errorf("after close the reserve holds %d, want %d", l.Reserved(), tc.reserve)
			}
		})
	}
}

func TestCloseUnblocksAcceptAndReleasesReserve(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, 1, 3)
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }() // blocks on the cap
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Accept after Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
	if l.Reserved() != 0 {
		t.Errorf("Close kept %d reserved descriptors", l.Reserved())
	}
}
