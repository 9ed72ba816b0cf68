package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/pool"
)

// This file keeps runtime member states (disable, force-offline set through
// the API or CLI) across restarts, as F5 keeps them in its running
// configuration: a small JSON file beside the configuration, rewritten
// atomically on every change and applied when the engine starts.
//
// A record remembers the state the configuration gave the member when the
// operator changed it. If the configuration's state for that member changes
// later (the file was edited), the edit wins and the record is dropped: the
// same rule a reload follows for members carried over.

// stateFileVersion is written into the file; a file of another version is
// ignored (logged), never misread.
const stateFileVersion = 1

// maxStateFile bounds what is read at start: a few records per configured
// member fit in a tiny fraction of it.
const maxStateFile = 16 << 20

// stateDoc is the state file.
type stateDoc struct {
	Version int           `json:"version"`
	Members []memberState `json:"members"`
}

// memberState is one member whose runtime state differs from its
// configured one.
type memberState struct {
	Pool       string    `json:"pool"`
	Member     string    `json:"member"`     // IP:PORT, canonical
	State      string    `json:"state"`      // disabled | forced-offline | enabled
	Configured string    `json:"configured"` // the configuration's state when State was set
	Changed    time.Time `json:"changed"`
}

type memberKey struct {
	pool   string
	member netip.AddrPort
}

// stateStore owns the state file. Its mutex serialises every change to the
// records and the file, so the file always matches the last change made.
type stateStore struct {
	mu       sync.Mutex
	explicit string // Options.StatePath
	resolved bool   // path decided (at the first Apply)
	path     string // "" = no state file
	records  map[memberKey]memberState

	// cfgMu serialises LoadConfig (apply, then save to the file) so that
	// two configurations posted at once leave the file and the running
	// configuration the same.
	cfgMu sync.Mutex
}

// statePath decides where member states are kept: Options.StatePath, else
// management.state_file, else the configuration file's path plus ".state".
// "off" disables; an instance without a configuration file (demo, API
// only) keeps none unless told where.
func statePath(explicit, configured, configPath string) string {
	switch {
	case explicit == config.ManagementOff, explicit == "" && configured == config.ManagementOff:
		return ""
	case explicit != "":
		return explicit
	case configured != "":
		return configured
	case configPath != "":
		return configPath + ".state"
	}
	return ""
}

// configuredStates maps every configured member to its configured state.
func configuredStates(cfg *config.Config) map[memberKey]pool.State {
	out := map[memberKey]pool.State{}
	for name, p := range cfg.Pools {
		for _, m := range p.Members {
			ap, err := netip.ParseAddrPort(m.Address)
			if err != nil {
				continue // validation refused it; nothing to keep
			}
			st, err := pool.ParseState(m.State)
			if err != nil {
				st = pool.Enabled // "" : the default
			}
			out[memberKey{name, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}] = st
		}
	}
	return out
}

