// Package quorum is the consensus a device group of three or more devices
// decides on (hashicorp/raft): which device holds each traffic group. Only
// the raft leader assigns a group; a device serves a group only while the
// replicated assignments name it and it is in touch with a majority (the
// leader itself, or a follower that heard the leader within the lease), so
// a device cut off in a minority gives its groups up and never takes one.
//
// The raft transport is TCP with mutual TLS and the device certificates
// (ha/trust); the log and the stable store are a BoltDB file, snapshots
// files, both under the state directory, so a restarted device keeps its
// term and vote (raft's safety needs that).
package quorum

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Assignment is where one traffic group is to be active.
type Assignment struct {
	Device     string `json:"device"`
	Generation uint64 `json:"generation"`
}

// Options configure a Node.
type Options struct {
	Self     string
	Peers    map[string]string // device -> raft address (host:port), including Self
	StateDir string
	Trust    *trust.Store
	// DeadTime is the device group's dead_time: raft's timeouts are
	// derived from it (election after half of it, leader lease a quarter).
	DeadTime time.Duration
	Log      *slog.Logger
}

// Node is this device's raft member.
type Node struct {
	self   string
	raft   *raft.Raft
	fsm    *fsm
	stream *tlsStream
	store  *raftboltdb.BoltStore
	lease  time.Duration
}

// New opens (or creates and bootstraps) the raft state and joins the group.
func New(opt Options) (*Node, error) {
	if len(opt.Peers) < 3 {
		return nil, errors.New("quorum: a consensus group needs three or more devices")
	}
	if err := os.MkdirAll(opt.StateDir, 0o700); err != nil {
		return nil, err
	}
	byAddr := map[string]string{}
	for d, a := range opt.Peers {
		byAddr[a] = d
	}
	ln, err := tls.Listen("tcp", opt.Peers[opt.Self], opt.Trust.ServerTLS())
	if err != nil {
		return nil, fmt.Errorf("quorum: listen on %s: %w", opt.Peers[opt.Self], err)
	}
	stream := &tlsStream{Listener: ln, trust: opt.Trust, byAddr: byAddr, self: opt.Self}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: slogWriter{opt.Log.With("subsystem", "quorum")}})
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, Timeout: opt.DeadTime, Logger: logger})
	store, err := raftboltdb.NewBoltStore(filepath.Join(opt.StateDir, "raft.db"))
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("quorum: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(opt.StateDir, 2, logger)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("quorum: %w", err)
	}
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(opt.Self)
	c.HeartbeatTimeout = max(opt.DeadTime/2, 5*time.Millisecond)
	c.ElectionTimeout = c.HeartbeatTimeout
	c.LeaderLeaseTimeout = max(opt.DeadTime/4, 5*time.Millisecond)
	c.CommitTimeout = max(opt.DeadTime/20, time.Millisecond)
	c.Logger = logger
	f := &fsm{assign: map[string]Assignment{}}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("quorum: %w", err)
	}
	if !has {
		var servers []raft.Server
		for d, a := range opt.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(d), Address: raft.ServerAddress(a)})
		}
		sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
		if err := raft.BootstrapCluster(c, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
			store.Close()
			trans.Close()
			return nil, fmt.Errorf("quorum: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(c, f, store, store, snaps, trans)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("quorum: %w", err)
	}
	return &Node{self: opt.Self, raft: r, fsm: f, stream: stream, store: store, lease: c.HeartbeatTimeout}, nil
}

// Close leaves raft and closes the state.
func (n *Node) Close() error {
	err := n.raft.Shutdown().Error()
	n.store.Close()
	return err
}

// Leader reports whether this device leads the group now.
func (n *Node) Leader() bool { return n.raft.State() == raft.Leader }

// LeaderName is the current leader as far as this device knows ("" : none).
func (n *Node) LeaderName() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// InMajority reports whether this device is in touch with a majority: it
// leads (raft's leader steps down within the lease when it cannot reach a
// majority), or it heard the leader within the lease.
func (n *Node) InMajority() bool {
	switch n.raft.State() {
	case raft.Leader:
		return true
	case raft.Follower:
		last := n.raft.LastContact()
		return !last.IsZero() && time.Since(last) < n.lease
	}
	return false
}

// Lease is how long a follower counts as in the majority after it last
// heard the leader.
func (n *Node) Lease() time.Duration { return n.lease }

// Assignments is the replicated state, copied.
func (n *Node) Assignments() map[string]Assignment { return n.fsm.snapshot() }

// Config is the group's agreed configuration (zero before the first).
func (n *Node) Config() Config {
	n.fsm.mu.Lock()
	defer n.fsm.mu.Unlock()
	return n.fsm.config
}

