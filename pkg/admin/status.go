package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	tablestatus "github.com/ehrsync/ehrsync/pkg/status"
)

// StatusGatherer gathers tables' status from the store (*status.Store).
type StatusGatherer interface {
	Gather(ctx context.Context, opts tablestatus.Options) (*tablestatus.Report, error)
}

// tableStatus answers GET /admin/status: the report `ehrsync status`
// prints, with what only the daemon knows (its next run, a run in
// progress, a paused schedule). ?org=O reports only that organization
// (and only its daemon state), ?table=T (repeatable, with org) only those
// tables, ?stale_after=D (a Go duration) sets the staleness threshold.
// Positions are summaries: never a key or cursor value.
func (s *Server) tableStatus(w http.ResponseWriter, r *http.Request) {
	if s.Status == nil {
		writeError(w, http.StatusServiceUnavailable, "status is not available here")
		return
	}
	q := r.URL.Query()
	opts := tablestatus.Options{Catalog: s.Catalog, Tables: q["table"]}
	if v := q.Get("stale_after"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "stale_after: want a positive duration such as 30m or 2h")
			return
		}
		opts.StaleAfter = d
	}
	name := q.Get("org")
	for _, t := range opts.Tables {
		if err := checkName("table", t); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if len(opts.Tables) > 0 && name == "" {
		writeError(w, http.StatusBadRequest, "table needs org: ?org=ORG&table=TABLE")
		return
	}
	statuses := s.Daemon.Status()
	if name != "" {
		if err := checkName("org", name); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		o, err := s.Daemon.Org(name)
		if err != nil {
			writeError(w, status(err), err.Error())
			return
		}
		opts.Orgs = []config.Org{o}
		for _, st := range statuses {
			if st.Name == o.Name {
				opts.Daemon = []daemon.OrgStatus{st}
			}
		}
	} else {
		for _, st := range statuses {
			opts.Orgs = append(opts.Orgs, st.Config)
		}
		opts.Daemon = statuses
	}
	if opts.Daemon == nil {
		opts.Daemon = []daemon.OrgStatus{}
	}
	rep, err := s.Status.Gather(r.Context(), opts)
	switch {
	case errors.Is(err, daemon.ErrUnknownTable):
		writeError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		s.Log.Error("status not gathered", "err", err)
		writeError(w, http.StatusServiceUnavailable, "status: the store could not be read")
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
