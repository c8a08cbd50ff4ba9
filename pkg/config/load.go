package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the file at path and returns its configuration: decoded
// strictly, with defaults applied, validated. A decoding or validation
// error lists every problem found (see [Problems]), each with its line. A
// file that group or others may read is refused when it holds a secret
// written as a literal (one problem per key); the file is opened once and
// its mode taken from the open file.
func Load(path string) (*Config, error) {
	c, _, err := load(path)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Inspect is [Load] for `ehrsync validate`: it returns the configuration
// whatever its problems (nil only when the file cannot be read or decoded)
// with every problem found at once, each a *FieldError with its key path
// and line: decoding, validation, secrets written as literals in a file
// others may read, and secrets that do not resolve ([Config.SecretProblems]).
// Lines gives the line of any key path, for problems found by others.
func Inspect(path string) (*Config, *Lines, error) {
	c, lines, err := load(path)
	if c == nil {
		return nil, nil, err
	}
	problems := append(Problems(err), lines.Locate(c.SecretProblems())...)
	if len(problems) == 0 {
		return c, lines, nil
	}
	return c, lines, fmt.Errorf("config %s: %w", path, errors.Join(problems...))
}

// load reads, decodes, defaults and validates the file at path. The
// configuration is nil when the file cannot be read or decoded; otherwise
// it is returned with the validation and literal-secret problems, if any.
func load(path string) (*Config, *Lines, error) {
	data, mode, err := readConfigFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	c, lines, err := parse(data)
	if c == nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	problems := Problems(err)
	problems = append(problems, lines.Locate(Problems(c.literalSecrets(path, mode)))...)
	for i, f := range c.Catalog {
		if !filepath.IsAbs(f) {
			c.Catalog[i] = filepath.Join(filepath.Dir(path), f)
		}
	}
	if f := c.Server.AdminTokensFile; f != "" && !filepath.IsAbs(f) {
		c.Server.AdminTokensFile = filepath.Join(filepath.Dir(path), f)
	}
	if len(problems) > 0 {
		return c, lines, fmt.Errorf("config %s: %w", path, errors.Join(problems...))
	}
	return c, lines, nil
}

// Parse is [Load] from bytes.
//
// Decoding problems (YAML syntax, unknown keys, wrong types) are reported
// with their line and stop there; otherwise the configuration gets its
// defaults and is validated, each problem with the line of its key (or of
// the nearest parent written in the file).
func Parse(data []byte) (*Config, error) {
	c, _, err := parse(data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// parse is Parse that returns the configuration (with defaults) and the
// lines of its keys even when it does not validate; the configuration is
// nil when the data does not decode.
func parse(data []byte) (*Config, *Lines, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, errors.Join(&FieldError{Problem: "empty configuration"})
		}
		return nil, nil, errors.Join(syntaxError(err, data))
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		// What follows the first document does not parse: say where.
		return nil, nil, errors.Join(syntaxError(err, data))
	default:
		return nil, nil, errors.Join(&FieldError{Line: extra.Line, Problem: "more than one YAML document (want one)"})
	}

	// Unknown keys first, with their key path and line; the decoder's own
	// KnownFields check below is the backstop.
	w := keyWalker{lines: map[int][]string{}, mapLines: map[int][]string{}, keys: &Lines{byKey: map[string]int{}}}
	w.walk(&root, reflect.TypeFor[document](), "", 0)
	if len(w.errs) > 0 {
		return nil, nil, errors.Join(w.errs...)
	}

	var doc document
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, nil, errors.Join(syntaxError(err, data))
		}
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, w.typeError(msg))
		}
		return nil, nil, errors.Join(errs...)
	}

	c := doc.config()
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return c, w.keys, errors.Join(w.keys.Locate(Problems(err))...)
	}
	return c, w.keys, nil
}

// Lines are the lines of a configuration file's key paths.
type Lines struct {
	byKey map[string]int
}

