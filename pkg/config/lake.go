package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// DefaultLakeMaintainEvery is how often the daemon maintains the lake
// unless lake.maintain_every says.
const DefaultLakeMaintainEvery = 24 * time.Hour

// Lake is the change lake: for tables with lake on, every change the store
// commits is appended once to an Apache Iceberg table (pkg/lake). Its
// catalog lives in the store (schema ehrsync_lake); Warehouse is where the
// tables' files go.
type Lake struct {
	// Warehouse is the base location of the lake's tables:
	// file:///var/lib/ehrsync/lake, abfss://container@account.dfs.core.windows.net/path,
	// or s3://bucket/path.
	Warehouse string `yaml:"warehouse,omitempty" json:"warehouse,omitempty"`
	// FlushBytes bounds the change batches one lake commit takes; 0 means
	// 128 MiB. Larger makes fewer, larger files.
	FlushBytes int64 `yaml:"flush_bytes,omitempty" json:"flush_bytes,omitempty"`
	// MaintainEvery is how often the daemon maintains the lake's tables
	// (compaction, snapshot expiry, orphan files; `ehrsync lake maintain`);
	// default 24h.
	MaintainEvery time.Duration `yaml:"maintain_every,omitempty" json:"maintain_every,omitempty"`
	// Azure is the storage account of an abfs:// or abfss:// warehouse.
	Azure *LakeAzure `yaml:"azure,omitempty" json:"azure,omitempty"`
	// S3 is the storage of an s3:// warehouse.
	S3 *LakeS3 `yaml:"s3,omitempty" json:"s3,omitempty"`
	// Catalog is where the lake's tables are listed: the store (type sql,
	// the default: schema ehrsync_lake) or an Iceberg REST catalog.
	Catalog *LakeCatalog `yaml:"catalog,omitempty" json:"catalog,omitempty"`
}

// LakeCatalog is the lake's Iceberg catalog.
type LakeCatalog struct {
	// Type is sql (the store's schema ehrsync_lake, the default) or rest.
	Type string `yaml:"type" json:"type"`
	// URI is a REST catalog's base URL (https://; http:// on loopback only).
	URI string `yaml:"uri,omitempty" json:"uri,omitempty"`
	// Credential is an OAuth2 client's "id:secret" the catalog exchanges
	// for a token; a secret.
	Credential Secret `yaml:"credential" json:"credential"`
	// Token is a bearer token instead; a secret.
	Token Secret `yaml:"token" json:"token"`
	// Scope is the OAuth2 scope asked for with Credential (default catalog).
	Scope string `yaml:"scope,omitempty" json:"scope,omitempty"`
}

// CatalogSecrets are the REST catalog's credential and token, revealed
// (either may be ""). Call it only to open the catalog.
func (l Lake) CatalogSecrets() (credential, token string, err error) {
	c := l.Catalog
	if c == nil {
		return "", "", nil
	}
	out := [2]string{}
	for i, s := range []Secret{c.Credential, c.Token} {
		if !s.IsSet() {
			continue
		}
		if out[i], err = s.Reveal(); err != nil {
			return "", "", fmt.Errorf("%s: %w", s.Path(), err)
		}
	}
	return out[0], out[1], nil
}

// REST says whether the lake's catalog is a REST catalog.
func (l Lake) REST() bool { return l.Catalog != nil && l.Catalog.Type == "rest" }

// LakeAzure is an Azure Blob / ADLS Gen2 account. With neither Key nor
// SASToken, the machine's Azure identity is used (DefaultAzureCredential:
// managed identity, workload identity, az login).
type LakeAzure struct {
	Account string `yaml:"account" json:"account"`
	// Key is the account's shared key; a secret.
	Key Secret `yaml:"key" json:"key"`
	// SASToken is a shared access signature; a secret.
	SASToken Secret `yaml:"sas_token" json:"sas_token"`
	// Endpoint overrides the service host (Azurite: 127.0.0.1:10000).
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	// Protocol is https (the default) or http (Azurite on loopback only).
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
}

// LakeS3 is an S3 (or S3-compatible) bucket's access. With no keys, the
// AWS SDK's default chain is used (environment, instance role).
type LakeS3 struct {
	Region          string `yaml:"region" json:"region"`
	Endpoint        string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	AccessKeyID     Secret `yaml:"access_key_id" json:"access_key_id"`
	SecretAccessKey Secret `yaml:"secret_access_key" json:"secret_access_key"`
}

// LakeOn says whether table t of org o goes to the change lake: the
// table's lake setting, else the organization's.
func LakeOn(o Org, t Table) bool {
	if t.Lake != nil {
		return *t.Lake
	}
	return o.Lake
}

// LakeUsed says whether a table of orgs goes to the lake.
func LakeUsed(orgs []Org) bool {
	for _, o := range orgs {
		for _, t := range o.Tables {
			if LakeOn(o, t) {
				return true
			}
		}
	}
	return false
}

