package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBase is where `fulcrum run` serves the API unless configured
// otherwise (management.address).
const DefaultBase = "http://127.0.0.1:9090"

// Client is the Go client of the management API; the CLI uses it. The zero
// value talks to DefaultBase without a token.
type Client struct {
	Base  string       // "http://127.0.0.1:9090"; a bare "host:port" is accepted
	Token string       // bearer token, "" = none
	HTTP  *http.Client // nil = a client with a 60 s overall timeout
}

// APIError is an error answer from the API. errors.Is maps it to
// ErrNotFound (404), ErrBadRequest (400) and ErrUnauthorized (401).
type APIError struct {
	StatusCode int
	Message    string
	Problems   []string // one per configuration problem, if any
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if len(e.Problems) > 1 || (len(e.Problems) == 1 && !strings.Contains(e.Message, e.Problems[0])) {
		for _, p := range e.Problems {
			b.WriteString("\n  ")
			b.WriteString(p)
		}
	}
	return b.String()
}

func (e *APIError) Unwrap() error {
	switch e.StatusCode {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusUnauthorized:
		return ErrUnauthorized
	}
	return nil
}

// NormalizeBase turns what an operator types for -api ("127.0.0.1:9090",
// ":9090", "http://lb1:9090/") into a base URL. "" gives DefaultBase.
func NormalizeBase(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return DefaultBase, nil
	}
	if !strings.Contains(addr, "://") {
		// Without a scheme, url.Parse would read "localhost:9090" as
		// scheme "localhost".
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("API address %q: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("API address %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return "", fmt.Errorf("API address %q: no host", addr)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("API address %q: must not have a query or fragment", addr)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// Virtuals lists every virtual server, sorted by name.
func (c *Client) Virtuals(ctx context.Context) ([]VirtualStatus, error) {
	var out []VirtualStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/virtuals", nil, nil, &out)
}

// Virtual returns one virtual server; an unknown name unwraps to ErrNotFound.
func (c *Client) Virtual(ctx context.Context, name string) (VirtualStatus, error) {
	var out VirtualStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/virtuals/"+url.PathEscape(name), nil, nil, &out)
}

// Pools lists every pool with its members, sorted by name.
func (c *Client) Pools(ctx context.Context) ([]PoolStatus, error) {
	var out []PoolStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/pools", nil, nil, &out)
}

// Pool returns one pool; an unknown name unwraps to ErrNotFound.
func (c *Client) Pool(ctx context.Context, name string) (PoolStatus, error) {
	var out PoolStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/pools/"+url.PathEscape(name), nil, nil, &out)
}

// Member returns one pool member by address ("127.0.0.1:8081", "[::1]:80").
func (c *Client) Member(ctx context.Context, pool, member string) (MemberStatus, error) {
	var out MemberStatus
	return out, c.do(ctx, http.MethodGet, memberPath(pool, member), nil, nil, &out)
}

// Connections lists connections matching q (F5: show sys connection).
func (c *Client) Connections(ctx context.Context, q ConnQuery) ([]ConnectionStatus, error) {
	v := url.Values{}
	setNonEmpty(v, "virtual", q.Virtual)
	setNonEmpty(v, "pool", q.Pool)
	setNonEmpty(v, "member", q.Member)
	setNonEmpty(v, "client", q.Client)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []ConnectionStatus
	return out, c.do(ctx, http.MethodGet, "/api/v1/connections", v, nil, &out)
}

// Connection returns one connection with its detail.
func (c *Client) Connection(ctx context.Context, id uint64) (ConnectionDetail, error) {
	var out ConnectionDetail
	return out, c.do(ctx, http.MethodGet, "/api/v1/connections/"+strconv.FormatUint(id, 10), nil, nil, &out)
}

// Persistence lists persistence records matching q.
func (c *Client) Persistence(ctx context.Context, q PersistQuery) ([]PersistenceRecord, error) {
	v := url.Values{}
	setNonEmpty(v, "virtual", q.Virtual)
	setNonEmpty(v, "pool", q.Pool)
	setNonEmpty(v, "profile", q.Profile)
	setNonEmpty(v, "member", q.Member)
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []PersistenceRecord
	return out, c.do(ctx, http.MethodGet, "/api/v1/persistence", v, nil, &out)
}

// SetMemberState sets a member's state: enabled, disabled or forced-offline
// (enable, disable and force-offline are accepted too).
func (c *Client) SetMemberState(ctx context.Context, pool, member, state string) error {
	body, _ := json.Marshal(MemberStateRequest{State: state})
	return c.do(ctx, http.MethodPatch, memberPath(pool, member), nil, body, nil)
}

// LoadConfig sends a whole YAML configuration to validate and apply. A
// rejected configuration unwraps to ErrBadRequest; its *APIError lists the
// problems. The answer says whether the server also saved it to its file.
func (c *Client) LoadConfig(ctx context.Context, yaml []byte) (ConfigResponse, error) {
	if yaml == nil {
		yaml = []byte{}
	}
	var out ConfigResponse
	return out, c.do(ctx, http.MethodPost, "/api/v1/config", nil, yaml, &out)
}

// RunningConfig returns the configuration in force as YAML, secrets
// replaced by Redacted.
func (c *Client) RunningConfig(ctx context.Context) ([]byte, error) {
	var out rawBody
	return out, c.do(ctx, http.MethodGet, "/api/v1/config", nil, nil, &out)
}

// KillConnection resets one connection (both sides aborted); an unknown or
// already closed id unwraps to ErrNotFound.
func (c *Client) KillConnection(ctx context.Context, id uint64) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/connections/"+strconv.FormatUint(id, 10), nil, nil, nil)
}

// DeletePersistence deletes one persistence record by key, or the records
// matching the filters (All: every record). It returns how many were
// deleted; an unknown key unwraps to ErrNotFound.
func (c *Client) DeletePersistence(ctx context.Context, d PersistDelete) (int, error) {
	path := "/api/v1/persistence"
	if d.Key != "" {
		path += "/" + url.PathEscape(d.Key)
	}
	v := url.Values{}
	setNonEmpty(v, "virtual", d.Virtual)
	setNonEmpty(v, "pool", d.Pool)
	setNonEmpty(v, "profile", d.Profile)
	setNonEmpty(v, "member", d.Member)
	if d.All {
		v.Set("all", "true")
	}
	var out DeleteResponse
	err := c.do(ctx, http.MethodDelete, path, v, nil, &out)
	return out.Deleted, err
}

// rawBody receives an answer that is not JSON (the YAML configuration).
type rawBody []byte

// Reload asks the server to re-read its configuration file.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v1/reload", nil, nil, nil)
}

