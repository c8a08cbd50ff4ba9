package mssqlmodel

import (
	"fmt"

	"github.com/ehrsync/ehrsync/schemas"
)

// Helpers for the conformance suite's Model (extractors/extractortest):
// Create is CreateTracked, Begin/Insert/Update/Delete/Commit are Begin and
// Tx's methods, Bump is Touch, Rows is Rows with DriverRow, Expire is
// Expire.

// CreateTracked creates a table with its change data on: CDC enabled on
// the database and a capture instance "<schema>_<table>" of every column,
// change tracking on for the database and the table.
func (m *Model) CreateTracked(t *schemas.Table, computed ...Computed) error {
	if err := m.CreateTable(t, computed...); err != nil {
		return err
	}
	m.EnableCDCDatabase()
	if _, err := m.EnableCDC(CaptureInstance{Table: t.Schema + "." + t.Name}); err != nil {
		return err
	}
	m.EnableCTDatabase()
	return m.EnableCT(t.Schema + "." + t.Name)
}

// Expire cleans the table's change data up to the current position: every
// capture instance's minimum LSN rises to the highest harvested LSN (and
// its older change rows go), and the table's Change Tracking minimum valid
// version rises to the current version. A position saved before the
// table's last change is then expired.
func (m *Model) Expire(table string) error {
	m.mu.Lock()
	ts, err := m.tableLocked(table)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	var instances []string
	for _, in := range m.db.instances {
		if in.table == ts.def.objectID {
			instances = append(instances, in.name)
		}
	}
	high := m.db.maxLSN()
	version := m.db.ctVersion
	tracked := ts.ct != nil
	m.mu.Unlock()
	for _, in := range instances {
		if high == nil {
			return fmt.Errorf("mssqlmodel: expire %s: nothing harvested", table)
		}
		if err := m.CleanupCDC(in, high); err != nil {
			return err
		}
	}
	if tracked {
		return m.CleanupCT(table, version)
	}
	return nil
}