// applyMemberStates runs in every Apply (e.mu held) as soon as the new pools
// exist, before any listener can hand them a connection: the first time it
// reads the state file; every time it applies the saved states to the
// members. The returned commit, called once the configuration is in force,
// drops the records of members no longer configured or whose configured
// state changed, and rewrites the file if it dropped any; an Apply that
// fails does not call it, so its records stay.
func (e *Engine) applyMemberStates(cfg *config.Config, pools map[string]*pool.Pool) (commit func()) {
	s := &e.states
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.resolved {
		s.resolved = true
		s.path = statePath(s.explicit, cfg.Management.StateFile, e.path)
		s.records = map[memberKey]memberState{}
		if s.path != "" {
			s.records = loadStates(s.path, e.log)
		}
	}
	if s.path == "" {
		return func() {}
	}
	conf := configuredStates(cfg)
	stale := map[memberKey]memberState{}
	for k, r := range s.records {
		cst, ok := conf[k]
		var m *pool.Member
		if p := pools[k.pool]; p != nil {
			m = p.Member(k.member)
		}
		st, err := pool.ParseState(r.State)
		switch {
		case !ok || m == nil:
			e.log.Info("member state dropped: the member is no longer configured", "pool", k.pool, "member", r.Member, "state", r.State)
		case err != nil:
			e.log.Warn("member state dropped: not a state", "pool", k.pool, "member", r.Member, "state", r.State)
		case cst.String() != r.Configured:
			e.log.Info("member state dropped: the configuration now sets the member's state",
				"pool", k.pool, "member", r.Member, "saved", r.State, "configured", cst.String())
		case st == cst:
			// Same as configured: nothing to remember.
		default:
			if m.State() != st {
				m.SetState(st, "restored from the state file "+s.path)
			}
			continue
		}
		stale[k] = r
	}
	return func() {
		if len(stale) == 0 {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for k, r := range stale {
			if s.records[k] == r { // not changed again meanwhile
				delete(s.records, k)
			}
		}
		e.saveStatesLocked()
	}
}

// recordMemberState remembers a runtime state change and rewrites the file
// (s.mu held by the caller, who made the change under it).
func (e *Engine) recordMemberState(k memberKey, st, configured pool.State) {
	s := &e.states
	if s.path == "" {
		return
	}
	if st == configured {
		if _, ok := s.records[k]; !ok {
			return
		}
		delete(s.records, k)
	} else {
		s.records[k] = memberState{Pool: k.pool, Member: k.member.String(), State: st.String(),
			Configured: configured.String(), Changed: time.Now().UTC()}
	}
	e.saveStatesLocked()
}

func (e *Engine) saveStatesLocked() {
	s := &e.states
	doc := stateDoc{Version: stateFileVersion, Members: make([]memberState, 0, len(s.records))}
	for _, r := range s.records {
		doc.Members = append(doc.Members, r)
	}
	sort.Slice(doc.Members, func(i, j int) bool {
		a, b := doc.Members[i], doc.Members[j]
		return a.Pool < b.Pool || a.Pool == b.Pool && a.Member < b.Member
	})
	data, err := json.MarshalIndent(doc, "", "  ")
	if err == nil {
		err = writeFileAtomic(s.path, append(data, '\n'), 0o600)
	}
	if err != nil {
		e.log.Error("member states not saved: they will not survive a restart", "file", s.path, "error", err)
	}
}

// loadStates reads the state file. A missing file is an empty one; an
// unreadable or corrupt one is logged, moved aside (PATH.corrupt, for the
// operator to inspect) and ignored: member states never prevent a start.
func loadStates(path string, log *slog.Logger) map[memberKey]memberState {
	out := map[memberKey]memberState{}
	data, err := readLimited(path, maxStateFile)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	var doc stateDoc
	if err == nil {
		err = json.Unmarshal(data, &doc)
	}
	if err == nil && doc.Version != stateFileVersion {
		err = fmt.Errorf("version %d, this Fulcrum reads version %d", doc.Version, stateFileVersion)
	}
	if err != nil {
		aside := path + ".corrupt"
		if rerr := os.Rename(path, aside); rerr != nil {
			aside = "(could not move it aside: " + rerr.Error() + ")"
		}
		log.Error("member state file ignored: members start with their configured states",
			"file", path, "error", err, "moved_to", aside)
		return out
	}
	for _, r := range doc.Members {
		ap, err := netip.ParseAddrPort(r.Member)
		if err != nil || r.Pool == "" {
			log.Warn("member state file: record ignored", "file", path, "pool", r.Pool, "member", r.Member)
			continue
		}
		out[memberKey{r.Pool, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}] = r
	}
	if len(out) > 0 {
		log.Info("member states read", "file", path, "members", len(out))
	}
	return out
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	}
	return data, err
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a mix: a temporary file in the same
// directory, written and fsynced, renamed over path, then the directory
// fsynced so the rename itself is durable.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: some file systems refuse fsync on a directory
		d.Close()
	}
	return nil
}
