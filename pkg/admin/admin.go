// Package admin is the daemon's HTTP surface, on two listeners. The
// metrics listener (server.listen) serves /metrics (Prometheus), /healthz
// (the process is alive) and /readyz (the store is reachable and the
// schedules are loaded, saying why when not), without credentials. The
// admin listener (server.admin_listen: loopback by default, TLS required
// anywhere else) serves the admin API under /admin/, to operators with a
// bearer token (Operators: the token's SHA-256 compared in constant time,
// naming the operator who is the actor of what it does). With no token
// configured the admin API is off. Every admin action is audited.
//
//	GET  /admin/orgs                                  orgs and tables: strategy, state, position summary, last run, last error class, lag
//	GET  /admin/status?org=O&table=T&stale_after=D    `ehrsync status`'s report (package status), with the daemon's next run and state
//	POST /admin/orgs/{org}/sync       {"tables": []}  trigger a sync now
//	POST /admin/orgs/{org}/backfill   {"tables": []}  start a backfill (re-snapshot)
//	                                  {"tables": ["T"], "from": "KEY", "to": "KEY"}
//	                                                  backfill only T's rows with key in [from, to] (either optional)
//	POST /admin/orgs/{org}/cancel                     cancel the org's run in progress (a backfill resumes when started again);
//	                                                  answers the run canceled and the request queued after it
//	POST /admin/orgs/{org}/pause | /resume            pause or resume the org's schedule
//	POST /admin/orgs/{org}/tables/{table}/position    {"confirm": "ORG/TABLE", "position": null | {...}, "note": "..."}
//	                                                  reset (null: full re-sync next run) or rewind a position
//
// A sync or backfill is answered with its request (daemon.Request: id,
// kind, tables, state, who asked, the run it waits for). A backfill of a
// table whose backfill is queued or running, and a request that would
// replace a queued one of another kind, are refused (409) naming that one
// ("existing"); a sync asked for while one is queued joins it. Every error
// is JSON like the successes, {"error": "..."}, 401, 404 and 405 included.
//
// Organization and table names in the path and in "tables" are checked
// against the loaded configuration and answered by their canonical names
// (the configured organization, the catalog's schema.table); a name with a
// control character is refused (400). Positions are answered as their
// summaries (watermarks.Summary), never with key values nor a timestamp
// cursor's value: the full position is read with the local CLI only
// (ehrsync positions show).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Pinger checks the store (pgxpool.Pool implements it).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Server is the handlers' dependencies.
type Server struct {
	Daemon    *daemon.Daemon
	Positions *watermarks.Store
	Store     Pinger
	Gatherer  prometheus.Gatherer
	Audit     *audit.Recorder // nil: admin actions are only logged
	Log       *slog.Logger
	// Operators are the admin API's credentials; none turns the admin API
	// off.
	Operators *Operators
	// Catalog names tables canonically (the engine's catalog).
	Catalog *schemas.Catalog
	// Resetter resets and rewinds positions, as `ehrsync positions reset`
	// does (under the table's lease); nil: position requests answer 503.
	Resetter *daemon.Resetter
	// Status gathers GET /admin/status's report (*status.Store); nil:
	// that request answers 503.
	Status StatusGatherer
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// HealthHandler returns the metrics listener's handler: /metrics, /healthz
// and /readyz. The admin API is not there.
func (s *Server) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("/admin/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not here: the admin API has its own listener (server.admin_listen)")
	})
	return mux
}

// AdminHandler returns the admin listener's handler: the admin API.
func (s *Server) AdminHandler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/orgs", s.auth(s.listOrgs))
	mux.HandleFunc("GET /admin/status", s.auth(s.tableStatus))
	mux.HandleFunc("POST /admin/orgs/{org}/sync", s.auth(s.trigger(false)))
	mux.HandleFunc("POST /admin/orgs/{org}/backfill", s.auth(s.trigger(true)))
	mux.HandleFunc("POST /admin/orgs/{org}/cancel", s.auth(s.cancel))
	mux.HandleFunc("POST /admin/orgs/{org}/pause", s.auth(s.control("pause", s.Daemon.Pause)))
	mux.HandleFunc("POST /admin/orgs/{org}/resume", s.auth(s.control("resume", s.Daemon.Resume)))
	mux.HandleFunc("POST /admin/orgs/{org}/tables/{table}/position", s.auth(s.position))
	return jsonErrors{mux}
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

// actorPrefix marks the admin API's actors: "admin-api:alice".
const actorPrefix = "admin-api:"

type operatorKey struct{}

// auth finds the operator of the request's bearer token (Operators: SHA-256
// digests compared in constant time) and passes the request on with it;
// anything else is a bare 401, the same whatever was tried.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.Operators.Len() == 0 {
			writeError(w, http.StatusNotFound, "admin API is off: set server.admin_token or server.admin_tokens_file")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		name, found := s.Operators.Operator(got)
		if !ok || !found {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ehrsync"`)
			writeError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), operatorKey{}, name)))
	}
}

