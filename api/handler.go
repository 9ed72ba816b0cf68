package api

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MaxConfigBytes bounds the body of POST /api/v1/config.
const MaxConfigBytes = 8 << 20

// maxStateBody bounds the body of a member state change; it is a one-field
// JSON object, so anything larger is a mistake or an attack.
const maxStateBody = 64 << 10

// Options configures NewHandler.
type Options struct {
	// Token, when not empty, is required as "Authorization: Bearer TOKEN" on
	// every endpoint except /healthz and the dashboard page.
	Token string
	// Log receives API activity: state changes, configuration loads, refused
	// authentication, internal errors. nil discards.
	Log *slog.Logger
	// HA, when set, serves the device group (GET /api/v1/ha, POST
	// /api/v1/traffic-groups/{name}/failover).
	HA HA
	// Mirroring, when set, serves GET /api/v1/mirroring.
	Mirroring Mirroring
	// Sync, when set, serves GET and POST /api/v1/sync.
	Sync Sync
	// ISessions, when set, serves GET /api/v1/isessions: the iSession
	// tunnels' state (the engine's ISessionStats).
	ISessions func() any
	// Tunnels, when set, serves GET /api/v1/tunnels: the EtherIP tunnels
	// (the engine's TunnelStats).
	Tunnels func() any
}

// ErrorResponse is the body of every API error.
type ErrorResponse struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems,omitempty"` // one per line of an invalid configuration
}

// StatusResponse is the body of a successful POST /api/v1/config or /reload.
type StatusResponse struct {
	Status  string `json:"status"` // "ok"
	Message string `json:"message"`
}

// ConfigResponse is the body of a successful POST /api/v1/config: applied,
// and whether it was also saved to the file the instance runs from.
type ConfigResponse struct {
	Status    string `json:"status"` // "ok"
	Message   string `json:"message"`
	Persisted bool   `json:"persisted"`        // false: runtime only, lost on restart or reload
	File      string `json:"file,omitempty"`   // file written (or that could not be written)
	Backup    string `json:"backup,omitempty"` // the previous file, kept
}

// DeleteResponse is the body of a successful DELETE.
type DeleteResponse struct {
	Status  string `json:"status"` // "ok"
	Message string `json:"message"`
	Deleted int    `json:"deleted"`
}

// MemberStateRequest is the body of PATCH/PUT /api/v1/pools/{name}/members/{addr}.
type MemberStateRequest struct {
	State string `json:"state"` // enabled | disabled | forced-offline (enable, disable, force-offline accepted)
}

//go:embed dashboard.html
var dashboardHTML []byte

