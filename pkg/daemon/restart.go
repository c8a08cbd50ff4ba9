package daemon

import (
	"reflect"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// restartOnly names, by key path, the settings that differ between the
// configuration the process started with and cfg among those a reload
// cannot apply: the store, the server's listeners and admin API, the
// defaults and the catalog files. Only names: a store URL is a secret.
func restartOnly(started, cfg *config.Config) []string {
	var out []string
	for _, s := range []struct {
		key       string
		was, now  any
		fieldwise bool
	}{
		{"store", started.Store, cfg.Store, true},
		{"server", started.Server, cfg.Server, true},
		{"defaults", started.Defaults, cfg.Defaults, true},
		{"catalog", started.Catalog, cfg.Catalog, false},
	} {
		if reflect.DeepEqual(s.was, s.now) {
			continue
		}
		if !s.fieldwise {
			out = append(out, s.key)
			continue
		}
		was, now := reflect.ValueOf(s.was), reflect.ValueOf(s.now)
		for i := range was.NumField() {
			if reflect.DeepEqual(was.Field(i).Interface(), now.Field(i).Interface()) {
				continue
			}
			f := was.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" {
				name = f.Name
			}
			out = append(out, s.key+"."+name)
		}
	}
	return out
}
