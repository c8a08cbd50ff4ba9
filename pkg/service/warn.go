package service

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// givenKey is the context key of the warnings already given under a
// context made by WarnOnce.
type givenKey struct{}

// WarnOnce returns a context under which each warning about an insecure
// setting or connection (ConfigWarnings and the store connection's, given
// when the store is connected; WarnSources') is logged once, however many
// times the store is connected or the configuration opened under it: a
// command's whole run, or a daemon's life. Without it each is logged every
// time.
func WarnOnce(ctx context.Context) context.Context {
	return context.WithValue(ctx, givenKey{}, &sync.Map{})
}

// warn logs msg at warning level, unless ctx (WarnOnce) has seen the same
// message with the same attributes.
func warn(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	if given, ok := ctx.Value(givenKey{}).(*sync.Map); ok {
		if _, dup := given.LoadOrStore(fmt.Sprint(append([]any{msg}, args...)...), struct{}{}); dup {
			return
		}
	}
	log.Warn(msg, args...)
}

// WarnSources logs what is insecure in the settings of the organizations'
// sources (source.Warnings): what each command that connects to them
// gives, for the organizations it connects to.
func WarnSources(ctx context.Context, orgs []config.Org, log *slog.Logger) {
	for _, o := range orgs {
		for _, w := range source.Warnings(o.Source) {
			warn(ctx, log, "insecure source connection", "org", o.Name, "warning", w)
		}
	}
}

// WarnStore logs what is insecure in the configuration besides the sources
// (ConfigWarnings): what every command that connects to the store gives.
func WarnStore(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	for _, w := range ConfigWarnings(cfg) {
		warn(ctx, log, "insecure configuration", "warning", w)
	}
}
