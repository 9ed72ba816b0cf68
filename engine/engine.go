package engine

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-adc/fulcrum/api"
	"github.com/fulcrum-adc/fulcrum/config"
	"github.com/fulcrum-adc/fulcrum/conntrack"
	"github.com/fulcrum-adc/fulcrum/internal/flowhold"
	"github.com/fulcrum-adc/fulcrum/locate"
	"github.com/fulcrum-adc/fulcrum/mirror"
	"github.com/fulcrum-adc/fulcrum/monitor"
	"github.com/fulcrum-adc/fulcrum/packetlb"
	"github.com/fulcrum-adc/fulcrum/persist"
	"github.com/fulcrum-adc/fulcrum/pool"
	"github.com/fulcrum-adc/fulcrum/virtual"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure an Engine.
type Options struct {
	Log        *slog.Logger // required
	AccessLog  *slog.Logger // nil: no access log
	ConfigPath string       // file Reload re-reads ("" : Reload is refused)
	// StatePath is where runtime member states are kept across restarts
	// ("" : management.state_file, else ConfigPath+".state"; "off": none).
	StatePath string
	// ExperimentalKernelRelay relays fastl4 flows with the eBPF sockmap
	// relay (internal/sockmap), which the configuration refuses while it
	// has a known defect (docs/fastl4.md). For its tests and for work on it
	// only: never set by the fulcrum command.
	ExperimentalKernelRelay bool
	// SecretSeed, when set (a device group's shared secret), derives the
	// cookie_insert secret of profiles that set none, so that every device
	// of the group and every restart issue and honour the same cookies.
	// Unset, such a profile gets a random secret per start.
	SecretSeed []byte
}

// Engine is one running Fulcrum instance.
type Engine struct {
	log        *slog.Logger
	accessLog  *slog.Logger
	path       string
	kernelRel  bool   // Options.ExperimentalKernelRelay
	secretSeed []byte // Options.SecretSeed

	conns    *conntrack.Table
	persists *persist.Table
	monitors *monitor.Manager
	metrics  *api.Metrics

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup

	mu        sync.Mutex // serialises Apply and guards the fields below
	cfg       *config.Config
	pools     map[string]*pool.Pool
	listeners map[string]virtual.Server // "tcp|addr" / "udp|addr"
	// standby are the plans of virtuals whose traffic group is not active
	// here: they listen only once it is (SetTrafficGroupActive).
	standby  map[string]*virtual.Plan
	tgActive map[string]bool // traffic groups active on this device
	vstats   map[string]*virtual.Stats
	secrets  map[string][]byte // generated cookie secrets, kept across reloads
	// draining are listeners a reload removed, until their connections
	// have ended; each has a goroutine (counted in drains) that releases
	// it and takes it out of this set.
	draining map[virtual.Server]struct{}
	drains   sync.WaitGroup
	closed   bool // Close has begun: Apply refuses

	states stateStore // runtime member states and their file (state.go)

	isession isessionState // tunnel pools and listener (isession.go); guarded by mu
	net      netState      // VLANs, bridges, EtherIP tunnels, self IPs (network.go); guarded by mu
	dsr      packetlb.Mux  // dsr virtuals' forwarders, one per address

	connMirror atomic.Pointer[ConnMirror]        // SetConnMirror
	flowGuard  atomic.Pointer[virtual.FlowGuard] // SetFlowGuard
}

// SetFlowGuard connects the crash guard of mirrored connections' flows.
func (e *Engine) SetFlowGuard(g virtual.FlowGuard) { e.flowGuard.Store(&g) }

// engineGuard is what mirrored plans hold: the engine's flow guard, once
// there is one.
type engineGuard struct{ e *Engine }

func (g engineGuard) Add(flows ...flowhold.Flow) error {
	if fg := g.e.flowGuard.Load(); fg != nil {
		return (*fg).Add(flows...)
	}
	return errNoGuard
}