// dashboardCSP allows exactly the dashboard's own inline script (by hash),
// its inline styles and calls back to this origin; nothing else, and no
// framing, so the enable/disable buttons cannot be clickjacked.
var dashboardCSP = func() string {
	script := "'none'"
	if _, rest, ok := bytes.Cut(dashboardHTML, []byte("<script>")); ok {
		if body, _, ok := bytes.Cut(rest, []byte("</script>")); ok {
			sum := sha256.Sum256(body)
			script = "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		}
	}
	return "default-src 'none'; script-src " + script + "; style-src 'unsafe-inline'; " +
		"connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}()

type handler struct {
	b         Backend
	ha        HA
	mirroring Mirroring
	sync      Sync
	isessions func() any
	tunnels   func() any
	m         *Metrics
	log       *slog.Logger
	tokenHash *[sha256.Size]byte // nil: no authentication
}

// NewHandler serves the REST API under /api/v1/, Prometheus metrics at
// /metrics, a liveness probe at /healthz and the dashboard at /. A nil m gets
// a fresh NewMetrics(b).
func NewHandler(b Backend, m *Metrics, opt Options) http.Handler {
	if m == nil {
		m = NewMetrics(b)
	}
	h := &handler{b: b, m: m, log: opt.Log, ha: opt.HA, mirroring: opt.Mirroring, sync: opt.Sync, isessions: opt.ISessions, tunnels: opt.Tunnels}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if opt.Token != "" {
		// Compare hashes, not tokens: the comparison then takes the same time
		// whatever the length of the guess.
		sum := sha256.Sum256([]byte(opt.Token))
		h.tokenHash = &sum
	}

	mux := http.NewServeMux()
	routes := []struct {
		path    string
		methods map[string]http.HandlerFunc
	}{
		{"/api/v1/virtuals", map[string]http.HandlerFunc{"GET": h.virtuals}},
		{"/api/v1/virtuals/{name}", map[string]http.HandlerFunc{"GET": h.virtual}},
		{"/api/v1/pools", map[string]http.HandlerFunc{"GET": h.pools}},
		{"/api/v1/pools/{name}", map[string]http.HandlerFunc{"GET": h.pool}},
		{"/api/v1/pools/{name}/members/{addr}", map[string]http.HandlerFunc{
			"GET": h.member, "PATCH": h.setMemberState, "PUT": h.setMemberState}},
		{"/api/v1/connections", map[string]http.HandlerFunc{"GET": h.connections}},
		{"/api/v1/connections/{id}", map[string]http.HandlerFunc{"GET": h.connection, "DELETE": h.killConnection}},
		{"/api/v1/persistence", map[string]http.HandlerFunc{"GET": h.persistence, "DELETE": h.deletePersistence}},
		// {key...}: a key may hold "/" (a URI value); send it path-escaped.
		{"/api/v1/persistence/{key...}", map[string]http.HandlerFunc{"DELETE": h.deletePersistence}},
		{"/api/v1/config", map[string]http.HandlerFunc{"GET": h.runningConfig, "POST": h.loadConfig}},
		{"/api/v1/reload", map[string]http.HandlerFunc{"POST": h.reload}},
		{"/api/v1/ha", map[string]http.HandlerFunc{"GET": h.haStatus}},
		{"/api/v1/mirroring", map[string]http.HandlerFunc{"GET": h.mirrorStatus}},
		{"/api/v1/sync", map[string]http.HandlerFunc{"GET": h.syncStatus, "POST": h.syncRun}},
		{"/api/v1/isessions", map[string]http.HandlerFunc{"GET": h.isessionStatus}},
		{"/api/v1/tunnels", map[string]http.HandlerFunc{"GET": h.tunnelStatus}},
		{"/api/v1/traffic-groups/{name}/failover", map[string]http.HandlerFunc{"POST": h.failover}},
		{"/metrics", map[string]http.HandlerFunc{"GET": promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{
			// One bad series (say two pools reported under one name) must
			// not blank the whole scrape.
			ErrorHandling: promhttp.ContinueOnError,
			ErrorLog:      promLogger{h.log},
		}).ServeHTTP}},
		{"/healthz", map[string]http.HandlerFunc{"GET": healthz}},
		{"/{$}", map[string]http.HandlerFunc{"GET": dashboard}},
	}
	for _, rt := range routes {
		var allow []string
		for method, fn := range rt.methods {
			mux.HandleFunc(method+" "+rt.path, fn)
			allow = append(allow, method)
			if method == "GET" {
				allow = append(allow, "HEAD") // ServeMux routes HEAD to GET patterns
			}
		}
		slices.Sort(allow)
		// The method-less pattern catches every other method, so a wrong
		// method gets a JSON 405 with Allow instead of ServeMux's plain text.
		mux.HandleFunc(rt.path, methodNotAllowed(strings.Join(allow, ", ")))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, nil)
	})
	// Go's profiler, behind the same token: how an operator (or a
	// benchmark) finds where the CPU goes in a running instance.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.log.Warn("api: refused cross-origin request", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "cross-origin request refused", nil)
	}))
	return h.recoverer(cop.Handler(h.authenticate(mux)))
}

// authenticate enforces the bearer token. /healthz stays open for load
// balancers and orchestrators in front of us; the dashboard page is static
// and carries no data, and it must load in a browser that cannot yet send a
// header.
func (h *handler) authenticate(next http.Handler) http.Handler {
	if h.tokenHash == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open := r.URL.Path == "/healthz" ||
			(r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead))
		if open || h.validToken(r.Header.Get("Authorization")) {
			next.ServeHTTP(w, r)
			return
		}
		h.log.Warn("api: refused request without a valid token", "method", r.Method,
			"path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="fulcrum"`)
		writeError(w, http.StatusUnauthorized, "missing or invalid bearer token", nil)
	})
}

func (h *handler) validToken(header string) bool {
	const prefix = "bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(header[len(prefix):])))
	return subtle.ConstantTimeCompare(sum[:], h.tokenHash[:]) == 1
}

// recoverer turns a panic in a Backend call into a logged 500 instead of a
// dropped connection with the reason only on stderr.
func (h *handler) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.log.Error("api: panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, fmt.Sprintf("internal error: %v", v), nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed,
			fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow), nil)
	}
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

