package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Resetter resets or rewinds tables' positions for operators. `ehrsync
// positions reset` and the admin API's position request both call Reset,
// so both find the table the same way, take its lease the same way (a run
// of the table finishes first: no chunk of it is between the read and the
// reset), and record the move in the position history and the audit the
// same way. It is safe for concurrent use.
type Resetter struct {
	Positions *watermarks.Store
	Leases    *lease.Manager
	// Audit records each reset; nil: not audited (tests).
	Audit *audit.Recorder
	// Catalog names the tables canonically (nil: the configuration's
	// spelling, schema dbo when it gives none).
	Catalog *schemas.Catalog
	// LeaseWait bounds the wait for a busy table's lease (default 2m).
	LeaseWait time.Duration
}

// ResetRequest is one reset (To nil: the next run re-snapshots the table)
// or rewind (To: the position to resume from).
type ResetRequest struct {
	// Org is the organization, from the loaded configuration (FindOrg).
	Org *config.Org
	// Table is the table as the operator named it; it must be one of
	// Org's tables (CanonicalTable).
	Table string
	To    watermarks.Position
	// Actor is who asks; Note why (default: what, and Via).
	Actor, Note string
	// Via says how the reset was asked, for the default note
	// ("ehrsync positions reset", "the admin API").
	Via string
	// Waiting, when set, is called once if the table's lease is busy.
	Waiting func()
}

// ResetResult is what a reset did.
type ResetResult struct {
	Org, Table string // canonical names
	What       string // reset or rewind
	From, To   watermarks.Position
}

// ErrResetNotAudited matches a reset that was done but whose audit record
// was not written (it also matches engine.ErrAuditNotWritten): the operator must
// learn that it went unaudited.
var ErrResetNotAudited = errors.New("done, but not audited")

// Reset resets or rewinds req's table under its lease, as req.Actor, and
// audits it (the failures too). An unknown table matches ErrUnknownTable,
// a lease not free within LeaseWait lease.ErrBusy.
func (r *Resetter) Reset(ctx context.Context, req ResetRequest) (ResetResult, error) {
	if req.Org == nil {
		return ResetResult{}, fmt.Errorf("%w: none given", ErrUnknownOrg)
	}
	res := ResetResult{Org: req.Org.Name, What: "reset", To: req.To}
	if req.To != nil {
		res.What = "rewind"
	}
	table, err := CanonicalTable(r.Catalog, req.Org, req.Table)
	if err != nil {
		return res, err
	}
	res.Table = table
	if req.Actor == "" {
		return res, errors.New("reset position: no actor")
	}
	note := req.Note
	if note == "" {
		note = res.What + " with " + req.Via
	}
	wait := r.LeaseWait
	if wait <= 0 {
		wait = 2 * time.Minute
	}
	// The lease may be seen busy for wait; taking it gets a little longer.
	lctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	unlock, err := r.Leases.Wait(lctx, res.Org, table, time.Second, wait, req.Waiting)
	if err == nil {
		defer unlock()
		res.From, err = r.Positions.Load(ctx, res.Org, table)
		if err == nil {
			err = r.Positions.Reset(ctx, res.Org, table, req.To, req.Actor, note)
		}
	}
	if r.Audit == nil {
		return res, err
	}
	rec := audit.Record{Actor: req.Actor, Action: audit.ActionAdmin, What: res.What, Org: res.Org, Table: table,
		From: res.From, To: req.To, Outcome: "ok"}
	if err != nil {
		rec.Outcome, rec.ErrorClass = "failed", engine.Class(err)
	}
	aerr := r.Audit.Write(ctx, rec)
	switch {
	case aerr == nil:
		return res, err
	case err != nil:
		return res, fmt.Errorf("%w; and %w", err, aerr)
	}
	return res, fmt.Errorf("%s %s: %s %w: %w", res.Org, table, res.What, ErrResetNotAudited, aerr)
}

// FindOrg returns the organization of orgs called name, matched
// case-insensitively (organization names are lower case); a name of no
// organization matches ErrUnknownOrg.
func FindOrg(orgs []config.Org, name string) (*config.Org, error) {
	for i := range orgs {
		if strings.EqualFold(orgs[i].Name, name) {
			return &orgs[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownOrg, name)
}

// CanonicalTable returns the name leases, positions and the audit know
// org's table called name by: the catalog's qualified name of the
// configured table that name matches as config.Org.Table does (any case;
// schema dbo when name gives none). A name that is not one of org's
// configured tables matches ErrUnknownTable.
func CanonicalTable(catalog *schemas.Catalog, org *config.Org, name string) (string, error) {
	t, ok := org.Table(name)
	if !ok {
		return "", fmt.Errorf("%w: %s %q", ErrUnknownTable, org.Name, name)
	}
	if catalog != nil {
		if ct, ok := catalog.Table(t.Name); ok {
			return ct.QualifiedName(), nil
		}
	}
	s, n := t.SchemaName()
	return s + "." + n, nil
}

// Org returns a copy of the loaded configuration's organization called
// name (FindOrg).
func (d *Daemon) Org(name string) (config.Org, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	orgs := make([]config.Org, 0, len(d.orgs))
	for _, st := range d.orgs {
		if !st.removed {
			orgs = append(orgs, st.cfg)
		}
	}
	o, err := FindOrg(orgs, name)
	if err != nil {
		return config.Org{}, err
	}
	return *o, nil
}