// errNoGuard: the crash guard is set up at start for the traffic groups
// that have mirrored virtuals then; a group that gained its first one by
// a reload is served unmirrored until the next start.
var errNoGuard = errors.New("connection mirroring was configured after Fulcrum started (no crash guard for it yet): restart Fulcrum to mirror these connections")

func (g engineGuard) Remove(flows ...flowhold.Flow) error {
	if fg := g.e.flowGuard.Load(); fg != nil {
		return (*fg).Remove(flows...)
	}
	return nil
}

// ConnMirror is connection mirroring (mirror.Mirror): it mirrors the
// connections of mirrored virtuals and hands over the ones mirrored here
// when a traffic group goes active.
type ConnMirror interface {
	virtual.ConnMirror
	TakeShadows(group string) []*mirror.Shadow
}

// SetConnMirror connects connection mirroring (made after the engine,
// since it reads the engine's configuration).
func (e *Engine) SetConnMirror(m ConnMirror) { e.connMirror.Store(&m) }

// engineMirror is what mirrored plans hold: the engine's connection mirror,
// once there is one.
type engineMirror struct{ e *Engine }

func (m engineMirror) Open(group string, s *mirror.ConnSetup) (*mirror.Conn, error) {
	if cm := m.e.connMirror.Load(); cm != nil {
		return (*cm).Open(group, s)
	}
	return nil, mirror.ErrNotMirrored
}

func (m engineMirror) Up(group string) bool {
	if cm := m.e.connMirror.Load(); cm != nil {
		return (*cm).Up(group)
	}
	return false
}

// onUpLater is how long OnUp waits before calling back while there is no
// connection mirror yet (the engine starts before it).
const onUpLater = 2 * time.Second

func (m engineMirror) OnUp(group string, f func()) (cancel func()) {
	if cm := m.e.connMirror.Load(); cm != nil {
		return (*cm).OnUp(group, f)
	}
	t := time.AfterFunc(onUpLater, f)
	return func() { t.Stop() }
}

// mirroredOf is the listeners of group's mirrored virtuals that are T.
func mirroredOf[T any](e *Engine, group string) []T {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []T
	for _, l := range e.listeners {
		if x, ok := l.(T); ok && l.Plan().TrafficGroup == group && l.Plan().Mirror != nil {
			out = append(out, x)
		}
	}
	return out
}

// Quiesce prepares a planned handover of group's mirrored connections,
// before its packets are held: http exchanges under way are given a
// moment to finish (and no new one starts), so that their connections
// can move. HandOver ends it; so does Resume, when no handover follows.
func (e *Engine) Quiesce(ctx context.Context, group string) (busy int) {
	type quiescer interface {
		Quiesce(context.Context) int
	}
	for _, l := range mirroredOf[quiescer](e, group) {
		busy += l.Quiesce(ctx)
	}
	return busy
}

// Resume ends a Quiesce that no handover followed.
func (e *Engine) Resume(group string) {
	type resumer interface{ Resume() }
	for _, l := range mirroredOf[resumer](e, group) {
		l.Resume()
	}
}

// HandOver freezes the mirrored connections of group's virtuals and hands
// them to the standby (a planned failover; the caller holds the group's
// packets).
func (e *Engine) HandOver(ctx context.Context, group string) (moved, failed int, firstErr error) {
	type handerOver interface {
		HandOver(context.Context) (int, int, error)
	}
	for _, l := range mirroredOf[handerOver](e, group) {
		m, f, err := l.HandOver(ctx)
		moved, failed = moved+m, failed+f
		if firstErr == nil {
			firstErr = err
		}
	}
	return moved, failed, firstErr
}

// Abandon lets go of the mirrored connections of group's virtuals without
// a word (their sockets closed in repair mode): the group is released
// with no one to hand them to, and the device that takes it over may
// continue them from the mirror. It returns how many.
func (e *Engine) Abandon(group string) int {
	type abandoner interface {
		Abandon() int
	}
	n := 0
	for _, l := range mirroredOf[abandoner](e, group) {
		n += l.Abandon()
	}
	return n
}

