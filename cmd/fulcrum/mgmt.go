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

	"github.com/fulcrum-adc/fulcrum/config"
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
	if maxConns <= 0 { // a Config not built by config.Parse
		maxConns = config.DefaultMgmtMaxConns
	}
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
		Handler:           capProfiles(h, lim.maxProfile),
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		// net/http/pprof extends the write deadline of a CPU profile or
		// trace by its "seconds" when WriteTimeout is set, so
		// one value serves both; capProfiles bounds "seconds".
		WriteTimeout:   lim.write,
		IdleTimeout:    lim.idle,
		MaxHeaderBytes: lim.maxHeaderBytes,
		// Accept errors (descriptors exhausted past the reserve) are
		// retried by net/http with back-off up to a second; log them
		// through the structured log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	gl := guardnet.New(ln, lim.maxConns, lim.reserveFDs)
	go srv.Serve(gl)
	return srv, ln.Addr(), nil
}

// capProfiles refuses a CPU profile or execution trace longer than max:
// each holds a connection slot (and the profiler) for its whole length.
func capProfiles(h http.Handler, max time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/profile" || r.URL.Path == "/debug/pprof/trace" {
			// pprof reads "seconds" as a float (trace) or an integer
			// (profile); as a float, both are bounded.
			secs, err := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
			if err == nil && secs > max.Seconds() {
				http.Error(w, fmt.Sprintf("seconds=%s: at most %.0f", r.URL.Query().Get("seconds"), max.Seconds()), http.StatusBadRequest)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
