package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// HA is the device group as the API sees it (the ha package's Manager
// through a small adapter; nil when no device group is configured).
type HA interface {
	// HAStatus is devices, HA paths and traffic groups, JSON-encodable.
	HAStatus() any
	// Failover moves a traffic group off the device holding it, to target
	// or ("") the next device in its HA order, and waits until it moved.
	// Unknown group or device: ErrBadRequest or ErrNotFound wrapped.
	Failover(ctx context.Context, group, target string) error
}

// Mirroring is persistence mirroring as the API sees it (the mirror
// package's Mirror; nil when this device does not mirror).
type Mirroring interface {
	// MirrorStatus is every traffic group's channel, JSON-encodable.
	MirrorStatus() any
}

// Sync is config sync as the API sees it (the configsync package's
// Syncer; nil without a device group).
type Sync interface {
	SyncStatus() any
	// Push sends this device's configuration to the peer (to-group).
	Push(ctx context.Context, force bool) error
	// Pull takes the peer's configuration (from-device).
	Pull(ctx context.Context) error
}

// SyncRequest is the body of POST /api/v1/sync: exactly one of ToGroup
// and FromDevice.
type SyncRequest struct {
	ToGroup    bool   `json:"to_group,omitempty"`
	Force      bool   `json:"force,omitempty"` // to_group: even over the peer's own changes
	FromDevice string `json:"from_device,omitempty"`
}

// FailoverRequest is the body of POST /api/v1/traffic-groups/{name}/failover.
type FailoverRequest struct {
	To string `json:"to,omitempty"` // device to move the group to; "" : the next in HA order
}

func (h *handler) haStatus(w http.ResponseWriter, r *http.Request) {
	if h.ha == nil {
		writeError(w, http.StatusNotFound, "no device group is configured on this device", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.ha.HAStatus())
}

func (h *handler) mirrorStatus(w http.ResponseWriter, r *http.Request) {
	if h.mirroring == nil {
		writeError(w, http.StatusNotFound, "persistence mirroring is not running on this device (it needs devices with mirror_addresses)", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.mirroring.MirrorStatus())
}

func (h *handler) isessionStatus(w http.ResponseWriter, r *http.Request) {
	if h.isessions == nil {
		writeError(w, http.StatusNotFound, "iSession is not available on this device", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.isessions())
}

func (h *handler) tunnelStatus(w http.ResponseWriter, r *http.Request) {
	if h.tunnels == nil {
		writeError(w, http.StatusNotFound, "tunnels are not available on this device", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.tunnels())
}

func (h *handler) syncStatus(w http.ResponseWriter, r *http.Request) {
	if h.sync == nil {
		writeError(w, http.StatusNotFound, "no device group is configured on this device", nil)
		return
	}
	writeJSON(w, http.StatusOK, h.sync.SyncStatus())
}

func (h *handler) syncRun(w http.ResponseWriter, r *http.Request) {
	if h.sync == nil {
		writeError(w, http.StatusNotFound, "no device group is configured on this device", nil)
		return
	}
	var req SyncRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.ToGroup == (req.FromDevice != "") {
		writeError(w, http.StatusBadRequest, `body must be {"to_group": true, "force": false} or {"from_device": "DEVICE"}`, nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	what := "to-group"
	if req.ToGroup {
		err = h.sync.Push(ctx, req.Force)
	} else {
		what = "from-device " + req.FromDevice
		err = h.sync.Pull(ctx)
	}
	if err != nil {
		h.log.Warn("api: config sync failed", "remote", r.RemoteAddr, "sync", what, "error", err)
		h.writeBackendError(w, err, "")
		return
	}
	h.log.Info("api: config synchronised", "remote", r.RemoteAddr, "sync", what, "force", req.Force)
	writeJSON(w, http.StatusOK, StatusResponse{Status: "ok", Message: "configuration synchronised (" + what + ")"})
}

func (h *handler) failover(w http.ResponseWriter, r *http.Request) {
	if h.ha == nil {
		writeError(w, http.StatusNotFound, "no device group is configured on this device", nil)
		return
	}
	var req FailoverRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "body must be JSON like {\"to\": \"DEVICE\"} or empty", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	group := r.PathValue("name")
	if err := h.ha.Failover(ctx, group, req.To); err != nil {
		h.log.Warn("api: failover failed", "remote", r.RemoteAddr, "traffic_group", group, "to", req.To, "error", err)
		h.writeBackendError(w, err, "")
		return
	}
	h.log.Info("api: traffic group failed over", "remote", r.RemoteAddr, "traffic_group", group, "to", req.To)
	writeJSON(w, http.StatusOK, StatusResponse{Status: "ok", Message: "traffic group " + group + " moved"})
}
