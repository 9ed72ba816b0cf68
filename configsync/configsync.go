// Package configsync keeps the configurations of a device group's devices
// equal (F5: ConfigSync of a Sync-Failover device group, automatic or
// manual).
//
// What is synchronised is the configuration file minus the sections that
// belong to each device (config.SyncLocalKeys: local, management, log).
// Every device numbers its versions of the synchronised part with a
// generation: a change made on a device (a reload of an edited file, a
// configuration posted to the API) takes a generation above any it has
// seen; a sync gives the receiver the sender's generation. Each device also
// remembers the generation both last agreed on (its base). Comparing the
// two devices' states then says everything:
//
//   - same content: in sync;
//   - one changed since the base, the other not: that one is ahead, the
//     other behind — automatic mode pushes, manual mode waits for `fulcrum
//     sync to-group` (on the one ahead) or `fulcrum sync from-device`;
//   - both changed since the base: a conflict, shown on both and never
//     resolved silently: the operator picks a side with `fulcrum sync
//     to-group -force` or `fulcrum sync from-device`.
//
// Two devices that never synced are in conflict unless their files agree;
// the first sync is the operator's choice, as on F5.
//
// Groups of three or more devices sync through their raft log instead
// (group.go): a version is a log entry made from a generation, taken only
// if the group is still there.
//
// The channel is HTTPS with mutual TLS 1.3 and the device certificates
// (ha/trust) on config_sync.port of the device's first HA address. The
// state (generation, origin, base, digest) is kept beside the configuration
// file (FILE.sync) so it survives restarts.
package configsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
	"gopkg.in/yaml.v3"
)

// Engine is what the syncer needs of the running instance.
type Engine interface {
	Config() *config.Config
	// LoadConfig validates, applies and saves a whole configuration.
	LoadConfig(data []byte) (api.ConfigApplied, error)
}

// Options configure a Syncer.
type Options struct {
	Config    *config.Config // at start: the device group and config_sync
	Engine    Engine
	Trust     *trust.Store
	StatePath string // "" : the configuration file + ".sync"; state is then not kept if there is no file
	Log       *slog.Logger
	// Quorum, with three or more devices, carries the configuration: each
	// version is an entry of the group's raft log (group.go).
	Quorum Quorum
}

// State is one device's configuration version.
type State struct {
	Device     string    `json:"device"`
	Generation uint64    `json:"generation"`
	Origin     string    `json:"origin"`                // device that made this generation
	Base       uint64    `json:"base"`                  // generation both devices last agreed on (0: never)
	BaseDigest string    `json:"base_digest,omitempty"` // groups of 3+: the content at Base
	Digest     string    `json:"digest"`                // SHA-256 of the synchronised part, hex
	Changed    time.Time `json:"changed,omitzero"`
	// History is this device's recent versions (generation-digest),
	// oldest first, the current one last: a peer whose version is in it
	// is behind this device (a fast-forward), not in conflict with it.
	History []string `json:"history"`
}

// version identifies a state: the same content made again later is a new
// version.
func (s *State) version() string { return strconv.FormatUint(s.Generation, 10) + "-" + s.Digest }

// maxHistory bounds State.History.
const maxHistory = 32

// had reports whether version v was one of this device's earlier versions.
func (s *State) had(v string) bool {
	return len(s.History) > 1 && slices.Contains(s.History[:len(s.History)-1], v)
}

// become makes (gen, digest) the current version.
func (s *State) become(gen uint64, digest string) {
	s.Generation, s.Digest = gen, digest
	v := s.version()
	if n := len(s.History); n > 0 && s.History[n-1] == v {
		return
	}
	s.History = append(s.History, v)
	if len(s.History) > maxHistory {
		s.History = slices.Delete(s.History, 0, len(s.History)-maxHistory)
	}
}

// Status is config sync as `fulcrum show sync` prints it.
type Status struct {
	Mode      string    `json:"mode"`
	Local     State     `json:"local"`
	Peer      *State    `json:"peer,omitempty"` // nil: not reached
	PeerName  string    `json:"peer_name"`
	PeerError string    `json:"peer_error,omitempty"`
	Checked   time.Time `json:"checked,omitzero"`
	// Sync is in-sync | ahead (this device has changes the peer lacks) |
	// behind (the peer has changes this device lacks) | conflict (both
	// changed since they last agreed) | unknown (peer not reached).
	Sync      string    `json:"sync"`
	LastSync  time.Time `json:"last_sync,omitzero"`
	LastError string    `json:"last_error,omitempty"` // the last failed sync, either way
}