// ProposeConfig records a new version of the synchronised configuration
// made from generation base (force: even if the group has moved past it)
// and returns its generation. Only the leader can; ErrConfigConflict
// (wrapped) when base is stale and force is not set.
func (n *Node) ProposeConfig(base uint64, c Config, force bool, timeout time.Duration) (uint64, error) {
	b, _ := json.Marshal(command{Config: &c, Base: base, Force: force})
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return 0, err
	}
	switch r := f.Response().(type) {
	case error:
		return 0, r
	case uint64:
		return r, nil
	}
	return 0, errors.New("quorum: unexpected answer to a configuration")
}

// Assign records, through the log, that group is to be active on device
// with generation gen. Only the leader can; it waits up to timeout for the
// majority to commit it.
func (n *Node) Assign(group, device string, gen uint64, timeout time.Duration) error {
	b, _ := json.Marshal(command{Group: group, Assignment: Assignment{Device: device, Generation: gen}})
	return n.raft.Apply(b, timeout).Error()
}

// Config is the synchronised part of the configuration as the group
// agreed on it (config sync in groups of three or more devices).
type Config struct {
	Generation uint64 `json:"generation"`
	Origin     string `json:"origin"` // device whose change it is
	Digest     string `json:"digest"`
	YAML       []byte `json:"yaml"`
}

// ErrConfigConflict is the answer to a configuration proposed on a base
// generation the group has moved past (someone else changed it first).
var ErrConfigConflict = errors.New("the group's configuration changed since this device last had it")

type command struct {
	Group string `json:"group,omitempty"`
	Assignment
	Config *Config `json:"config,omitempty"` // a configuration instead of an assignment
	Base   uint64  `json:"base,omitempty"`   // Config: the generation it was made from
	Force  bool    `json:"force,omitempty"`  // Config: even over a later one
}

// fsm is the replicated assignments and configuration.
type fsm struct {
	mu     sync.Mutex
	assign map[string]Assignment
	config Config
}

func (f *fsm) Apply(l *raft.Log) any {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil || (c.Group == "") == (c.Config == nil) {
		return fmt.Errorf("quorum: bad log entry %d", l.Index)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Config != nil {
		if c.Base != f.config.Generation && !c.Force {
			return fmt.Errorf("%w (it is at generation %d, made on %s; the proposal was made from %d)", ErrConfigConflict, f.config.Generation, f.config.Origin, c.Base)
		}
		cfg := *c.Config
		cfg.Generation = f.config.Generation + 1
		f.config = cfg
		return cfg.Generation
	}
	if old, ok := f.assign[c.Group]; ok && c.Generation <= old.Generation {
		return nil // a stale assignment: the later one stands
	}
	f.assign[c.Group] = c.Assignment
	return nil
}

func (f *fsm) snapshot() map[string]Assignment {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]Assignment, len(f.assign))
	for k, v := range f.assign {
		out[k] = v
	}
	return out
}

type fsmState struct {
	Assign map[string]Assignment `json:"assign"`
	Config Config                `json:"config"`
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	cfg := f.config
	f.mu.Unlock()
	return fsmSnapshot{Assign: f.snapshot(), Config: cfg}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st fsmState
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return err
	}
	if st.Assign == nil {
		st.Assign = map[string]Assignment{}
	}
	f.mu.Lock()
	f.assign, f.config = st.Assign, st.Config
	f.mu.Unlock()
	return nil
}

type fsmSnapshot fsmState

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(fsmState(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// tlsStream is raft's stream layer over mutual TLS: outgoing connections
// must reach the device the address belongs to; incoming ones must come
// from a device of the group (trust.Store checks both).
type tlsStream struct {
	net.Listener
	trust  *trust.Store
	byAddr map[string]string
	self   string

	mu      sync.Mutex
	blocked bool                  // Isolate: behave as a cut network
	conns   map[net.Conn]struct{} // open raft connections, to cut them
}

// track remembers c until it is closed.
func (s *tlsStream) track(c net.Conn) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	t := &trackedConn{Conn: c, s: s}
	s.conns[t] = struct{}{}
	return t
}

type trackedConn struct {
	net.Conn
	s *tlsStream
}

func (c *trackedConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// Isolate cuts (true) or restores this device's raft connections, as a
// network partition would: fault injection for tests and drills; the
// heartbeats are not affected.
func (n *Node) Isolate(on bool) {
	s := n.stream
	s.mu.Lock()
	s.blocked = on
	var open []net.Conn
	if on {
		for c := range s.conns {
			open = append(open, c)
		}
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	s.mu.Lock()
	blocked := s.blocked
	s.mu.Unlock()
	if blocked {
		return nil, errors.New("quorum: network cut (test)")
	}
	peer, ok := s.byAddr[string(address)]
	if !ok {
		return nil, fmt.Errorf("quorum: %s is no device's address", address)
	}
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), s.trust.ClientTLS(peer))
	if err != nil {
		return nil, err
	}
	return s.track(c), nil
}

func (s *tlsStream) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		blocked := s.blocked
		s.mu.Unlock()
		if blocked {
			c.Close()
			continue
		}
		return s.track(c), nil
	}
}

// slogWriter sends raft's log lines to the structured log.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