// Announced tells group's mirrored virtuals that, after a takeover, the
// group's addresses are announced from here (and the hold that covered
// the restore is lifted): the connections taken over start sending.
func (e *Engine) Announced(group string) {
	type announced interface {
		Announced()
	}
	for _, l := range mirroredOf[announced](e, group) {
		l.Announced()
	}
}

// adopt restores the connections mirrored here for group (it just went
// active): each goes to its virtual's listener.
func (e *Engine) adopt(group string) {
	cm := e.connMirror.Load()
	if cm == nil {
		return
	}
	shadows := (*cm).TakeShadows(group)
	if len(shadows) == 0 {
		return
	}
	type adopter interface {
		Adopt(*mirror.Shadow) error
	}
	byName := map[string]adopter{}
	for _, l := range e.listeners {
		if a, ok := l.(adopter); ok && l.Plan().TrafficGroup == group && l.Plan().Mirror != nil {
			byName[l.Plan().Name] = a
		}
	}
	restored, failed := 0, 0
	var firstErr error
	for _, sh := range shadows {
		a := byName[sh.Setup.Virtual]
		if a == nil {
			failed++
			if firstErr == nil {
				firstErr = fmt.Errorf("virtual %q is not a mirrored virtual listening here", sh.Setup.Virtual)
			}
			continue
		}
		if err := a.Adopt(sh); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		restored++
	}
	if failed > 0 {
		e.log.Warn("mirrored connections not taken over", "traffic_group", group, "restored", restored, "failed", failed, "first_error", firstErr.Error())
	}
	e.log.Info("mirrored connections taken over", "traffic_group", group, "restored", restored)
}

// ErrClosed is returned by Apply once the engine is shutting down.
var ErrClosed = errors.New("the engine is shutting down")

// ListenError is a virtual server whose socket could not be opened. It
// wraps the system's error (errors.Is(err, syscall.EADDRINUSE) works).
type ListenError struct {
	File    string // configuration file ("api" when loaded through the API)
	Line    int    // line of the virtual's destination (0: unknown)
	Virtual string
	Addr    string // destination
	// Running is true when a configuration was already running (a reload):
	// it stays in force. False at start-up: nothing was started.
	Running bool
	Err     error
}

func (e *ListenError) Error() string {
	outcome := "nothing was started"
	if e.Running {
		outcome = "the running configuration is unchanged"
	}
	return fmt.Sprintf("%s:%d: virtuals.%s.destination: cannot listen on %s: %v (%s)",
		e.File, e.Line, e.Virtual, e.Addr, e.Err, outcome)
}

func (e *ListenError) Unwrap() error { return e.Err }

// New starts an engine with no configuration; call Apply.
func New(opt Options) *Engine {
	e := &Engine{
		log:        opt.Log,
		accessLog:  opt.AccessLog,
		path:       opt.ConfigPath,
		kernelRel:  opt.ExperimentalKernelRelay,
		secretSeed: opt.SecretSeed,
		conns:      conntrack.NewTable(),
		persists:   persist.NewTable(),
		monitors:   monitor.NewManager(opt.Log),
		pools:      map[string]*pool.Pool{},
		listeners:  map[string]virtual.Server{},
		standby:    map[string]*virtual.Plan{},
		tgActive:   map[string]bool{},
		draining:   map[virtual.Server]struct{}{},
		vstats:     map[string]*virtual.Stats{},
		secrets:    map[string][]byte{},
	}
	e.states.explicit = opt.StatePath
	e.metrics = api.NewMetrics(e)
	e.metrics.Registry().MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fulcrum_persistence_records",
			Help: "Records in the persistence table."}, func() float64 { return float64(e.persists.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fulcrum_persistence_refused_total",
			Help: "New persistence records not stored because the table was full (limits.persistence_records); those clients were balanced without persistence."},
			func() float64 { return float64(e.persists.Refused()) }),
	)
	e.registerISessionMetrics()
	e.metrics.Registry().MustRegister(tunnelCollector{e})
	e.net.locator = locate.New(opt.Log, e.tunnelInterfaces)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.bg.Add(2)
	go func() { defer e.bg.Done(); e.conns.Run(e.ctx, time.Second) }()
	go func() { defer e.bg.Done(); e.persists.Run(e.ctx, time.Second) }()
	return e
}