// Props are the warehouse's storage properties for iceberg-go, secrets
// revealed. Call it only to open the lake.
func (l Lake) Props() (map[string]string, error) {
	p := map[string]string{}
	reveal := func(key string, s Secret) error {
		if !s.IsSet() {
			return nil
		}
		v, err := s.Reveal()
		if err != nil {
			return fmt.Errorf("%s: %w", s.Path(), err)
		}
		p[key] = v
		return nil
	}
	if a := l.Azure; a != nil {
		p["adls.auth.shared-key.account.name"] = a.Account
		if err := reveal("adls.auth.shared-key.account.key", a.Key); err != nil {
			return nil, err
		}
		if a.SASToken.IsSet() {
			host := a.Account + ".blob.core.windows.net"
			if a.Endpoint != "" {
				host = a.Endpoint
			}
			if err := reveal("adls.sas-token."+host, a.SASToken); err != nil {
				return nil, err
			}
		}
		if a.Endpoint != "" {
			p["adls.endpoint"] = a.Endpoint
		}
		p["adls.protocol"] = a.protocol()
	}
	if s := l.S3; s != nil {
		if s.Region != "" {
			p["s3.region"] = s.Region
		}
		if s.Endpoint != "" {
			p["s3.endpoint"] = s.Endpoint
		}
		if err := reveal("s3.access-key-id", s.AccessKeyID); err != nil {
			return nil, err
		}
		if err := reveal("s3.secret-access-key", s.SecretAccessKey); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (a *LakeAzure) protocol() string {
	if a.Protocol == "" {
		return "https"
	}
	return a.Protocol
}

// lakeSchemes are the warehouse URL schemes, by storage.
var lakeSchemes = map[string]string{"file": "file", "abfs": "azure", "abfss": "azure", "s3": "s3", "s3a": "s3"}

func (v *validator) lake(c *Config) {
	l := c.Lake
	used := LakeUsed(c.Orgs)
	if !used && l.Warehouse == "" {
		return
	}
	const key = "lake.warehouse"
	if l.Warehouse == "" {
		v.add(key, "not set, and tables have lake on: set it to file:///dir, abfss://container@account.dfs.core.windows.net/path or s3://bucket/path")
		return
	}
	u, err := url.Parse(l.Warehouse)
	storage := ""
	if err == nil {
		storage = lakeSchemes[strings.ToLower(u.Scheme)]
	}
	switch {
	case storage == "":
		v.add(key, "%q is not a warehouse URL: want file:///dir, abfss://container@account.dfs.core.windows.net/path or s3://bucket/path", l.Warehouse)
	case storage == "file" && (u.Host != "" || !strings.HasPrefix(u.Path, "/")):
		v.add(key, "%q: a directory is file:///absolute/path (three slashes)", l.Warehouse)
	case storage == "azure" && l.Azure == nil:
		v.add("lake.azure", "not set, and the warehouse is on Azure: set lake.azure.account (and key or sas_token, or use the machine's identity)")
	case storage != "azure" && l.Azure != nil:
		v.add("lake.azure", "set, but the warehouse %q is not on Azure (abfs:// or abfss://)", l.Warehouse)
	case storage != "s3" && l.S3 != nil:
		v.add("lake.s3", "set, but the warehouse %q is not on S3 (s3://)", l.Warehouse)
	}
	if l.MaintainEvery < 0 || (l.MaintainEvery > 0 && l.MaintainEvery < time.Minute) {
		v.add("lake.maintain_every", "want 1m or more (default 24h)")
	}
	if l.FlushBytes < 0 {
		v.add("lake.flush_bytes", "must not be negative (0 means 128 MiB)")
	}
	if a := l.Azure; a != nil {
		if a.Account == "" {
			v.add("lake.azure.account", "not set")
		}
		v.secret("lake.azure.key", a.Key, false)
		v.secret("lake.azure.sas_token", a.SASToken, false)
		if a.Key.IsSet() && a.SASToken.IsSet() {
			v.add("lake.azure", "key and sas_token are both set: keep one")
		}
		switch a.protocol() {
		case "https":
		case "http":
			if !loopbackHost(a.Endpoint) {
				v.add("lake.azure.protocol", "http sends the lake's rows unencrypted: only an endpoint on loopback (Azurite) may use it")
			}
		default:
			v.add("lake.azure.protocol", "%q: want https or http", a.Protocol)
		}
	}
	if c := l.Catalog; c != nil {
		switch c.Type {
		case "", "sql":
			if c.URI != "" || c.Credential.IsSet() || c.Token.IsSet() {
				v.add("lake.catalog", "uri, credential and token are a REST catalog's: set type: rest, or leave them out for the store's catalog")
			}
		case "rest":
			u, err := url.Parse(c.URI)
			switch {
			case c.URI == "":
				v.add("lake.catalog.uri", "not set: a REST catalog's base URL, https://…")
			case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
				v.add("lake.catalog.uri", "%q is not an http(s) URL", c.URI)
			case u.Scheme == "http" && !loopbackHost(u.Host):
				v.add("lake.catalog.uri", "http sends the catalog's credentials unencrypted: use https (http only on loopback)")
			}
			v.secret("lake.catalog.credential", c.Credential, false)
			v.secret("lake.catalog.token", c.Token, false)
			if c.Credential.IsSet() && c.Token.IsSet() {
				v.add("lake.catalog", "credential and token are both set: keep one")
			}
		default:
			v.add("lake.catalog.type", "%q: want sql (the store's, the default) or rest", c.Type)
		}
	}
	if s := l.S3; s != nil {
		v.secret("lake.s3.access_key_id", s.AccessKeyID, false)
		v.secret("lake.s3.secret_access_key", s.SecretAccessKey, false)
		if s.AccessKeyID.IsSet() != s.SecretAccessKey.IsSet() {
			v.add("lake.s3", "access_key_id and secret_access_key go together: set both or neither")
		}
	}
}

// loopbackHost says whether host[:port] names this machine.
func loopbackHost(endpoint string) bool {
	h := endpoint
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.Trim(h, "[]")
	return h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
}

// String is the lake's description for logs: the warehouse, never a secret.
func (l Lake) String() string { return fmt.Sprintf("lake at %s", l.Warehouse) }
