// Package admin is the daemon's HTTP surface: /metrics (Prometheus),
// /healthz (the process is alive), /readyz (the store is reachable and the
// schedules are loaded, saying why when not), and the admin API under
// /admin/, authenticated with a bearer token compared in constant time. With
// no token configured the admin API is off. Every admin action is audited.
//
//	GET  /admin/orgs                                  orgs and tables: strategy, state, position, last run, last error class, lag
//	POST /admin/orgs/{org}/sync       {"tables": []}  trigger a sync now
//	POST /admin/orgs/{org}/backfill   {"tables": []}  start a backfill (re-snapshot)
//	                                  {"tables": ["T"], "from": "KEY", "to": "KEY"}
//	                                                  backfill only T's rows with key in [from, to] (either optional)
//	POST /admin/orgs/{org}/cancel                     cancel the org's run in progress (a backfill resumes when started again)
//	POST /admin/orgs/{org}/pause | /resume            pause or resume the org's schedule
//	POST /admin/orgs/{org}/tables/{table}/position    {"confirm": "ORG/TABLE", "position": null | {...}, "note": "..."}
//	                                                  reset (null: full re-sync next run) or rewind a position
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Pinger checks the store (pgxpool.Pool implements it).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Server is the handler's dependencies.
type Server struct {
	Daemon    *daemon.Daemon
	Positions *watermarks.Store
	Store     Pinger
	Gatherer  prometheus.Gatherer
	Audit     *audit.Recorder // nil: admin actions are only logged
	Log       *slog.Logger
	// Token is the admin API's bearer token; "" turns the admin API off.
	Token string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET /admin/orgs", s.auth(s.listOrgs))
	mux.HandleFunc("POST /admin/orgs/{org}/sync", s.auth(s.trigger(false)))
	mux.HandleFunc("POST /admin/orgs/{org}/backfill", s.auth(s.trigger(true)))
	mux.HandleFunc("POST /admin/orgs/{org}/cancel", s.auth(s.control("cancel", s.Daemon.Cancel)))
	mux.HandleFunc("POST /admin/orgs/{org}/pause", s.auth(s.control("pause", s.Daemon.Pause)))
	mux.HandleFunc("POST /admin/orgs/{org}/resume", s.auth(s.control("resume", s.Daemon.Resume)))
	mux.HandleFunc("POST /admin/orgs/{org}/tables/{table}/position", s.auth(s.position))
	return mux
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var why []string
	if err := s.Store.Ping(ctx); err != nil {
		why = append(why, "store unreachable")
	}
	if !s.Daemon.Loaded() {
		why = append(why, "schedules not loaded")
	}
	if len(why) > 0 {
		http.Error(w, "not ready: "+strings.Join(why, "; "), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

const actor = "admin-api"

// constantTimeCompare is subtle.ConstantTimeCompare; a test watches what it
// is given.
var constantTimeCompare = subtle.ConstantTimeCompare

// auth checks the bearer token in constant time: it compares SHA-256
// digests, which have one length whatever the token given, so neither a
// shared prefix nor the length of a guess shows in the time taken.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(s.Token))
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Token == "" {
			http.Error(w, "admin API is off: set server.admin_token", http.StatusNotFound)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		digest := sha256.Sum256([]byte(got))
		if constantTimeCompare(digest[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ehrsync"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next(w, r)
	}
}

// who is the audited actor of a request: the admin token, with the
// operator's name when the request gives one (X-Ehrsync-Operator).
func who(r *http.Request) string {
	if op := strings.TrimSpace(r.Header.Get("X-Ehrsync-Operator")); op != "" && len(op) <= 64 {
		return actor + ":" + op
	}
	return actor
}

// record audits an admin action whose outcome is err. It reports false,
// having answered 500, when the audit record was not written and the action
// had succeeded: the operator learns that it went unaudited.
func (s *Server) record(w http.ResponseWriter, r *http.Request, what, org, table string, from, to watermarks.Position, err error) bool {
	outcome := "ok"
	class := ""
	if err != nil {
		outcome, class = "failed", daemon.Class(err)
	}
	s.Log.Info("admin action", "actor", who(r), "action", what, "org", org, "table", table, "outcome", outcome)
	if s.Audit == nil {
		return true
	}
	werr := s.Audit.Write(r.Context(), audit.Record{Actor: who(r), Action: audit.ActionAdmin, What: what,
		Org: org, Table: table, From: from, To: to, Outcome: outcome, ErrorClass: class})
	if werr == nil {
		return true
	}
	s.Log.Error("audit record not written", "action", what, "org", org, "table", table, "err", werr)
	if err != nil {
		return true // the action's own error answers
	}
	http.Error(w, what+" done, but its audit record was not written ("+daemon.Class(werr)+")", http.StatusInternalServerError)
	return false
}

// TableView is one table in GET /admin/orgs.
type TableView struct {
	Name        string              `json:"name"`
	Strategy    string              `json:"strategy,omitempty"`
	State       string              `json:"state"`
	Position    watermarks.Position `json:"position"`
	PositionAt  time.Time           `json:"position_updated_at,omitzero"`
	LastRun     time.Time           `json:"last_run,omitzero"`
	LastSuccess time.Time           `json:"last_success,omitzero"`
	Outcome     string              `json:"last_outcome,omitempty"`
	ErrorClass  string              `json:"last_error_class,omitempty"`
	LagSeconds  *float64            `json:"lag_seconds"`
}

// OrgView is one org in GET /admin/orgs.
type OrgView struct {
	Name    string            `json:"name"`
	State   string            `json:"state"`
	Paused  bool              `json:"paused"`
	Queued  bool              `json:"queued"`
	NextRun time.Time         `json:"next_run"`
	LastRun *daemon.RunStatus `json:"last_run,omitempty"`
	Tables  []TableView       `json:"tables"`
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) {
	positions, err := s.Positions.List(r.Context(), "")
	if err != nil && positions == nil {
		http.Error(w, "list positions: store unavailable", http.StatusServiceUnavailable)
		return
	}
	byTable := map[string]watermarks.Entry{}
	for _, p := range positions {
		byTable[p.Org+"\x00"+p.Table] = p
	}
	now := s.Now()
	var out []OrgView
	for _, st := range s.Daemon.Status() {
		ov := OrgView{Name: st.Name, State: st.State, Paused: st.Paused, Queued: st.Queued, NextRun: st.NextRun, LastRun: st.LastRun}
		seen := map[string]bool{}
		add := func(name string) {
			if seen[name] {
				return
			}
			seen[name] = true
			ts := st.Tables[name]
			tv := TableView{Name: name, Strategy: ts.Strategy, LastRun: ts.LastRun, LastSuccess: ts.LastSuccess,
				Outcome: ts.Outcome, ErrorClass: ts.ErrorClass, State: "never synced"}
			if !ts.LastSuccess.IsZero() {
				tv.State = "synced" // full-snapshot tables keep no position between runs
			}
			if p, ok := byTable[st.Name+"\x00"+name]; ok {
				tv.Position, tv.PositionAt, tv.State = p.Position, p.UpdatedAt, "synced"
				if p.Position.Kind() == watermarks.KindSnapshot {
					tv.State = "snapshotting"
				}
			}
			if ts.Outcome == "failed" {
				tv.State = "failing"
			}
			last := tv.LastSuccess
			if tv.PositionAt.After(last) {
				last = tv.PositionAt
			}
			if !last.IsZero() {
				lag := now.Sub(last).Seconds()
				tv.LagSeconds = &lag
			}
			ov.Tables = append(ov.Tables, tv)
		}
		for name := range st.Tables {
			add(name)
		}
		for _, p := range positions {
			if p.Org == st.Name && !strings.HasSuffix(p.Table, engine.BackfillPosition("")) {
				add(p.Table) // a ranged backfill's own position is not a table
			}
		}
		for _, t := range st.Config.Tables {
			if !seen[t.Name] && !seen["dbo."+t.Name] {
				add(t.Name)
			}
		}
		sort.Slice(ov.Tables, func(i, j int) bool { return ov.Tables[i].Name < ov.Tables[j].Name })
		out = append(out, ov)
	}
	writeJSON(w, http.StatusOK, map[string]any{"orgs": out})
}

type tablesBody struct {
	Tables []string `json:"tables"`
	// From and To bound a backfill of one table to a key range
	// (daemon.Range); never logged.
	From string `json:"from"`
	To   string `json:"to"`
}

func (s *Server) trigger(backfill bool) http.HandlerFunc {
	what := "sync"
	if backfill {
		what = "backfill"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		org := r.PathValue("org")
		var body tablesBody
		if err := decode(r, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rng := daemon.Range{From: body.From, To: body.To}
		if !rng.IsZero() && (!backfill || len(body.Tables) != 1) {
			http.Error(w, "from and to bound a backfill of exactly one table: give one table in tables", http.StatusBadRequest)
			return
		}
		var (
			queued bool
			err    error
			what   = what
		)
		if rng.IsZero() {
			queued, err = s.Daemon.Trigger(org, body.Tables, backfill, who(r))
		} else {
			what = "backfill key range"
			queued, err = s.Daemon.TriggerRange(org, body.Tables[0], rng, who(r))
		}
		if !s.record(w, r, what, org, strings.Join(body.Tables, ","), nil, nil, err) {
			return
		}
		if err != nil {
			http.Error(w, err.Error(), status(err))
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"org": org, "action": what, "queued_behind_running": queued})
	}
}

func (s *Server) control(what string, fn func(string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		org := r.PathValue("org")
		err := fn(org)
		if !s.record(w, r, what, org, "", nil, nil, err) {
			return
		}
		if err != nil {
			http.Error(w, err.Error(), status(err))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"org": org, "action": what})
	}
}

type positionBody struct {
	// Confirm must repeat "ORG/TABLE": a reset is not undoable.
	Confirm  string          `json:"confirm"`
	Position json.RawMessage `json:"position"`
	Note     string          `json:"note"`
}

func (s *Server) position(w http.ResponseWriter, r *http.Request) {
	org, table := r.PathValue("org"), r.PathValue("table")
	var body positionBody
	if err := decode(r, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if body.Confirm != org+"/"+table {
		http.Error(w, fmt.Sprintf("confirm: repeat %q to reset or rewind this position", org+"/"+table), http.StatusBadRequest)
		return
	}
	var to watermarks.Position
	if len(body.Position) > 0 && string(body.Position) != "null" {
		p, err := watermarks.Decode(body.Position)
		if err != nil {
			http.Error(w, "position: "+err.Error(), http.StatusBadRequest)
			return
		}
		to = p
	}
	from, _ := s.Positions.Load(r.Context(), org, table)
	what := "reset"
	if to != nil {
		what = "rewind"
	}
	note := body.Note
	if note == "" {
		note = what + " through the admin API"
	}
	err := s.Positions.Reset(r.Context(), org, table, to, who(r), note)
	if !s.record(w, r, what, org, table, from, to, err) {
		return
	}
	if err != nil {
		http.Error(w, "reset position: "+daemon.Class(err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"org": org, "table": table, "action": what, "from": from, "to": to})
}

func decode(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func status(err error) int {
	switch {
	case errors.Is(err, daemon.ErrUnknownOrg), errors.Is(err, daemon.ErrUnknownTable):
		return http.StatusNotFound
	case errors.Is(err, daemon.ErrNotRunning), errors.Is(err, daemon.ErrNoBackfill):
		return http.StatusConflict
	case errors.Is(err, daemon.ErrBadRange):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