// HA reads the device group's state (GET /api/v1/ha) into out (the ha
// package's Status).
func (c *Client) HA(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, "/api/v1/ha", nil, nil, out)
}

// Mirroring reads persistence mirroring's state (GET /api/v1/mirroring)
// into out (the mirror package's Status).
func (c *Client) Mirroring(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, "/api/v1/mirroring", nil, nil, out)
}

// Tunnels reads the EtherIP tunnels (GET /api/v1/tunnels) into out.
func (c *Client) Tunnels(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, "/api/v1/tunnels", nil, nil, out)
}

// ISessions reads the iSession tunnels' state (GET /api/v1/isessions)
// into out (the engine's ISessionStats).
func (c *Client) ISessions(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, "/api/v1/isessions", nil, nil, out)
}

// SyncStatus reads config sync's state (GET /api/v1/sync) into out (the
// configsync package's Status).
func (c *Client) SyncStatus(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, "/api/v1/sync", nil, nil, out)
}

// Sync runs a config sync (POST /api/v1/sync).
func (c *Client) Sync(ctx context.Context, req SyncRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/api/v1/sync", nil, body, nil)
}

// Failover moves a traffic group off the device holding it, to `to` or
// ("") the next device in its HA order; it returns once the group moved.
func (c *Client) Failover(ctx context.Context, group, to string) error {
	body, err := json.Marshal(FailoverRequest{To: to})
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/api/v1/traffic-groups/"+url.PathEscape(group)+"/failover", nil, body, nil)
}

func memberPath(pool, member string) string {
	return "/api/v1/pools/" + url.PathEscape(pool) + "/members/" + url.PathEscape(member)
}

func setNonEmpty(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 60 * time.Second}
}

// do sends one request. A nil body sends none; out nil discards a
// successful answer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	base, err := NormalizeBase(c.Base)
	if err != nil {
		return err
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/yaml")
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if raw, ok := out.(*rawBody); ok {
		b, err := io.ReadAll(io.LimitReader(resp.Body, MaxConfigBytes+1))
		if err == nil && len(b) > MaxConfigBytes {
			err = fmt.Errorf("answer larger than %d bytes", MaxConfigBytes)
		}
		if err != nil {
			return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
		}
		*raw = b
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &APIError{StatusCode: resp.StatusCode}
	var er ErrorResponse
	if json.Unmarshal(raw, &er) == nil && er.Error != "" {
		e.Message, e.Problems = er.Error, er.Problems
		return e
	}
	// Not our JSON: perhaps a proxy in between. Show what came back.
	e.Message = resp.Status
	if s := strings.TrimSpace(string(raw)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		e.Message += ": " + s
	}
	return e
}

// IsUnreachable reports whether err means the API could not be reached at
// all (nothing listening, unknown host, timeout), as opposed to an answer.
func IsUnreachable(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*APIError](err); ok {
		return false
	}
	_, ok := errors.AsType[*url.Error](err)
	return ok
}
