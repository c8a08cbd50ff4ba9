// Package config loads and validates ehrsync's YAML configuration.
//
// One file describes the cloud store, the daemon's HTTP server and the
// organizations whose EHR databases are synced:
//
//	store:
//	  url: env:EHRSYNC_STORE_URL
//	server:
//	  listen: 127.0.0.1:9464
//	  admin_token: env:EHRSYNC_ADMIN_TOKEN
//	defaults:
//	  batch_rows: 10000
//	  batch_bytes: 64MiB
//	orgs:
//	  - name: st-mary
//	    schedule: {every: 10m, start: "02:00", timezone: America/Chicago}
//	    source: {vendor: nextgen, dialect: sqlserver, via: relay, ...}
//	    tables:
//	      - {name: dbo.trans_detail, strategy: auto}
//	catalog: [tables/app.visits.yaml]   # extra table files, merged with NextGen
//
// docs/examples/nextgen-denied-claims.yaml is a complete, commented example.
//
// Decoding is strict: an unknown key is an error naming the key and its line.
// [Load] and [Parse] fill in defaults (see [Config.ApplyDefaults]) and then
// validate; [Config.Validate] reports every problem at once, each prefixed by
// its key path (orgs[1].tables[3].strategy), joined with errors.Join. Use
// [Problems] to list them one by one.
//
// Values that are secrets (the store URL, passwords, the admin token, SSH
// keys) are [Secret]s: they may reference env:NAME or file:PATH, or hold an
// enc:v1: value encrypted by `ehrsync secrets encrypt` (package secrets), and are
// resolved only when [Secret.Reveal] is called. A Secret never prints,
// logs or marshals its literal value.
//
// The package reads no flags; the only environment it reads is through
// [Secret.Reveal].
package config
