package quorum

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

// group starts a three-device raft group on loopback with dead time dt.
func group(t *testing.T, dt time.Duration) map[string]*Node {
	t.Helper()
	root := t.TempDir()
	if err := trust.Init(filepath.Join(root, "a"), "a"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"b", "c"} {
		if err := trust.Issue(filepath.Join(root, "a"), d, filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	peers := map[string]string{}
	for i, d := range []string{"a", "b", "c"} {
		peers[d] = fmt.Sprintf("127.0.6.%d:%d", i+1, port)
	}
	nodes := map[string]*Node{}
	for _, d := range []string{"a", "b", "c"} {
		st, err := trust.Load(filepath.Join(root, d), d, []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(Options{Self: d, Peers: peers, StateDir: filepath.Join(root, "state-"+d), Trust: st, DeadTime: dt,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		nodes[d] = n
		t.Cleanup(func() { n.Close() })
	}
	return nodes
}

func freePort(t *testing.T) int {
	for p := 40000 + os.Getpid()%5000; p < 60000; p += 13 {
		ok := true
		for i := 1; i <= 3; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.6.%d:%d", i, p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func leader(nodes map[string]*Node) string {
	for d, n := range nodes {
		if n.Leader() {
			return d
		}
	}
	return ""
}

func TestAssignReplicatesAndMinorityLosesMajority(t *testing.T) {
	nodes := group(t, 200*time.Millisecond)
	waitFor(t, 5*time.Second, "a leader", func() bool { return leader(nodes) != "" })
	l := leader(nodes)
	if err := nodes[l].Assign("tg1", "b", 1, time.Second); err != nil {
		t.Fatal(err)
	}
	for d, n := range nodes {
		waitFor(t, 2*time.Second, d+" sees the assignment", func() bool { return n.Assignments()["tg1"] == Assignment{Device: "b", Generation: 1} })
		if !n.InMajority() {
			t.Errorf("%s not in the majority with every link up", d)
		}
	}
	// A stale generation does not overwrite.
	if err := nodes[l].Assign("tg1", "c", 1, time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if a := nodes[l].Assignments()["tg1"]; a.Device != "b" {
		t.Errorf("a stale assignment won: %+v", a)
	}
	// Cut the leader off: it leaves the majority within the lease, the
	// other two elect a leader that can assign; the cut one cannot.
	nodes[l].Isolate(true)
	waitFor(t, 2*time.Second, "the isolated leader steps out of the majority", func() bool { return !nodes[l].InMajority() })
	waitFor(t, 5*time.Second, "a new leader among the two", func() bool {
		nl := leader(nodes)
		return nl != "" && nl != l
	})
	nl := leader(nodes)
	if err := nodes[nl].Assign("tg1", nl, 2, time.Second); err != nil {
		t.Fatalf("the majority's leader cannot assign: %v", err)
	}
	if err := nodes[l].Assign("tg1", l, 3, 300*time.Millisecond); err == nil {
		t.Error("the isolated device could assign")
	}
	for i := 0; i < 20; i++ {
		if nodes[l].InMajority() {
			t.Fatal("the isolated device counts itself in the majority")
		}
		time.Sleep(20 * time.Millisecond)
	}
	nodes[l].Isolate(false)
	waitFor(t, 5*time.Second, "the returning device catches up", func() bool {
		return nodes[l].Assignments()["tg1"] == Assignment{Device: nl, Generation: 2} && nodes[l].InMajority()
	})
}