// Line is the line of key (orgs[0].tables[1].strategy) in the file, or of
// its nearest parent written there (orgs[0].tables[1] for a strategy left
// to its default); 0 when none is.
func (l *Lines) Line(key string) int {
	if l == nil {
		return 0
	}
	for key != "" {
		if n, ok := l.byKey[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// Locate sets the line of each *FieldError in errs that has a key and no
// line, and returns errs.
func (l *Lines) Locate(errs []error) []error {
	for _, err := range errs {
		var fe *FieldError
		if errors.As(err, &fe) && fe.Line == 0 && fe.Key != "" {
			fe.Line = l.Line(fe.Key)
		}
	}
	return errs
}

// document is the file's shape; it differs from Config only where YAML
// accepts more than the Go type holds (batch_bytes as "64MiB").
type document struct {
	Store    Store        `yaml:"store"`
	Server   Server       `yaml:"server"`
	Defaults fileDefaults `yaml:"defaults"`
	Orgs     []Org        `yaml:"orgs"`
	Catalog  []string     `yaml:"catalog"`
	Lake     fileLake     `yaml:"lake"`
}

type fileLake struct {
	Warehouse     string        `yaml:"warehouse"`
	FlushBytes    byteSize      `yaml:"flush_bytes"`
	MaintainEvery time.Duration `yaml:"maintain_every"`
	Azure         *LakeAzure    `yaml:"azure"`
	S3            *LakeS3       `yaml:"s3"`
	Catalog       *LakeCatalog  `yaml:"catalog"`
}

type fileDefaults struct {
	BatchRows    int           `yaml:"batch_rows"`
	BatchBytes   byteSize      `yaml:"batch_bytes"`
	RunTimeout   time.Duration `yaml:"run_timeout"`
	QueryTimeout time.Duration `yaml:"query_timeout"`
}

func (d document) config() *Config {
	return &Config{
		Store:  d.Store,
		Server: d.Server,
		Defaults: Defaults{
			BatchRows:    d.Defaults.BatchRows,
			BatchBytes:   int64(d.Defaults.BatchBytes),
			RunTimeout:   d.Defaults.RunTimeout,
			QueryTimeout: d.Defaults.QueryTimeout,
		},
		Orgs:    d.Orgs,
		Catalog: d.Catalog,
		Lake: Lake{Warehouse: d.Lake.Warehouse, FlushBytes: int64(d.Lake.FlushBytes), MaintainEvery: d.Lake.MaintainEvery,
			Azure: d.Lake.Azure, S3: d.Lake.S3, Catalog: d.Lake.Catalog},
	}
}

// ApplyDefaults fills in every unset value that has a default, so that
// after it a consumer reads effective values only: the port for the
// dialect, strategy auto, delete_policy hard, schedule time zones UTC, TLS require
// with TLS 1.2, timeouts, and each table's batch_rows from defaults; and it
// binds every secret to its key path (Config.SecretPath). Load
// and Parse call it; call it on a Config built in code before Validate.
func (c *Config) ApplyDefaults() {
	c.bindSecrets()
	if c.Lake.MaintainEvery == 0 {
		c.Lake.MaintainEvery = DefaultLakeMaintainEvery
	}
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Server.AdminListen == "" {
		c.Server.AdminListen = DefaultAdminListen
	}
	d := &c.Defaults
	if d.BatchRows == 0 {
		d.BatchRows = DefaultBatchRows
	}
	if d.BatchBytes == 0 {
		d.BatchBytes = DefaultBatchBytes
	}
	if d.RunTimeout == 0 {
		d.RunTimeout = DefaultRunTimeout
	}
	if d.QueryTimeout == 0 {
		d.QueryTimeout = DefaultQueryTimeout
	}
	for i := range c.Orgs {
		o := &c.Orgs[i]
		if o.Schedule.Timezone == "" {
			o.Schedule.Timezone = DefaultTimezone
		}
		if o.Schedule.Every != 0 && o.Schedule.Cron == "" && o.Schedule.Start == "" {
			o.Schedule.Start = DefaultStart
		}
		s := &o.Source
		if s.Vendor == "" {
			s.Vendor = DefaultVendor
		}
		if s.Dialect == "" {
			s.Dialect = SQLServer
		}
		if s.Port == 0 {
			s.Port = s.Dialect.DefaultPort()
		}
		if s.SSH != nil && s.SSH.Port == 0 {
			s.SSH.Port = DefaultSSHPort
		}
		if s.TLS.Mode == "" {
			s.TLS.Mode = TLSRequire
		}
		if s.TLS.MinVersion == "" {
			s.TLS.MinVersion = DefaultTLSMinVersion
		}
		if s.ConnectTimeout == 0 {
			s.ConnectTimeout = DefaultConnectTimeout
		}
		if s.Kerberos != nil && s.ServerSPN == "" && s.Dialect == SQLServer && s.Host != "" {
			s.ServerSPN = DefaultServerSPN(*s)
		}
		if s.ApplicationName == "" {
			s.ApplicationName = DefaultApplicationName
		}
		if s.MaxConnections == 0 {
			s.MaxConnections = DefaultMaxConnections
		}
		if o.ParallelTables == 0 {
			o.ParallelTables = min(DefaultParallelTables, s.MaxConnections)
		}
		if s.QueryTimeout == 0 {
			s.QueryTimeout = d.QueryTimeout
		}
		for j := range o.Tables {
			t := &o.Tables[j]
			if t.Strategy == "" {
				t.Strategy = StrategyAuto
			}
			if t.DeletePolicy == "" {
				t.DeletePolicy = DeleteHard
			}
			if t.OnExpired == "" {
				t.OnExpired = ExpiredResnapshot
			}
			if t.BatchRows == 0 {
				t.BatchRows = d.BatchRows
			}
		}
	}
}

// keyWalker finds unknown keys by walking the YAML tree beside the Go type
// it decodes into, and remembers the key path of each line for the
// decoder's type errors.
type keyWalker struct {
	errs     []error
	lines    map[int][]string // key paths of the scalar and list values on each line
	mapLines map[int][]string // key paths of the mappings starting on each line
	keys     *Lines           // the line of each key path: its key's, or its list item's
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (w *keyWalker) walk(n *yaml.Node, t reflect.Type, path string, depth int) {
	if depth > 64 {
		return
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			w.walk(c, t, path, depth+1)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if path != "" {
		// A block mapping starts on its first key's line: record it apart,
		// so that the key on that line wins.
		lines := w.lines
		if n.Kind == yaml.MappingNode {
			lines = w.mapLines
		}
		if !slices.Contains(lines[n.Line], path) {
			lines[n.Line] = append(lines[n.Line], path)
		}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				w.walk(v, t, path, depth+1)
				continue
			}
			key := joinKey(path, k.Value)
			if _, seen := w.keys.byKey[key]; !seen {
				w.keys.byKey[key] = k.Line
			}
			ft, ok := fields[k.Value]
			if !ok {
				problem := "unknown key"
				if s := suggest(k.Value, fields); s != "" {
					problem += fmt.Sprintf(" (did you mean %s?)", s)
				}
				w.errs = append(w.errs, &FieldError{Key: key, Line: k.Line, Problem: problem})
				continue
			}
			w.walk(v, ft, key, depth+1)
		}
	case t.Kind() == reflect.Struct && n.Kind == yaml.SequenceNode:
		// A merge key's value may be a list of mappings.
		for _, c := range n.Content {
			w.walk(c, t, path, depth+1)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			if _, seen := w.keys.byKey[key]; !seen {
				w.keys.byKey[key] = c.Line
			}
			w.walk(c, t.Elem(), key, depth+1)
		}
	}
}

// yamlName is the YAML key of a struct field; false for a field YAML
// skips (unexported, or tagged "-").
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(f.Name), true
	}
	return name, true
}

// yamlFields maps a struct's YAML keys to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if name, ok := yamlName(f); ok {
			m[name] = f.Type
		}
	}
	return m
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the known key closest to an unknown one, if it is close.
func suggest(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(key), n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var (
	typeErrLineRE = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	// The decoder quotes the offending value in backquotes; drop it, since
	// a misplaced secret would otherwise be echoed into the error. (?s):
	// the value may span lines, and the tag be any local tag such as !x
	// (both found by FuzzConfig).
	// Whitespace may follow the tag (a tab after "!": FuzzConfig again).
	typeErrValueRE = regexp.MustCompile("(?s)^cannot unmarshal (\\S+)\\s*(?:`.*`)?\\s*into (.+)$")
)

// typeError turns one of the decoder's "line N: cannot unmarshal ..."
// messages into a FieldError with the key at that line, without the value.
func (w *keyWalker) typeError(msg string) error {
	fe := &FieldError{Problem: msg}
	if m := typeErrLineRE.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Problem = m[2]
		switch {
		case strings.HasPrefix(fe.Problem, "mapping key "):
			// A duplicate key: the line says where, and no value's key applies.
		case len(w.lines[fe.Line]) > 0:
			fe.Key = commonKey(w.lines[fe.Line])
		case len(w.mapLines[fe.Line]) > 0:
			// The innermost mapping starting on the line is the one in error.
			keys := w.mapLines[fe.Line]
			fe.Key = keys[len(keys)-1]
		}
	}
	if m := typeErrValueRE.FindStringSubmatch(fe.Problem); m != nil {
		into := m[2]
		if into == "config.document" {
			into = "the configuration (want a mapping of store, server, defaults, orgs, catalog)"
		}
		fe.Problem = fmt.Sprintf("cannot decode a %s value into %s", strings.TrimPrefix(m[1], "!!"), into)
	} else if strings.HasPrefix(fe.Problem, "cannot unmarshal") {
		// A message of a shape not seen yet: never let its value through.
		fe.Problem = "cannot decode the value here: wrong type"
	}
	return fe
}