// Errors of Push and Pull, wrapped.
var (
	ErrConflict = fmt.Errorf("conflicting changes (%w)", api.ErrConflict)
	ErrPeer     = fmt.Errorf("peer (%w)", api.ErrUnavailable)
)

// Syncer runs config sync for this device.
type Syncer struct {
	self, peer string
	mode       string
	interval   time.Duration
	listen     string
	peerURL    string
	eng        Engine
	log        *slog.Logger
	statePath  string
	client     *http.Client
	server     *http.Server
	ln         net.Listener

	mu       sync.Mutex // state, status fields; held across applying a sync
	state    State
	peerSt   *State
	peerErr  string
	checked  time.Time
	lastSync time.Time
	lastErr  string

	lastAutoErr string // check's goroutine only

	// Groups of three or more (group.go).
	q       Quorum
	devices map[string]string       // device -> https://address:port of its sync listener
	clients map[string]*http.Client // device -> client that verifies it
}

// New loads the saved state, notes a change made while the process was
// down, and opens the listener.
func New(opt Options) (*Syncer, error) {
	c := opt.Config
	if len(c.Devices) != 2 && opt.Quorum == nil {
		return nil, fmt.Errorf("configsync: a group of %d devices syncs through its quorum", len(c.Devices))
	}
	if opt.Quorum != nil {
		return newGroup(opt)
	}
	self := c.Local.Device
	var peer string
	for _, d := range slices.Sorted(mapKeys(c.Devices)) {
		if d != self {
			peer = d
		}
	}
	me, them := c.Devices[self], c.Devices[peer]
	if me == nil || them == nil || len(me.HAAddresses) == 0 || len(them.HAAddresses) == 0 {
		return nil, errors.New("configsync: the device group needs this device and one peer with HA addresses")
	}
	port := strconv.Itoa(c.ConfigSync.Port)
	s := &Syncer{
		self: self, peer: peer, mode: c.ConfigSync.Mode, interval: time.Duration(c.ConfigSync.Interval),
		listen:    net.JoinHostPort(me.HAAddresses[0], port),
		peerURL:   "https://" + net.JoinHostPort(them.HAAddresses[0], port),
		eng:       opt.Engine,
		log:       opt.Log.With("subsystem", "configsync"),
		statePath: opt.StatePath,
	}
	s.client = newClientFor(opt.Trust, peer)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sync/v1/status", s.serveStatus)
	mux.HandleFunc("GET /sync/v1/config", s.serveConfig)
	mux.HandleFunc("POST /sync/v1/push", s.servePush)
	if err := s.open(c, opt.Trust, mux); err != nil {
		return nil, err
	}
	return s, nil
}

// open loads the saved state (FILE.sync unless Options.StatePath said
// otherwise) and opens the mutual-TLS listener serving mux.
func (s *Syncer) open(c *config.Config, store *trust.Store, mux *http.ServeMux) error {
	if s.statePath == "" && c.File != "" && c.File != "api" {
		s.statePath = c.File + ".sync"
	}
	if err := s.loadState(c); err != nil {
		return err
	}
	tc := store.ServerTLS()
	s.server = &http.Server{Handler: mux, TLSConfig: tc, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: newRateLimitedLog(s.log)}
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return fmt.Errorf("configsync: listen on %s: %w", s.listen, err)
	}
	s.ln = tls.NewListener(ln, tc)
	return nil
}