// Metrics is the Prometheus side of the instance.
func (e *Engine) Metrics() *api.Metrics { return e.metrics }

// Conns is the connection table.
func (e *Engine) Conns() *conntrack.Table { return e.conns }

// PersistTable is the persistence table.
func (e *Engine) PersistTable() *persist.Table { return e.persists }

// Config returns the configuration in force.
func (e *Engine) Config() *config.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// Listener returns the listener serving a virtual (nil if none); for tests.
func (e *Engine) Listener(virtualName string) virtual.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.listeners {
		if l.Plan().Name == virtualName {
			return l
		}
	}
	return nil
}

// Apply compiles cfg and makes it the running configuration. On error the
// running configuration stays in force and nothing is changed.
func (e *Engine) Apply(cfg *config.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.cfg != nil && haChanged(e.cfg, cfg) {
		return fmt.Errorf("%w: the high-availability settings (local, devices, failover, traffic_groups) changed: they take effect when the device restarts; nothing was applied", api.ErrBadRequest)
	}
	c, err := e.compile(cfg)
	if err != nil {
		return err
	}
	commitTerm, discardTerm, err := e.prepareTerminator(cfg)
	if err != nil {
		discardTunnels(c)
		return &ListenError{File: cfg.File, Line: cfg.Line("isession.listen"), Virtual: "isession listener",
			Addr: cfg.ISession.Listen, Running: e.cfg != nil, Err: err}
	}
	commitNet, rollbackNet, err := e.applyNetwork(cfg)
	if err != nil {
		discardTunnels(c)
		discardTerm()
		return err
	}
	commitStates := e.applyMemberStates(cfg, c.pools) // saved member states (state.go)
	// Open the listeners this configuration adds; keep the ones it shares.
	next := make(map[string]virtual.Server, len(c.plans))
	standby := map[string]*virtual.Plan{}
	var opened []virtual.Server
	for key, plan := range c.plans {
		if plan.TrafficGroup != "" && !e.tgActive[plan.TrafficGroup] {
			standby[key] = plan // opened if and when its group goes active here
			continue
		}
		if l, ok := e.listeners[key]; ok {
			next[key] = l
			continue
		}
		l, err := e.openVirtual(plan)
		if err != nil {
			for _, o := range opened {
				o.Close()
				e.drain(o) // a client may have connected already
			}
			discardTunnels(c)
			discardTerm()
			rollbackNet()
			return &ListenError{File: cfg.File, Line: cfg.Line("virtuals." + plan.Name + ".destination"),
				Virtual: plan.Name, Addr: plan.Destination.String(), Running: e.cfg != nil, Err: err}
		}
		opened = append(opened, l)
		next[key] = l
	}
	// Commit: publish plans to kept listeners, stop listeners that went away.
	for key, l := range next {
		l.Swap(c.plans[key])
	}
	for key, l := range e.listeners {
		if _, ok := next[key]; !ok {
			e.log.Info("virtual server listener closed", "virtual", l.Plan().Name, "address", l.Addr().String())
			l.Close() // stops accepting; its connections finish on their plan
			e.drain(l)
		}
	}
	for key, l := range next {
		if _, ok := e.listeners[key]; !ok {
			e.log.Info("virtual server listening", "virtual", l.Plan().Name, "type", l.Plan().Type, "address", l.Addr().String())
		}
	}
	e.forgetRemoved(c)
	commitNet()
	commitStates()
	e.commitTunnels(c)
	commitTerm()
	if old := e.cfg; old != nil && (old.Management != cfg.Management || old.Log != cfg.Log) {
		e.log.Warn("management and log settings changed: they take effect at the next restart; the rest of the configuration is applied now")
	}
	e.listeners = next
	e.standby = standby
	e.pools = c.pools
	e.cfg = cfg
	e.monitors.Set(c.jobs)
	e.net.locator.Set(locationJobs(cfg, c.pools))
	if n := cfg.Limits.PersistenceRecords; n > 0 {
		e.persists.SetMaxEntries(n)
	} else { // a Config not made by config.Parse
		e.persists.SetMaxEntries(config.DefaultPersistenceRecords)
	}
	for _, n := range cfg.Notices {
		e.log.Warn("configuration notice", "notice", n)
	}
	return nil
}