// commonKey returns the one key path of a line, or the longest parent all
// its key paths share ("" if none).
func commonKey(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	p := keys[0]
	for _, k := range keys[1:] {
		for p != "" && p != k && !strings.HasPrefix(k, p+".") && !strings.HasPrefix(k, p+"[") {
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				p = ""
				break
			}
			p = p[:i]
		}
	}
	return p
}

// syntaxError turns a YAML syntax error ("yaml: line 3: ...") into a
// FieldError with its line. The decoder gives no line for a file that ends
// too early ("found unexpected end of stream"): that is the last line.
func syntaxError(err error, data []byte) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{Problem: msg}
	if m := typeErrLineRE.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Problem = m[2]
	} else {
		fe.Line = 1 + bytes.Count(bytes.TrimRight(data, "\n"), []byte("\n"))
	}
	return fe
}

// byteSize is a byte count written as an integer or a size string
// ("64MiB", "512KB", "1GiB").
type byteSize int64

var sizeRE = regexp.MustCompile(`^(\d+)\s*([KMGT]i?B|B)?$`)

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// parseSize parses a byte count or size string.
func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("bad size %q (want a byte count or a size like 64MiB)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := sizeUnits[m[2]]
	if err != nil || n > (1<<62)/unit {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return n * unit, nil
}

func (b *byteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a size like 64MiB", n.Line)}}
	}
	v, err := parseSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*b = byteSize(v)
	return nil
}