// who is the audited actor of an authenticated request: the operator its
// token names ("admin-api:alice"). No header a client sets is trusted.
func who(r *http.Request) string {
	name, _ := r.Context().Value(operatorKey{}).(string)
	if name == "" {
		name = "unknown"
	}
	return actorPrefix + name
}

// maxNameLen bounds an organization or table name in a request.
const maxNameLen = 256

// checkName refuses a name that could not be one: a control character or
// a Unicode format character (bidirectional overrides), invalid UTF-8, or
// over maxNameLen bytes. The problem names what, never echoes the name.
func checkName(what, name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("%s name: longer than %d bytes", what, maxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%s name: not valid UTF-8", what)
	}
	for i, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s name: control character %U at byte %d: names hold none", what, r, i)
		}
	}
	return nil
}

// org resolves the request's {org} against the loaded configuration. A bad
// name is answered 400 (not audited: nothing was asked of the daemon); an
// unknown one 404, audited as what.
func (s *Server) org(w http.ResponseWriter, r *http.Request, what string) (config.Org, bool) {
	name := r.PathValue("org")
	if err := checkName("org", name); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return config.Org{}, false
	}
	o, err := s.Daemon.Org(name)
	if err != nil {
		if s.record(w, r, what, name, "", nil, nil, err) {
			writeError(w, status(err), err.Error())
		}
		return config.Org{}, false
	}
	return o, true
}

// tables resolves table names against org's configuration: their canonical
// names, or an error answered as org answers.
func (s *Server) tables(w http.ResponseWriter, r *http.Request, what string, org *config.Org, names []string) ([]string, bool) {
	for _, n := range names {
		if err := checkName("table", n); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return nil, false
		}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		q, err := daemon.CanonicalTable(s.Catalog, org, n)
		if err != nil {
			if s.record(w, r, what, org.Name, strings.Join(names, ","), nil, nil, err) {
				writeError(w, status(err), err.Error())
			}
			return nil, false
		}
		out = append(out, q)
	}
	return out, true
}

// record audits an admin action whose outcome is err. It reports false,
// having answered 500, when the audit record was not written and the action
// had succeeded: the operator learns that it went unaudited.
func (s *Server) record(w http.ResponseWriter, r *http.Request, what, org, table string, from, to watermarks.Position, err error) bool {
	outcome := "ok"
	class := ""
	if err != nil {
		outcome, class = "failed", engine.Class(err)
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
	notAudited(w, what, werr)
	return false
}

func notAudited(w http.ResponseWriter, what string, err error) {
	writeError(w, http.StatusInternalServerError, what+" done, but its audit record was not written ("+engine.Class(err)+")")
}

// TableView is one table in GET /admin/orgs.
type TableView struct {
	Name     string `json:"name"`
	Strategy string `json:"strategy,omitempty"`
	// State is what the position, its history and the last run say:
	// never synced, "reset: full re-sync next run", snapshotting, synced
	// or failing (watermarks.StateOf).
	State string `json:"state"`
	// Position is the position's summary: never key or cursor values.
	Position    *watermarks.Summary `json:"position"`
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
		writeError(w, http.StatusServiceUnavailable, "list positions: store unavailable")
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
				Outcome: ts.Outcome, ErrorClass: ts.ErrorClass}
			if p, ok := byTable[st.Name+"\x00"+name]; ok {
				tv.Position, tv.PositionAt = watermarks.Summarize(p.Position), p.UpdatedAt
				tv.State = string(watermarks.StateOf(p.Position, nil))
			} else {
				tv.State = s.unpositioned(r.Context(), st.Name, name)
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
			if q, err := daemon.CanonicalTable(s.Catalog, &st.Config, t.Name); err == nil {
				add(q)
			}
		}
		sort.Slice(ov.Tables, func(i, j int) bool { return ov.Tables[i].Name < ov.Tables[j].Name })
		out = append(out, ov)
	}
	writeJSON(w, http.StatusOK, map[string]any{"orgs": out})
}

// unpositioned is the state of a table without a position: never synced,
// or reset (its newest move in the history); "unknown" when the history
// cannot be read.
func (s *Server) unpositioned(ctx context.Context, org, table string) string {
	hist, err := s.Positions.History(ctx, org, table, 1)
	if err != nil {
		s.Log.Warn("position history not read", "org", org, "table", table, "class", engine.Class(err))
		return "unknown"
	}
	var last *watermarks.HistoryEntry
	if len(hist) > 0 {
		last = &hist[0]
	}
	return string(watermarks.StateOf(nil, last))
}

type tablesBody struct {
	Tables []string `json:"tables"`
	// From and To bound a backfill of one table to a key range
	// (engine.Range); never logged.
	From string `json:"from"`
	To   string `json:"to"`
}