func mapKeys[T any](m map[string]T) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// loadState reads FILE.sync and compares it with the configuration in
// force: a different digest is a change made here while Fulcrum was down
// (or a first start).
func (s *Syncer) loadState(c *config.Config) error {
	_, digest, err := syncedPart(c.Source)
	if err != nil {
		return err
	}
	if s.statePath != "" {
		if b, err := os.ReadFile(s.statePath); err == nil {
			if err := json.Unmarshal(b, &s.state); err != nil {
				return fmt.Errorf("configsync: %s: %w (remove it to start counting again)", s.statePath, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	s.state.Device = s.self
	if len(s.state.History) == 0 && s.state.Digest != "" {
		s.state.History = []string{s.state.version()}
	}
	if s.state.Digest != digest {
		s.localChange(digest, "configuration changed while Fulcrum was not running (or first start)")
	}
	return nil
}

// localChange records a change made on this device (mu held or not yet
// shared).
func (s *Syncer) localChange(digest, why string) {
	gen := s.state.Generation
	if s.peerSt != nil {
		gen = max(gen, s.peerSt.Generation)
	}
	s.state.Origin, s.state.Changed = s.self, time.Now()
	s.state.become(gen+1, digest)
	s.saveState()
	s.log.Info("configuration changed on this device", "generation", s.state.Generation, "base", s.state.Base, "why", why)
}

func (s *Syncer) saveState() {
	if s.statePath == "" {
		return
	}
	b, _ := json.MarshalIndent(s.state, "", "  ")
	tmp := s.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		err = os.Rename(tmp, s.statePath)
		if err != nil {
			s.log.Error("cannot save the config sync state", "file", s.statePath, "error", err)
		}
	}
}

// syncedPart returns the configuration without the device's own sections,
// as YAML, and its digest.
func syncedPart(src []byte) ([]byte, string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, "", fmt.Errorf("configsync: %w", err)
	}
	root := mapping(&doc)
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if root != nil {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if !slices.Contains(config.SyncLocalKeys, root.Content[i].Value) {
				out.Content = append(out.Content, root.Content[i], root.Content[i+1])
			}
		}
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		return nil, "", fmt.Errorf("configsync: %w", err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// mapping is the top-level mapping of a YAML document (nil if empty).
func mapping(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		return doc.Content[0]
	}
	return nil
}

// merge is the configuration this device runs after a sync: its own local
// sections from mine, everything else from synced.
func merge(mine, synced []byte) ([]byte, error) {
	var a, b yaml.Node
	if err := yaml.Unmarshal(mine, &a); err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(synced, &b); err != nil {
		return nil, err
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if ra := mapping(&a); ra != nil {
		for i := 0; i+1 < len(ra.Content); i += 2 {
			if slices.Contains(config.SyncLocalKeys, ra.Content[i].Value) {
				out.Content = append(out.Content, ra.Content[i], ra.Content[i+1])
			}
		}
	}
	if rb := mapping(&b); rb != nil {
		for i := 0; i+1 < len(rb.Content); i += 2 {
			if !slices.Contains(config.SyncLocalKeys, rb.Content[i].Value) {
				out.Content = append(out.Content, rb.Content[i], rb.Content[i+1])
			}
		}
	}
	return yaml.Marshal(out)
}

// Run serves the peer and, every interval, compares this device with it
// (automatic mode: pushes what is ahead) until ctx ends.
func (s *Syncer) Run(ctx context.Context) {
	go s.server.Serve(s.ln)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.check(ctx)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s.server.Shutdown(sctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// observe notices a local change of the configuration in force (mu held).
func (s *Syncer) observe() {
	c := s.eng.Config()
	if c == nil {
		return
	}
	_, digest, err := syncedPart(c.Source)
	if err == nil && digest != s.state.Digest {
		s.localChange(digest, "reload or API")
	}
}

// check refreshes the peer's state and, in automatic mode, pushes.
func (s *Syncer) check(ctx context.Context) {
	if s.q != nil {
		s.checkGroup(ctx)
		return
	}
	s.mu.Lock()
	s.observe()
	s.mu.Unlock()
	peer, err := s.fetchStatus(ctx)
	s.mu.Lock()
	s.checked = time.Now()
	if err != nil {
		s.peerSt, s.peerErr = nil, err.Error()
		s.mu.Unlock()
		return
	}
	s.peerSt, s.peerErr = peer, ""
	verdict := s.verdictLocked()
	if verdict == "in-sync" && (s.state.Base != s.state.Generation || peer.Generation > s.state.Generation) {
		// Equal content: agree on a generation.
		g := max(s.state.Generation, peer.Generation)
		s.state.become(g, s.state.Digest)
		s.state.Base = g
		s.saveState()
	}
	s.mu.Unlock()
	if verdict == "ahead" && s.mode == "automatic" {
		err := s.Push(ctx, false)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != "" && msg != s.lastAutoErr { // once per distinct failure, not every interval
			s.log.Warn("automatic config sync to the peer failed; retrying every interval", "peer", s.peer, "error", msg)
		}
		s.lastAutoErr = msg
	}
}

// verdictLocked compares this device with the last peer state (mu held).
func (s *Syncer) verdictLocked() string {
	if s.q != nil {
		return s.groupVerdictLocked()
	}
	p := s.peerSt
	switch {
	case p == nil:
		return "unknown"
	case p.Digest == s.state.Digest:
		return "in-sync"
	case s.state.had(p.version()):
		return "ahead"
	case p.had(s.state.version()):
		return "behind"
	default:
		return "conflict"
	}
}

// Status reports this device's and the peer's state as last seen.
func (s *Syncer) Status() *Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &Status{Mode: s.mode, Local: s.state, PeerName: s.peer, PeerError: s.peerErr, Checked: s.checked,
		Sync: s.verdictLocked(), LastSync: s.lastSync, LastError: s.lastErr}
	if s.peerSt != nil {
		p := *s.peerSt
		st.Peer = &p
	}
	return st
}

// SyncStatus is Status for the API.
func (s *Syncer) SyncStatus() any { return s.Status() }

func (s *Syncer) fetchStatus(ctx context.Context) (*State, error) {
	var st State
	if err := s.call(ctx, http.MethodGet, "/sync/v1/status", nil, &st); err != nil {
		return nil, err
	}
	if st.Device != s.peer {
		return nil, fmt.Errorf("%w: answered as %q", ErrPeer, st.Device)
	}
	return &st, nil
}

func (s *Syncer) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.peerURL+path, rd)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrPeer, s.peer, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, config.MaxFileSize+1<<16))
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrPeer, s.peer, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(b, &e)
		switch resp.StatusCode {
		case http.StatusConflict:
			return fmt.Errorf("%w: peer %s: %s", ErrConflict, s.peer, e.Error)
		case http.StatusBadRequest:
			return fmt.Errorf("%w: peer %s refused it: %s", api.ErrBadRequest, s.peer, e.Error)
		}
		return fmt.Errorf("%w %s: %s: %s", ErrPeer, s.peer, resp.Status, e.Error)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// pushBody is POST /sync/v1/push.
type pushBody struct {
	State State  `json:"state"` // the sender's
	YAML  []byte `json:"yaml"`  // the synchronised part
	Force bool   `json:"force"`
}

// Push sends this device's configuration to the peer (`fulcrum sync
// to-group`). Without force, a peer that changed its configuration since
// the two last agreed refuses (ErrConflict).
func (s *Syncer) Push(ctx context.Context, force bool) error {
	if s.q != nil {
		return s.pushGroup(ctx, force)
	}
	s.mu.Lock()
	s.observe()
	c := s.eng.Config()
	state := s.state
	s.mu.Unlock()
	part, digest, err := syncedPart(c.Source)
	if err != nil {
		return err
	}
	if digest != state.Digest {
		return errors.New("configsync: the configuration changed while pushing; try again")
	}
	var res State
	err = s.call(ctx, http.MethodPost, "/sync/v1/push", pushBody{State: state, YAML: part, Force: force}, &res)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = "push to " + s.peer + ": " + err.Error()
		return err
	}
	if s.state.Digest == digest {
		s.state.Base = state.Generation
		s.saveState()
	}
	s.peerSt, s.lastSync, s.lastErr = &res, time.Now(), ""
	s.log.Info("configuration synchronised to the peer", "peer", s.peer, "generation", state.Generation, "forced", force)
	return nil
}

// configBody is GET /sync/v1/config.
type configBody struct {
	State State  `json:"state"`
	YAML  []byte `json:"yaml"`
}

// Pull fetches the peer's configuration and applies it here (`fulcrum
// sync from-device`): the operator's choice, so it replaces any change
// made here.
func (s *Syncer) Pull(ctx context.Context) error {
	if s.q != nil {
		return s.pullGroup()
	}
	var cb configBody
	if err := s.call(ctx, http.MethodGet, "/sync/v1/config", nil, &cb); err != nil {
		s.mu.Lock()
		s.lastErr = "pull from " + s.peer + ": " + err.Error()
		s.mu.Unlock()
		return err
	}
	return s.apply(cb.State, cb.YAML, true)
}

// apply applies a synchronised part sent by the peer in state from
// (force: even over changes made here since the base).
func (s *Syncer) apply(from State, part []byte, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observe()
	_, digest, err := syncedPart(part)
	if err != nil {
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	if digest == s.state.Digest {
		s.state.Origin, s.state.Base = from.Origin, from.Generation
		s.state.become(from.Generation, digest)
		s.saveState()
		return nil
	}
	if !force && !from.had(s.state.version()) {
		err := fmt.Errorf("%w: this device (%s) has a version of the configuration (generation %d, made on %s) that %s never had: both changed since they last agreed (generation %d); resolve with `fulcrum sync to-group -force` on the device whose configuration is right, or `fulcrum sync from-device`",
			ErrConflict, s.self, s.state.Generation, s.state.Origin, from.Device, s.state.Base)
		s.lastErr = err.Error()
		return err
	}
	c := s.eng.Config()
	merged, err := merge(c.Source, part)
	if err != nil {
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	res, err := s.eng.LoadConfig(merged)
	if err != nil {
		s.lastErr = fmt.Sprintf("generation %d from %s refused here: %v", from.Generation, from.Origin, err)
		s.log.Error("synchronised configuration refused; the running configuration stays", "generation", from.Generation, "origin", from.Origin, "error", err.Error())
		return err
	}
	s.state.Origin, s.state.Base, s.state.Changed = from.Origin, from.Generation, time.Now()
	s.state.become(from.Generation, digest)
	s.saveState()
	s.lastSync, s.lastErr = time.Now(), ""
	s.log.Info("configuration synchronised from the peer", "origin", from.Origin, "generation", from.Generation,
		"saved", res.Persisted, "file", res.File, "forced", force)
	return nil
}

// The peer's side.

// fromPeer checks that a request comes from the group's other device.
func (s *Syncer) fromPeer(w http.ResponseWriter, r *http.Request) bool {
	if r.TLS == nil || trust.PeerDevice(*r.TLS) != s.peer {
		who := ""
		if r.TLS != nil {
			who = trust.PeerDevice(*r.TLS)
		}
		s.log.Warn("config sync request refused: not this device's peer", "remote", r.RemoteAddr, "device", who)
		writeErr(w, http.StatusForbidden, "not this device's peer")
		return false
	}
	return true
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (s *Syncer) serveStatus(w http.ResponseWriter, r *http.Request) {
	if !s.fromPeer(w, r) {
		return
	}
	s.mu.Lock()
	s.observe()
	st := s.state
	s.mu.Unlock()
	json.NewEncoder(w).Encode(st)
}

func (s *Syncer) serveConfig(w http.ResponseWriter, r *http.Request) {
	if !s.fromPeer(w, r) {
		return
	}
	s.mu.Lock()
	s.observe()
	st := s.state
	c := s.eng.Config()
	s.mu.Unlock()
	part, _, err := syncedPart(c.Source)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	json.NewEncoder(w).Encode(configBody{State: st, YAML: part})
}

func (s *Syncer) servePush(w http.ResponseWriter, r *http.Request) {
	if !s.fromPeer(w, r) {
		return
	}
	var pb pushBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 2*config.MaxFileSize)).Decode(&pb); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if err := s.apply(pb.State, pb.YAML, pb.Force); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, ErrConflict) {
			code = http.StatusConflict
		}
		writeErr(w, code, err.Error())
		return
	}
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	json.NewEncoder(w).Encode(st)
}