func dashboard(w http.ResponseWriter, _ *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", dashboardCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-cache")
	w.Write(dashboardHTML)
}

// ---- read endpoints ----

func (h *handler) virtuals(w http.ResponseWriter, r *http.Request) {
	vs := h.b.Virtuals()
	slices.SortFunc(vs, func(a, b VirtualStatus) int { return cmp.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, nonNil(vs))
}

func (h *handler) virtual(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, v := range h.b.Virtuals() {
		if v.Name == name {
			writeJSON(w, http.StatusOK, v)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("virtual server %q not found", name), nil)
}

func (h *handler) pools(w http.ResponseWriter, r *http.Request) {
	ps := h.b.Pools()
	slices.SortFunc(ps, func(a, b PoolStatus) int { return cmp.Compare(a.Name, b.Name) })
	for i := range ps {
		normalizePool(&ps[i])
	}
	writeJSON(w, http.StatusOK, nonNil(ps))
}

func (h *handler) pool(w http.ResponseWriter, r *http.Request) {
	p, ok := h.findPool(w, r.PathValue("name"))
	if ok {
		writeJSON(w, http.StatusOK, p)
	}
}

func (h *handler) member(w http.ResponseWriter, r *http.Request) {
	p, ok := h.findPool(w, r.PathValue("name"))
	if !ok {
		return
	}
	addr := r.PathValue("addr")
	if m, ok := findMember(p, addr); ok {
		writeJSON(w, http.StatusOK, m)
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("member %q not found in pool %q", addr, p.Name), nil)
}

func (h *handler) findPool(w http.ResponseWriter, name string) (PoolStatus, bool) {
	for _, p := range h.b.Pools() {
		if p.Name == name {
			normalizePool(&p)
			return p, true
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("pool %q not found", name), nil)
	return PoolStatus{}, false
}

// findMember matches the address as written, then in canonical form, so
// "[::1]:80" finds a member configured as "[0:0:0:0:0:0:0:1]:80".
func findMember(p PoolStatus, addr string) (MemberStatus, bool) {
	for _, m := range p.Members {
		if m.Address == addr {
			return m, true
		}
	}
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		return MemberStatus{}, false
	}
	for _, m := range p.Members {
		if got, err := netip.ParseAddrPort(m.Address); err == nil && got == want {
			return m, true
		}
	}
	return MemberStatus{}, false
}

func (h *handler) connections(w http.ResponseWriter, r *http.Request) {
	v, err := queryParams(r.URL.Query(), "virtual", "pool", "member", "client", "limit")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	limit, err := parseLimit(v["limit"])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	cs := h.b.Connections(ConnQuery{Virtual: v["virtual"], Pool: v["pool"], Member: v["member"], Client: v["client"], Limit: limit})
	if len(cs) > limit {
		cs = cs[:limit]
	}
	writeJSON(w, http.StatusOK, nonNil(cs))
}

func (h *handler) connection(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("connection id %q is not a number", r.PathValue("id")), nil)
		return
	}
	cd, err := h.b.Connection(id)
	if err != nil {
		h.writeBackendError(w, err, "")
		return
	}
	writeJSON(w, http.StatusOK, cd)
}

func (h *handler) persistence(w http.ResponseWriter, r *http.Request) {
	v, err := queryParams(r.URL.Query(), "virtual", "pool", "profile", "member", "limit")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	limit, err := parseLimit(v["limit"])
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	ps := h.b.Persistence(PersistQuery{Virtual: v["virtual"], Pool: v["pool"], Profile: v["profile"],
		Member: v["member"], Limit: limit})
	if len(ps) > limit {
		ps = ps[:limit]
	}
	writeJSON(w, http.StatusOK, nonNil(ps))
}

// queryParams returns the single value of each allowed parameter. An
// unknown parameter is an error rather than ignored: "?vritual=web" silently
// listing every connection would mislead the operator.
func queryParams(q url.Values, allowed ...string) (map[string]string, error) {
	out := make(map[string]string, len(q))
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > MaxLimit {
		return 0, fmt.Errorf("limit %q: want a whole number from 0 to %d (0 = default %d)", s, MaxLimit, DefaultLimit)
	}
	if n == 0 {
		return DefaultLimit, nil
	}
	return n, nil
}

// ---- write endpoints ----

