package admin

import (
	"bytes"
	"errors"
	"net/http"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/daemon"
)

// errorBody is every error the admin API answers, as JSON like its
// successes: {"error": "what is wrong and the fix"}, with the request in
// the way of a refused one (existing), or the request queued (queued).
type errorBody struct {
	Error    string          `json:"error"`
	Org      string          `json:"org,omitempty"`
	Existing *daemon.Request `json:"existing,omitempty"`
	Queued   *daemon.Request `json:"queued,omitempty"`
	// Allow lists the methods a path takes (405).
	Allow []string `json:"allow,omitempty"`
}

// writeError answers code with {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// writeFailure answers a control operation's error on org: its status,
// and the request in the way when another one is (*daemon.ConflictError).
func writeFailure(w http.ResponseWriter, org string, err error) {
	body := errorBody{Error: err.Error(), Org: org}
	var c *daemon.ConflictError
	if errors.As(err, &c) {
		body.Existing = &c.Existing
	}
	writeJSON(w, status(err), body)
}

// jsonErrors serves mux, answering in JSON what mux would answer in text
// for a request no route takes: 404, and 405 (with the Allow header and
// field).
type jsonErrors struct{ mux *http.ServeMux }

func (j jsonErrors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := j.mux.Handler(r)
	if pattern != "" {
		j.mux.ServeHTTP(w, r)
		return
	}
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	switch {
	case rec.code == http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeJSON(w, rec.code, errorBody{Error: r.Method + " is not allowed on this path: use " + allow,
			Allow: strings.Split(allow, ", ")})
	case rec.code >= 400:
		// The path is not echoed: it is the client's text.
		writeError(w, rec.code, "no such admin API endpoint: the endpoints are under /admin/orgs (see the operations guide)")
	default: // a redirect to the canonical path
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		_, _ = w.Write(rec.body.Bytes())
	}
}

// recorder keeps what a handler answered.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
