package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// ConfigProblem is one thing in a configuration file that a sync would
// refuse: its key path, its line (0 when unknown) and what is wrong with
// the fix. It never holds a secret's value.
type ConfigProblem struct {
	Key     string `json:"key,omitempty"`
	Line    int    `json:"line,omitempty"`
	Problem string `json:"problem"`
}

func (p ConfigProblem) String() string {
	return (&config.FieldError{Key: p.Key, Line: p.Line, Problem: p.Problem}).Error()
}

// ConfigReport is `ehrsync validate`'s report of a configuration file.
type ConfigReport struct {
	SchemaVersion int             `json:"schema_version"`
	File          string          `json:"file"`
	Valid         bool            `json:"valid"`
	Orgs          int             `json:"orgs"`
	Tables        int             `json:"tables"`
	Problems      []ConfigProblem `json:"problems"`
	Warnings      []string        `json:"warnings"`
}

// Validate reports everything in the configuration file at path that a
// sync would refuse before it connects, all at once, each problem with
// its key path and line, by running what a sync runs: config.Inspect (the
// file, its validation, secrets that do not resolve, named by reference),
// service.StoreConfig on each store URL (a store on another machine
// without verified TLS), the catalog (service.Catalog) with each table
// resolved as engine.Resolve resolves it before it reads the source (the
// practice filter, the columns allow-list), and each source's connection
// settings (source.OpenPool: its transport, CA, SSH and Kerberos files).
// It touches no network. Problems are in file order; warnings are what
// every start warns about.
func Validate(path string) ConfigReport {
	rep := ConfigReport{SchemaVersion: SchemaVersion, File: path, Problems: []ConfigProblem{}, Warnings: []string{}}
	cfg, lines, err := config.Inspect(path)
	errs := config.Problems(err)
	if cfg != nil {
		more, warnings := runProblems(cfg, errs)
		errs = append(errs, lines.Locate(more)...)
		rep.Warnings = append(rep.Warnings, warnings...)
		rep.Orgs = len(cfg.Orgs)
		for _, o := range cfg.Orgs {
			rep.Tables += len(o.Tables)
		}
		rep.Warnings = append(rep.Warnings, service.ConfigWarnings(cfg)...)
		for _, o := range cfg.Orgs {
			for _, w := range source.Warnings(o.Source) {
				rep.Warnings = append(rep.Warnings, "org "+o.Name+": "+w)
			}
		}
		rep.Warnings = append(rep.Warnings, cfg.Server.Warnings()...)
	}
	for _, e := range errs {
		var fe *config.FieldError
		if errors.As(e, &fe) {
			rep.Problems = append(rep.Problems, ConfigProblem{Key: fe.Key, Line: fe.Line, Problem: fe.Problem})
		} else {
			rep.Problems = append(rep.Problems, ConfigProblem{Problem: e.Error()})
		}
	}
	slices.SortStableFunc(rep.Problems, func(a, b ConfigProblem) int { return a.Line - b.Line })
	rep.Valid = len(rep.Problems) == 0
	return rep
}

// runProblems are the problems a sync of cfg finds before it connects,
// beyond the file's own (found, whose keys are not judged again), and
// what it warns about the store's transport.
func runProblems(cfg *config.Config, found []error) (errs []error, warnings []string) {
	bad := func(prefix string) bool {
		for _, e := range found {
			var fe *config.FieldError
			if errors.As(e, &fe) && (fe.Key == prefix || strings.HasPrefix(fe.Key, prefix+".") || strings.HasPrefix(fe.Key, prefix+"[")) {
				return true
			}
		}
		return false
	}
	add := func(key, problem string) { errs = append(errs, &config.FieldError{Key: key, Problem: problem}) }
	for _, key := range []string{"store.url", "store.owner_url"} {
		if key == "store.owner_url" && !cfg.Store.OwnerURL.IsSet() || bad(key) {
			continue
		}
		if _, _, warning, err := service.StoreConfig(key, cfg); err != nil {
			add(key, withoutKey(err, key))
		} else if warning != "" {
			warnings = append(warnings, warning)
		}
	}
	catalog, err := service.Catalog(cfg)
	if err != nil {
		add("catalog", err.Error())
	}
	for i := range cfg.Orgs {
		o := &cfg.Orgs[i]
		key := fmt.Sprintf("orgs[%d]", i)
		if !bad(key + ".source") {
			if db, err := source.OpenPool(o.Source); err != nil {
				add(key+".source", err.Error())
			} else {
				db.Close()
			}
		}
		if catalog == nil {
			continue
		}
		for j, tc := range o.Tables {
			tk := fmt.Sprintf("%s.tables[%d]", key, j)
			if bad(tk) {
				continue
			}
			ct, ok := catalog.Table(tc.Name)
			if !ok {
				add(tk+".name", notInCatalog(tc.Name))
				continue
			}
			// Without a source connection engine.Resolve judges what it
			// can before the source: the practice filter, the allow-list.
			if _, _, err := engine.Resolve(context.Background(), nil, nil, o, tc, ct); err != nil {
				k := tk + ".columns"
				if errors.Is(err, schemas.ErrPracticeUndeclared) {
					k = tk + ".name"
					err = fmt.Errorf("%w; the organization sets practice_ids", err)
				}
				add(k, err.Error())
			}
		}
	}
	return errs, warnings
}

// withoutKey is a store error's text without the key (and the secret's
// reference) it starts with, for a problem listed under that key.
func withoutKey(err error, key string) string {
	var te *service.StoreTransportError
	if errors.As(err, &te) {
		return te.Problem
	}
	msg, ok := strings.CutPrefix(err.Error(), key)
	if !ok {
		return msg
	}
	if _, rest, ref := strings.Cut(msg, "): "); ref && strings.HasPrefix(msg, " (") {
		return rest
	}
	return strings.TrimPrefix(msg, ": ")
}

// WriteJSON writes the report as indented JSON.
func (r ConfigReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people: "FILE: valid (N organizations,
// M tables)", or "FILE has N problems:" with one problem a line ("line 12:
// orgs[0].source.port: ..."), then the warnings.
func (r ConfigReport) WriteText(w io.Writer) error {
	if r.Valid {
		fmt.Fprintf(w, "%s: valid (%d organizations, %d tables)\n", r.File, r.Orgs, r.Tables)
	} else {
		noun := "problems"
		if len(r.Problems) == 1 {
			noun = "problem"
		}
		fmt.Fprintf(w, "%s has %d %s:\n", r.File, len(r.Problems), noun)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	for _, wn := range r.Warnings {
		if _, err := fmt.Fprintf(w, "warning: %s\n", wn); err != nil {
			return err
		}
	}
	return nil
}
