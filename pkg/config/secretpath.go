package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// A secret's key path names the field it belongs to. An enc: value is
// bound to it (the AES-GCM additional data, package secrets), so that a
// value copied to another field does not decrypt. It is the key path of
// validation with an organization named instead of numbered, so that
// reordering or adding organizations leaves every value valid:
//
//	store.url, store.owner_url, server.admin_token
//	org:<name>/source.password, org:<name>/source.ssh.password, org:<name>/source.ssh.private_key
//
// An organization renamed needs its enc: values encrypted again.

// SecretPath is the key path of the secret at key (a validation key path
// such as orgs[0].source.password) in c.
func (c *Config) SecretPath(key string) string {
	rest, ok := strings.CutPrefix(key, "orgs[")
	if !ok {
		return key
	}
	idx, tail, ok := strings.Cut(rest, "]")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || i < 0 || i >= len(c.Orgs) || c.Orgs[i].Name == "" {
		return key
	}
	return "org:" + c.Orgs[i].Name + "/" + strings.TrimPrefix(tail, ".")
}

// bindSecrets binds every secret of c to its key path (SecretPath).
// ApplyDefaults calls it.
func (c *Config) bindSecrets() {
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(key string, s *Secret) {
		if s.IsSet() {
			*s = s.For(c.SecretPath(key))
		}
	})
}

// SecretPaths lists the key paths a secret may have, an organization's
// written org:<name>/...: what `ehrsync secrets encrypt --for` accepts.
func SecretPaths() []string {
	var paths []string
	var walk func(t reflect.Type, key string)
	walk = func(t reflect.Type, key string) {
		switch {
		case t == secretType:
			paths = append(paths, key)
		case t.Kind() == reflect.Pointer, t.Kind() == reflect.Slice:
			if t.Kind() == reflect.Slice && key == "orgs" {
				walk(t.Elem(), "org:<name>/")
				return
			}
			walk(t.Elem(), key)
		case t.Kind() == reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				k := name
				switch {
				case strings.HasSuffix(key, "/"):
					k = key + name
				case key != "":
					k = key + "." + name
				}
				walk(f.Type, k)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return paths
}

// CheckSecretPath says whether path is a secret's key path (SecretPaths,
// with a valid organization name).
func CheckSecretPath(path string) error {
	want := SecretPaths()
	if slices.Contains(want, path) {
		return nil
	}
	if name, field, ok := strings.Cut(strings.TrimPrefix(path, "org:"), "/"); ok && strings.HasPrefix(path, "org:") {
		if slices.Contains(want, "org:<name>/"+field) && orgNameRE.MatchString(name) && len(name) <= MaxOrgNameLen {
			return nil
		}
	}
	return fmt.Errorf("%q is not the key path of a secret (want one of %s)", path, strings.Join(want, ", "))
}

// SecretWarnings lists the enc: values of the old format (enc:v1, bound to
// no field and no key): they still decrypt, and `ehrsync secrets
// rotate-key --config FILE` rewrites them as enc:v2. Every start,
// validate and check warn about them.
func (c *Config) SecretWarnings() []string {
	var w []string
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(key string, s *Secret) {
		if secrets.IsLegacy(s.text()) {
			w = append(w, fmt.Sprintf("%s is an enc:v1 value, bound to no field and no key id (a copy would decrypt in any field): re-encrypt every such value as enc:v2 with ehrsync secrets rotate-key --config FILE (the current key stays)", key))
		}
	})
	return w
}

// EncValue is an enc: value written in a configuration file, where
// EncValues found it.
type EncValue struct {
	Key    string // the validation key path: orgs[0].source.password
	Path   string // the key path it is bound to: org:st-mary/source.password
	Line   int    // 1-based line of the value
	Column int    // 1-based column (in characters) where the value's scalar starts (its quote, if quoted)
	Value  string
}

// EncValues lists the enc: values of the secrets in a configuration file
// (YAML, read as it is: neither decoded strictly nor validated), in file
// order, with the key path each is bound to: what `ehrsync secrets
// rotate-key` re-encrypts in place.
func EncValues(data []byte) ([]EncValue, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse: %w", syntaxError(err, data))
	}
	patterns := SecretPaths()
	var out []EncValue
	var walk func(n *yaml.Node, key, org string, depth int)
	walk = func(n *yaml.Node, key, org string, depth int) {
		if depth > 64 {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, key, org, depth+1)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], joinKey(key, n.Content[i].Value), org, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				o := org
				if key == "orgs" && c.Kind == yaml.MappingNode {
					for j := 0; j+1 < len(c.Content); j += 2 {
						if c.Content[j].Value == "name" {
							o = c.Content[j+1].Value
						}
					}
				}
				walk(c, fmt.Sprintf("%s[%d]", key, i), o, depth+1)
			}
		case yaml.ScalarNode:
			if !strings.HasPrefix(n.Value, encPrefix) {
				return
			}
			path, pattern := key, key
			if rest, ok := strings.CutPrefix(key, "orgs["); ok {
				_, tail, _ := strings.Cut(rest, "]")
				tail = strings.TrimPrefix(tail, ".")
				pattern = "org:<name>/" + tail
				if org != "" {
					path = "org:" + org + "/" + tail
				}
			}
			if slices.Contains(patterns, pattern) {
				out = append(out, EncValue{Key: key, Path: path, Line: n.Line, Column: n.Column, Value: n.Value})
			}
		}
	}
	walk(&root, "", "", 0)
	return out, nil
}