// openVirtual starts a virtual server: a listening socket, or for a dsr
// virtual its port of its address's packet forwarder.
func (e *Engine) openVirtual(plan *virtual.Plan) (virtual.Server, error) {
	if plan.Type == "dsr" {
		return virtual.OpenDSR(plan, &e.dsr, config.DSRTUN(plan.Destination.Addr().String()), plan.DSRInterface, plan.ConnectionLimit)
	}
	return virtual.Listen(plan)
}

// haChanged reports whether the device-group settings differ: the ha
// Manager reads them once, at start.
func haChanged(a, b *config.Config) bool {
	return !reflect.DeepEqual(a.Local, b.Local) || !reflect.DeepEqual(a.Devices, b.Devices) ||
		a.Failover != b.Failover || !reflect.DeepEqual(a.TrafficGroups, b.TrafficGroups) || a.ConfigSync != b.ConfigSync
}

// SetTrafficGroupActive starts (active) or stops the virtual servers whose
// destination is a floating address of the traffic group: the lifecycle
// the ha package drives. Starting opens their listeners (IP_FREEBIND: the
// address may not be there yet); if one cannot open, the others opened for
// the group are closed again and the error says which. Stopping closes the
// listeners; their established connections drain as on a reload.
func (e *Engine) SetTrafficGroupActive(group string, active bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.tgActive[group] == active {
		return nil
	}
	if active {
		opened := map[string]virtual.Server{}
		for key, plan := range e.standby {
			if plan.TrafficGroup != group {
				continue
			}
			l, err := e.openVirtual(plan)
			if err != nil {
				for _, o := range opened {
					o.Close()
					e.drain(o)
				}
				return fmt.Errorf("virtual %s cannot listen on %s: %w", plan.Name, plan.Destination, err)
			}
			opened[key] = l
		}
		for key, l := range opened {
			delete(e.standby, key)
			e.listeners[key] = l
			e.log.Info("virtual server listening: its traffic group is active here", "virtual", l.Plan().Name, "traffic_group", group, "address", l.Addr().String())
		}
		e.tgActive[group] = true
		e.adopt(group)
		return nil
	}
	for key, l := range e.listeners {
		if l.Plan().TrafficGroup != group {
			continue
		}
		e.log.Info("virtual server stopped: its traffic group is standby here", "virtual", l.Plan().Name, "traffic_group", group, "address", l.Addr().String())
		l.Close()
		e.drain(l)
		delete(e.listeners, key)
		e.standby[key] = l.Plan()
	}
	delete(e.tgActive, group)
	return nil
}

// Reload re-reads the configuration file and applies it (SIGHUP, API).
func (e *Engine) Reload() error {
	if e.path == "" {
		return fmt.Errorf("%w: this instance was not started from a configuration file", api.ErrBadRequest)
	}
	// Not between an API load's apply and its save to the file: the file
	// read here is then the one that load wrote.
	e.states.cfgMu.Lock()
	defer e.states.cfgMu.Unlock()
	cfg, err := config.Load(e.path)
	if err != nil {
		var ce config.Errors
		if errors.As(err, &ce) {
			// Both stay visible to errors.Is/As: the API answers 400 and
			// can still walk the config.Errors.
			return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
		}
		return err
	}
	if err := e.Apply(cfg); err != nil {
		return applyError(err)
	}
	e.log.Info("configuration reloaded", "file", e.path)
	return nil
}