func (h *handler) setMemberState(w http.ResponseWriter, r *http.Request) {
	pool, addr := r.PathValue("name"), r.PathValue("addr")
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxStateBody))
	dec.DisallowUnknownFields()
	var req MemberStateRequest
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `body must be a JSON object like {"state":"disabled"}: `+err.Error(), nil)
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "body must hold exactly one JSON object", nil)
		return
	}
	state, ok := NormalizeState(req.State)
	if !ok {
		writeError(w, http.StatusBadRequest,
			fmt.Sprintf("state %q: want enabled, disabled or forced-offline", req.State), nil)
		return
	}
	if err := h.b.SetMemberState(pool, addr, state); err != nil {
		h.log.Warn("api: member state change failed", "pool", pool, "member", addr, "state", state,
			"remote", r.RemoteAddr, "error", err)
		h.writeBackendError(w, err, "")
		return
	}
	h.log.Info("api: member state changed", "pool", pool, "member", addr, "state", state, "remote", r.RemoteAddr)
	for _, p := range h.b.Pools() {
		if p.Name == pool {
			normalizePool(&p)
			if m, ok := findMember(p, addr); ok {
				writeJSON(w, http.StatusOK, m)
				return
			}
		}
	}
	// The backend accepted the change but does not list the member under
	// that address (e.g. it resolved an alias); still report success.
	writeJSON(w, http.StatusOK, MemberStatus{Address: addr, State: state, Monitors: []MonitorStatus{}})
}

func (h *handler) loadConfig(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxConfigBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("configuration larger than %d bytes", MaxConfigBytes), nil)
			return
		}
		writeError(w, http.StatusBadRequest, "reading the configuration: "+err.Error(), nil)
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		writeError(w, http.StatusBadRequest, "empty configuration: send the whole YAML file as the request body", nil)
		return
	}
	res, err := h.b.LoadConfig(body)
	if err != nil {
		h.log.Warn("api: configuration rejected", "bytes", len(body), "remote", r.RemoteAddr, "error", err)
		h.writeBackendError(w, err, "configuration rejected")
		return
	}
	out := ConfigResponse{Status: "ok", Persisted: res.Persisted, File: res.File, Backup: res.Backup}
	switch {
	case res.Persisted && res.Backup != "":
		out.Message = fmt.Sprintf("configuration applied and saved to %s (the previous file is kept as %s)", res.File, res.Backup)
	case res.Persisted:
		out.Message = "configuration applied and saved to " + res.File
	default:
		reason := res.Reason
		if reason == "" {
			reason = "this instance was not started from a configuration file"
		}
		out.Message = "configuration applied at runtime only, not saved: " + reason +
			"; a restart (or a reload) goes back to the file"
	}
	h.log.Info("api: configuration applied", "bytes", len(body), "remote", r.RemoteAddr,
		"persisted", res.Persisted, "file", res.File, "reason", res.Reason)
	writeJSON(w, http.StatusOK, out)
}

// runningConfig serves the configuration in force as YAML, secrets
// replaced by Redacted, so that it can be saved, diffed or edited and posted
// back.
func (h *handler) runningConfig(w http.ResponseWriter, r *http.Request) {
	src, err := h.b.RunningConfig()
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "no configuration has been applied yet", nil)
		return
	}
	if err != nil {
		h.writeBackendError(w, err, "")
		return
	}
	body, err := RedactConfig(src.YAML)
	if err != nil {
		h.writeBackendError(w, err, "")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/yaml; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	if src.File != "" {
		hd.Set("X-Fulcrum-Config-File", src.File)
	}
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (h *handler) killConnection(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("connection id %q is not a number", r.PathValue("id")), nil)
		return
	}
	if err := h.b.KillConnection(id); err != nil {
		h.writeBackendError(w, err, "")
		return
	}
	h.log.Info("api: connection reset", "id", id, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, DeleteResponse{Status: "ok", Message: fmt.Sprintf("connection %d reset", id), Deleted: 1})
}