func (s *Server) trigger(backfill bool) http.HandlerFunc {
	what := "sync"
	if backfill {
		what = "backfill"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		var body tablesBody
		if err := decode(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		rng := engine.Range{From: body.From, To: body.To}
		if !rng.IsZero() && (!backfill || len(body.Tables) != 1) {
			writeError(w, http.StatusBadRequest, "from and to bound a backfill of exactly one table: give one table in tables")
			return
		}
		what := what
		if !rng.IsZero() {
			what = "backfill key range"
		}
		org, ok := s.org(w, r, what)
		if !ok {
			return
		}
		tables, ok := s.tables(w, r, what, &org, body.Tables)
		if !ok {
			return
		}
		var (
			req daemon.Request
			err error
		)
		if rng.IsZero() {
			req, err = s.Daemon.Trigger(org.Name, tables, backfill, who(r))
		} else {
			req, err = s.Daemon.TriggerRange(org.Name, tables[0], rng, who(r))
		}
		if !s.record(w, r, what, org.Name, strings.Join(tables, ","), nil, nil, err) {
			return
		}
		if err != nil {
			writeFailure(w, org.Name, err)
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"org": org.Name, "tables": tables, "action": what, "request": req})
	}
}

func (s *Server) control(what string, fn func(string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		org, ok := s.org(w, r, what)
		if !ok {
			return
		}
		err := fn(org.Name)
		if !s.record(w, r, what, org.Name, "", nil, nil, err) {
			return
		}
		if err != nil {
			writeFailure(w, org.Name, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"org": org.Name, "action": what})
	}
}

// cancel cancels the org's run in progress and says which (its request:
// id, kind, tables, who asked), and the request queued after it, which
// the cancel leaves; with none in progress it answers 409, saying so.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	const what = "cancel"
	org, ok := s.org(w, r, what)
	if !ok {
		return
	}
	canceled, queued, err := s.Daemon.Cancel(org.Name, who(r))
	if !s.record(w, r, what, org.Name, strings.Join(canceled.Tables, ","), nil, nil, err) {
		return
	}
	if err != nil {
		writeJSON(w, status(err), errorBody{Error: err.Error(), Org: org.Name, Queued: queued})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"org": org.Name, "action": what, "canceled": canceled, "queued": queued})
}

type positionBody struct {
	// Confirm must repeat "ORG/TABLE": a reset is not undoable.
	Confirm  string          `json:"confirm"`
	Position json.RawMessage `json:"position"`
	Note     string          `json:"note"`
}

// position resets or rewinds a table's position with the Resetter
// `ehrsync positions reset` uses: under the table's lease, recorded in the
// position history and the audit as the operator.
func (s *Server) position(w http.ResponseWriter, r *http.Request) {
	pathOrg, pathTable := r.PathValue("org"), r.PathValue("table")
	if err := errors.Join(checkName("org", pathOrg), checkName("table", pathTable)); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var body positionBody
	if err := decode(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var to watermarks.Position
	if len(body.Position) > 0 && string(body.Position) != "null" {
		p, err := watermarks.Decode(body.Position)
		if err != nil {
			writeError(w, http.StatusBadRequest, "position: "+err.Error())
			return
		}
		to = p
	}
	what := "reset"
	if to != nil {
		what = "rewind"
	}
	if err := checkName("note", body.Note); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	org, ok := s.org(w, r, what)
	if !ok {
		return
	}
	tables, ok := s.tables(w, r, what, &org, []string{pathTable})
	if !ok {
		return
	}
	table := tables[0]
	if body.Confirm != pathOrg+"/"+pathTable && body.Confirm != org.Name+"/"+table {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("confirm: repeat %q to reset or rewind this position", org.Name+"/"+table))
		return
	}
	if s.Resetter == nil {
		writeError(w, http.StatusServiceUnavailable, "positions cannot be reset here")
		return
	}
	s.Log.Info("admin action", "actor", who(r), "action", what, "org", org.Name, "table", table)
	res, err := s.Resetter.Reset(r.Context(), daemon.ResetRequest{Org: &org, Table: table, To: to, Actor: who(r),
		Note: body.Note, Via: "the admin API"})
	switch {
	case errors.Is(err, daemon.ErrResetNotAudited):
		s.Log.Error("audit record not written", "action", what, "org", org.Name, "table", table, "err", err)
		notAudited(w, what, err)
		return
	case errors.Is(err, lease.ErrBusy):
		writeError(w, http.StatusConflict, what+" "+org.Name+" "+table+": a run of the table holds its lease; try again when it ends")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, what+" position: "+engine.Class(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"org": res.Org, "table": res.Table, "action": res.What,
		"from": watermarks.Summarize(res.From), "to": watermarks.Summarize(res.To)})
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
	case errors.Is(err, daemon.ErrNotRunning), errors.Is(err, daemon.ErrNoBackfill), errors.Is(err, daemon.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, engine.ErrBadRange):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // summaries read "<key of 1 value>"
	_ = enc.Encode(v)
}
