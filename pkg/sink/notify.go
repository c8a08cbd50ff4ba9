package sink

import (
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/watermarks"
)

// NotifyChannel is the channel every organization's NOTIFY goes to after
// each committed batch, as well as the organization's own (OrgChannel). It
// is deprecated: listeners use OrgChannel. Its payload, on both, is
// JSON: {"org", "table", "kind", "rows": {"insert", "update", "delete"},
// "position"}, where position is the position's summary
// (watermarks.Position.String: kind, LSN or version, never key or cursor
// values).
const NotifyChannel = "ehrsync_changes"

// OrgChannelPrefix starts every organization's NOTIFY channel.
const OrgChannelPrefix = "ehrsync_"

// OrgChannel is the NOTIFY channel of one organization's batches:
// ehrsync_ and its store schema (ehrsync_st_mary for st-mary), a plain
// lower-case identifier (LISTEN ehrsync_st_mary needs no quotes) of at most
// 58 bytes, since an organization's name is at most 50
// (config.MaxOrgNameLen). A consumer LISTENs on its own organization's
// channel only; NotifyChannel (deprecated) carries every organization's
// batches too.
//
// PostgreSQL has no privilege for LISTEN: any role that can connect to the
// store's database may listen on any channel. The channels separate the
// organizations' notifications, they do not hide them; payloads carry no
// row or key values (see NotifyChannel).
func OrgChannel(org string) string { return OrgChannelPrefix + SchemaFor(org) }

// notice is the JSON payload of a committed batch's NOTIFY (NotifyChannel).
type notice struct {
	Org      string     `json:"org"`
	Table    string     `json:"table"`
	Kind     string     `json:"kind,omitempty"`
	Rows     noticeRows `json:"rows"`
	Position string     `json:"position,omitempty"`
}

// noticeRows counts the target rows a batch inserted, updated and deleted.
type noticeRows struct {
	Insert int64 `json:"insert"`
	Update int64 `json:"update"`
	Delete int64 `json:"delete"`
}

// queueNotify queues the NOTIFY on b; PostgreSQL delivers it only if the
// transaction commits.
func (tg *Target) queueNotify(b *pgx.Batch, m watermarks.Move, rows noticeRows) error {
	// Any role connected to the store may LISTEN: the payload carries the
	// position's summary (kind, LSN, version), never key or cursor values;
	// listeners read the full position from ehrsync.positions.
	n := notice{Org: m.Org, Table: tg.table.QualifiedName(), Rows: rows}
	if m.To != nil {
		n.Kind, n.Position = string(m.To.Kind()), m.To.String()
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return err
	}
	b.Queue("SELECT pg_notify($1, $3), pg_notify($2, $3)", OrgChannel(m.Org), NotifyChannel, string(payload))
	return nil
}
