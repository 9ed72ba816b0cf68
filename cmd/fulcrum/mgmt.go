package main

// This file builds the management API's HTTP server: timeouts, a cap on
// concurrent connections and a file-descriptor reserve (internal/guardnet),
// so that neither slow clients nor a data-plane descriptor flood can lock
// the operator out.

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/fulcrum-adc/fulcrum/internal/guardnet"
)

// mgmtLimits are the management server's limits; docs/configuration.md
// (section management) quotes the defaults.
type mgmtLimits struct {
	maxConns       int           // concurrent connections; more wait in the accept queue
	reserveFDs     int           // descriptors held back for the operator
	readHeader     time.Duration // the request head must arrive within this
	read           time.Duration // the whole request, body included
	write          time.Duration // writing the response
	idle           time.Duration // an idle keep-alive connection
	maxHeaderBytes int
	maxProfile     time.Duration // longest /debug/pprof profile or trace
}

func defaultMgmtLimits(maxConns int) mgmtLimits {
	return mgmtLimits{
		maxConns:       maxConns,
		reserveFDs:     4,
		readHeader:     10 * time.Second,
		read:           30 * time.Second,
		write:          30 * time.Second,
		idle:           60 * time.Second,
		maxHeaderBytes: 64 << 10,
		maxProfile:     300 * time.Second,
	}
}

// startManagement listens on addr and serves h there in the background.
func startManagement(addr string, h http.Handler, lim mgmtLimits, log *slog.Logger) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler:           withDeadlines(h, lim),
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		// WriteTimeout stays 0: withDeadlines sets each response's write
		// deadline, longer for a CPU profile or trace than for the rest
		// (with a server-wide WriteTimeout, net/http/pprof refuses any
		// profile longer than it).
		IdleTimeout:    lim.idle,
		MaxHeaderBytes: lim.maxHeaderBytes,
		// Accept errors (descriptors exhausted past the reserve) are
		// retried by net/http with back-off; log them, at most one a
		// second, through the structured log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	gl := guardnet.New(ln, lim.maxConns, lim.reserveFDs)
	go srv.Serve(gl)
	return srv, ln.Addr(), nil
}

// withDeadlines gives every response lim.write to be written. A CPU
// profile or execution trace streams for its "seconds" parameter first, so
// it gets that long plus lim.write, for reading too (the server's
// ReadTimeout would otherwise cancel the request's context half-way), up
// to lim.maxProfile.
func withDeadlines(h http.Handler, lim mgmtLimits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		budget := lim.write
		if r.URL.Path == "/debug/pprof/profile" || r.URL.Path == "/debug/pprof/trace" {
			// net/http/pprof's defaults: 30s for a profile, 1s for a trace.
			secs := int64(30)
			if r.URL.Path == "/debug/pprof/trace" {
				secs = 1
			}
			if v, err := strconv.ParseInt(r.URL.Query().Get("seconds"), 10, 64); err == nil && v > 0 {
				secs = v
			}
			if max := int64(lim.maxProfile / time.Second); secs > max {
				http.Error(w, fmt.Sprintf("seconds=%d: at most %d", secs, max), http.StatusBadRequest)
				return
			}
			budget += time.Duration(secs) * time.Second
			rc.SetReadDeadline(time.Now().Add(budget))
		}
		rc.SetWriteDeadline(time.Now().Add(budget))
		h.ServeHTTP(w, r)
	})
}
