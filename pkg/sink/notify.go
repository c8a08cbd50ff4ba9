package sink

// OrgChannelPrefix starts every organization's NOTIFY channel.
const OrgChannelPrefix = "ehrsync_"

// OrgChannel is the NOTIFY channel of one organization's batches:
// ehrsync_ and its store schema (ehrsync_st_mary for st-mary), a plain
// lower-case identifier (LISTEN ehrsync_st_mary needs no quotes) of at most
// 58 bytes, since an organization's name is at most 50
// (config.MaxOrgNameLen). A consumer LISTENs on its own organization's
// channel only; NotifyChannel carries every organization's batches too,
// for listeners written before the per-organization channels.
//
// PostgreSQL has no privilege for LISTEN: any role that can connect to the
// store's database may listen on any channel. The channels separate the
// organizations' notifications, they do not hide them; payloads carry no
// row or key values (see NotifyChannel).
func OrgChannel(org string) string { return OrgChannelPrefix + SchemaFor(org) }