// applyError marks an Apply failure the configuration caused (a listener
// that cannot be opened: the address is taken or not local) as a bad
// request for the API, which answers 400 with the message, not 500; the
// ListenError stays reachable through errors.As.
func applyError(err error) error {
	var le *ListenError
	if errors.As(err, &le) {
		return fmt.Errorf("%w: %w", api.ErrBadRequest, err)
	}
	return err
}

// drain releases l, which a reload removed and closed, once its last
// connection has ended, and then forgets it. Called with e.mu held.
func (e *Engine) drain(l virtual.Server) {
	e.draining[l] = struct{}{}
	e.drains.Add(1)
	go func() {
		defer e.drains.Done()
		// e.ctx ends only when Close has already waited for l.
		l.Wait(e.ctx)
		e.mu.Lock()
		delete(e.draining, l)
		e.mu.Unlock()
		e.log.Info("virtual server listener drained", "virtual", l.Plan().Name, "address", l.Addr().String())
	}()
}

// Close stops accepting, waits up to ctx for connections to finish, then
// closes the rest and stops every background task. Apply refuses from the
// moment Close begins.
func (e *Engine) Close(ctx context.Context) {
	defer e.closeISession()
	e.mu.Lock()
	e.closed = true
	ls := make([]virtual.Server, 0, len(e.listeners)+len(e.draining))
	for _, l := range e.listeners {
		ls = append(ls, l)
		l.Close()
	}
	// Draining listeners also have their own goroutine waiting for them
	// (drain): both waits return once the listener is released.
	for l := range e.draining {
		ls = append(ls, l)
	}
	e.listeners = map[string]virtual.Server{}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() { defer wg.Done(); l.Wait(ctx) }()
	}
	// Connections still open when ctx ends are closed through the table.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if n := e.conns.CloseAll(); n > 0 {
			e.log.Warn("closed connections still open at shutdown", "count", n)
		}
		<-done
	}
	e.monitors.Close()
	e.mu.Lock()
	e.closeNetwork()
	e.mu.Unlock()
	e.cancel()
	e.drains.Wait()
	e.bg.Wait()
}

// secretFor returns the generated cookie secret of a persistence profile
// that has none configured, making one on first use. A crypto/rand failure
// is an error of the configuration being applied, never a process exit: the
// running configuration stays in force.
func (e *Engine) secretFor(profile string) ([]byte, error) {
	if s, ok := e.secrets[profile]; ok {
		return s, nil
	}
	if e.secretSeed != nil {
		m := hmac.New(sha256.New, e.secretSeed)
		m.Write([]byte("cookie_insert\x00" + profile))
		s := m.Sum(nil)
		e.secrets[profile] = s
		return s, nil
	}
	s, err := newSecret(rand.Reader)
	if err != nil {
		return nil, err
	}
	e.secrets[profile] = s
	return s, nil
}

// forgetRemoved drops the metric series and statistics of virtuals and
// members the new configuration no longer has.
func (e *Engine) forgetRemoved(c *compiled) {
	if e.cfg == nil {
		return
	}
	for name := range e.cfg.Virtuals {
		still := false
		for _, p := range c.plans {
			if p.Name == name {
				still = true
				break
			}
		}
		if !still {
			e.metrics.ForgetVirtual(name)
			delete(e.vstats, name)
		}
	}
	for name, old := range e.pools {
		np := c.pools[name]
		for _, m := range old.Members() {
			if np == nil || np.Member(m.Addr()) == nil {
				e.metrics.ForgetMember(name, m.String())
			}
		}
	}
}