// deletePersistence deletes one record (DELETE /api/v1/persistence/{key})
// or the records matching the query (DELETE /api/v1/persistence?pool=web).
func (h *handler) deletePersistence(w http.ResponseWriter, r *http.Request) {
	v, err := queryParams(r.URL.Query(), "virtual", "pool", "profile", "member", "all")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	d := PersistDelete{Key: r.PathValue("key"), Virtual: v["virtual"], Pool: v["pool"], Profile: v["profile"], Member: v["member"]}
	if s, ok := v["all"]; ok {
		if d.All, err = strconv.ParseBool(s); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("all=%q: want true or false", s), nil)
			return
		}
	}
	filtered := d.Virtual != "" || d.Pool != "" || d.Profile != "" || d.Member != ""
	switch {
	case d.Key != "" && (filtered || d.All):
		writeError(w, http.StatusBadRequest, "give a record key or filters, not both", nil)
		return
	case d.Key == "" && !filtered && !d.All:
		writeError(w, http.StatusBadRequest,
			"say which records: a key (DELETE /api/v1/persistence/KEY), a filter (virtual, pool, profile, member) or all=true", nil)
		return
	}
	n, err := h.b.DeletePersistence(d)
	if err != nil {
		h.writeBackendError(w, err, "")
		return
	}
	h.log.Info("api: persistence records deleted", "count", n, "key", d.Key, "virtual", d.Virtual,
		"pool", d.Pool, "profile", d.Profile, "member", d.Member, "all", d.All, "remote", r.RemoteAddr)
	msg := fmt.Sprintf("%d persistence records deleted", n)
	if n == 1 {
		msg = "1 persistence record deleted"
	}
	writeJSON(w, http.StatusOK, DeleteResponse{Status: "ok", Message: msg, Deleted: n})
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	if err := h.b.Reload(); err != nil {
		h.log.Warn("api: reload failed", "remote", r.RemoteAddr, "error", err)
		h.writeBackendError(w, err, "reload failed")
		return
	}
	h.log.Info("api: configuration reloaded", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, StatusResponse{Status: "ok", Message: "configuration reloaded"})
}

// writeBackendError maps a Backend error to a status: ErrNotFound 404,
// ErrBadRequest 400 (with one problem per line when there are several, or
// always when summary is set, as for a configuration), anything else 500.
func (h *handler) writeBackendError(w http.ResponseWriter, err error, summary string) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, notFoundMessage(err.Error()), nil)
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error(), nil)
	case errors.Is(err, ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, err.Error(), nil)
	case errors.Is(err, ErrBadRequest):
		problems := problemLines(err.Error())
		switch {
		case summary == "" && len(problems) <= 1:
			writeError(w, http.StatusBadRequest, cleanMessage(err.Error(), ErrBadRequest), nil)
		case summary == "":
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%d problems", len(problems)), problems)
		case len(problems) == 1:
			writeError(w, http.StatusBadRequest, summary+": "+problems[0], problems)
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s: %d problems", summary, len(problems)), problems)
		}
	default:
		h.log.Error("api: backend error", "error", err)
		msg := err.Error()
		if summary != "" {
			msg = summary + ": " + msg
		}
		writeError(w, http.StatusInternalServerError, msg, nil)
	}
}

// problemLines splits a multi-line validation error into its problems,
// dropping blank lines and the bare sentinel text a Backend may have wrapped
// around them ("bad request: ...").
func problemLines(msg string) []string {
	var out []string
	for _, l := range strings.Split(msg, "\n") {
		if l = cleanMessage(l, ErrBadRequest); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// cleanMessage removes the sentinel's own text ("not found", "bad request")
// when it merely prefixes or suffixes a more specific message.
func cleanMessage(s string, sentinel error) string {
	s = strings.TrimSpace(s)
	t := sentinel.Error()
	if s == t {
		return ""
	}
	s = strings.TrimPrefix(s, t+": ")
	s = strings.TrimSuffix(s, ": "+t)
	return strings.TrimSpace(s)
}

// notFoundMessage turns "not found: pool \"x\"" or "pool \"x\": not found"
// (the two usual ways of wrapping ErrNotFound) into "pool \"x\" not found",
// so stripping the sentinel does not strip the meaning.
func notFoundMessage(s string) string {
	s = strings.TrimSpace(s)
	if c := cleanMessage(s, ErrNotFound); c != s && c != "" && !strings.Contains(c, ErrNotFound.Error()) {
		return c + " not found"
	}
	return s
}

// ---- helpers ----

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the response: "+err.Error(), nil)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string, problems []string) {
	if msg == "" {
		msg = strings.ToLower(http.StatusText(status))
	}
	body, _ := json.Marshal(ErrorResponse{Error: msg, Problems: problems})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func normalizePool(p *PoolStatus) {
	p.Members = nonNil(p.Members)
	for i := range p.Members {
		p.Members[i].Monitors = nonNil(p.Members[i].Monitors)
	}
}

// promLogger routes promhttp's gather errors to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error("api: metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}
