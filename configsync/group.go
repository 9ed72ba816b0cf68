package configsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/ha/quorum"
	"github.com/fulcrum-adc/fulcrum/ha/trust"
)

// Groups of three or more devices: the configuration rides the group's
// raft log (ha/quorum). Each version of the synchronised part is a log
// entry made from the generation its author last had; the log takes it
// only if the group is still at that generation (or the operator forces
// it), so two devices changing at once cannot both win — the later is
// told it conflicts, and the devices show it. Every device compares its
// file with the group's version:
//
//   - the same: in sync;
//   - changed here, the group still where this device left it: ahead —
//     automatic mode proposes it (through the leader), manual mode waits
//     for `fulcrum sync to-group`;
//   - unchanged here, the group moved on: behind — automatic mode applies
//     the group's version, manual mode waits for `fulcrum sync
//     from-device` (which takes the group's version);
//   - both: conflict, until the operator forces one side.

// Quorum is the group's consensus (ha/quorum's Node).
type Quorum interface {
	Leader() bool
	LeaderName() string
	Config() quorum.Config
	ProposeConfig(base uint64, c quorum.Config, force bool, timeout time.Duration) (uint64, error)
}

// groupName is what Status shows as the peer in a group of 3+.
const groupName = "group"

func newGroup(opt Options) (*Syncer, error) {
	c := opt.Config
	self := c.Local.Device
	me := c.Devices[self]
	if me == nil || len(me.HAAddresses) == 0 {
		return nil, errors.New("configsync: this device has no HA address")
	}
	port := strconv.Itoa(c.ConfigSync.Port)
	s := &Syncer{
		self: self, peer: groupName, mode: c.ConfigSync.Mode, interval: time.Duration(c.ConfigSync.Interval),
		listen: net.JoinHostPort(me.HAAddresses[0], port), eng: opt.Engine, log: opt.Log.With("subsystem", "configsync"),
		statePath: opt.StatePath, q: opt.Quorum, devices: map[string]string{}, clients: map[string]*http.Client{},
	}
	for name, d := range c.Devices {
		if name != self && len(d.HAAddresses) > 0 {
			s.devices[name] = "https://" + net.JoinHostPort(d.HAAddresses[0], port)
			s.clients[name] = newClientFor(opt.Trust, name)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sync/v1/propose", s.servePropose)
	if err := s.open(c, opt.Trust, mux); err != nil {
		return nil, err
	}
	return s, nil
}

// groupVerdictLocked compares this device with the group (mu held).
func (s *Syncer) groupVerdictLocked() string {
	p := s.peerSt
	switch {
	case p == nil:
		return "unknown"
	case p.Digest == s.state.Digest:
		return "in-sync"
	}
	changedHere := s.state.Base == 0 || s.state.Digest != s.state.BaseDigest
	groupMoved := p.Generation != s.state.Base
	switch {
	case changedHere && !groupMoved:
		return "ahead"
	case !changedHere && groupMoved:
		return "behind"
	}
	return "conflict"
}

// checkGroup compares this device with the group's version and, in
// automatic mode, proposes or applies.
func (s *Syncer) checkGroup(ctx context.Context) {
	gc := s.q.Config()
	s.mu.Lock()
	s.observe()
	s.checked = time.Now()
	s.peerSt = &State{Device: groupName, Generation: gc.Generation, Origin: gc.Origin, Digest: gc.Digest, Base: gc.Generation}
	s.peerErr = ""
	verdict := s.groupVerdictLocked()
	if verdict == "in-sync" && (s.state.Base != gc.Generation || s.state.BaseDigest != gc.Digest) {
		s.state.Base, s.state.BaseDigest = gc.Generation, gc.Digest
		s.state.become(max(s.state.Generation, gc.Generation), s.state.Digest)
		s.saveState()
	}
	s.mu.Unlock()
	if s.mode != "automatic" {
		return
	}
	var err error
	switch verdict {
	case "ahead":
		err = s.pushGroup(ctx, false)
	case "behind":
		err = s.pullGroup()
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg != "" && msg != s.lastAutoErr {
		s.log.Warn("automatic config sync with the group failed; retrying every interval", "error", msg)
	}
	s.lastAutoErr = msg
}

// proposal is POST /sync/v1/propose, to the leader.
type proposal struct {
	Base   uint64 `json:"base"`
	Origin string `json:"origin"`
	Digest string `json:"digest"`
	YAML   []byte `json:"yaml"`
	Force  bool   `json:"force"`
}

// pushGroup proposes this device's configuration to the group (`fulcrum
// sync to-group`).
func (s *Syncer) pushGroup(ctx context.Context, force bool) error {
	s.mu.Lock()
	s.observe()
	c := s.eng.Config()
	base := s.state.Base
	s.mu.Unlock()
	part, digest, err := syncedPart(c.Source)
	if err != nil {
		return err
	}
	p := proposal{Base: base, Origin: s.self, Digest: digest, YAML: part, Force: force}
	gen, err := s.propose(ctx, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = "to the group: " + err.Error()
		return err
	}
	if s.state.Digest == digest {
		s.state.Base, s.state.BaseDigest, s.state.Origin = gen, digest, s.self
		s.state.become(gen, digest)
		s.saveState()
	}
	s.lastSync, s.lastErr = time.Now(), ""
	s.log.Info("configuration synchronised to the group", "generation", gen, "forced", force)
	return nil
}

// propose hands p to the raft leader: itself, or over HTTPS.
func (s *Syncer) propose(ctx context.Context, p proposal) (uint64, error) {
	if s.q.Leader() {
		return s.proposeHere(p)
	}
	leader := s.q.LeaderName()
	url, ok := s.devices[leader]
	if !ok {
		return 0, fmt.Errorf("%w: no leader in touch (the group has no majority here)", ErrPeer)
	}
	b, _ := json.Marshal(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/sync/v1/propose", bytesReader(b))
	if err != nil {
		return 0, err
	}
	resp, err := s.clients[leader].Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w %s: %w", ErrPeer, leader, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var out struct {
		Generation uint64 `json:"generation"`
		Error      string `json:"error"`
	}
	json.Unmarshal(body, &out)
	switch resp.StatusCode {
	case http.StatusOK:
		return out.Generation, nil
	case http.StatusConflict:
		return 0, fmt.Errorf("%w: %s", ErrConflict, out.Error)
	}
	return 0, fmt.Errorf("%w %s: %s: %s", ErrPeer, leader, resp.Status, out.Error)
}

// proposeHere writes p to the log (leader only).
func (s *Syncer) proposeHere(p proposal) (uint64, error) {
	gen, err := s.q.ProposeConfig(p.Base, quorum.Config{Origin: p.Origin, Digest: p.Digest, YAML: p.YAML}, p.Force, 5*time.Second)
	if errors.Is(err, quorum.ErrConfigConflict) {
		return 0, fmt.Errorf("%w: %w; resolve with `fulcrum sync to-group -force` on the device whose configuration is right, or `fulcrum sync from-device` to take the group's", ErrConflict, err)
	}
	return gen, err
}

// servePropose is the leader's side of propose.
func (s *Syncer) servePropose(w http.ResponseWriter, r *http.Request) {
	who := ""
	if r.TLS != nil {
		who = trust.PeerDevice(*r.TLS)
	}
	if _, ok := s.devices[who]; !ok {
		s.log.Warn("config sync proposal refused: not a device of the group", "remote", r.RemoteAddr, "device", who)
		writeErr(w, http.StatusForbidden, "not a device of the group")
		return
	}
	var p proposal
	if err := json.NewDecoder(io.LimitReader(r.Body, 2*config.MaxFileSize)).Decode(&p); err != nil || p.Origin != who {
		writeErr(w, http.StatusBadRequest, "a proposal from its own author")
		return
	}
	if !s.q.Leader() {
		writeErr(w, http.StatusServiceUnavailable, "not the leader")
		return
	}
	gen, err := s.proposeHere(p)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, api.ErrConflict) {
			code = http.StatusConflict
		}
		writeErr(w, code, err.Error())
		return
	}
	json.NewEncoder(w).Encode(map[string]uint64{"generation": gen})
}

// pullGroup applies the group's version here (`fulcrum sync from-device`,
// or automatic mode when this device is behind).
func (s *Syncer) pullGroup() error {
	gc := s.q.Config()
	if gc.Generation == 0 {
		return fmt.Errorf("%w: the group has no configuration yet (fulcrum sync to-group on one device)", api.ErrBadRequest)
	}
	if err := s.apply(State{Device: groupName, Generation: gc.Generation, Origin: gc.Origin}, gc.YAML, true); err != nil {
		return err
	}
	s.mu.Lock()
	s.state.BaseDigest = s.state.Digest
	s.saveState()
	s.mu.Unlock()
	return nil
}