// Close closes the listener (Run's context stops the rest).
func (s *Syncer) Close() { s.ln.Close() }

// newClientFor is the HTTPS client of store's device for peer.
func newClientFor(store *trust.Store, peer string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     store.ClientTLS(peer),
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConns:        2,
			IdleConnTimeout:     time.Minute,
		},
	}
}

func newRateLimitedLog(l *slog.Logger) *log.Logger { return log.New(&rateLimitedLog{log: l}, "", 0) }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// rateLimitedLog turns the HTTPS server's own messages (refused TLS
// handshakes: a device outside the trust domain, a scanner) into warnings,
// at most 10 a minute, so that a flood cannot fill the log; the rest are
// counted and reported.
type rateLimitedLog struct {
	log        *slog.Logger
	mu         sync.Mutex
	window     time.Time
	n, dropped int
}

func (r *rateLimitedLog) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.window) >= time.Minute {
		if r.dropped > 0 {
			r.log.Warn("config sync listener: more messages suppressed", "count", r.dropped)
		}
		r.window, r.n, r.dropped = now, 0, 0
	}
	if r.n >= 10 {
		r.dropped++
		return len(p), nil
	}
	r.n++
	r.log.Warn("config sync listener: " + string(bytes.TrimSpace(p)))
	return len(p), nil
}
