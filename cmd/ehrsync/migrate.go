package main

import (
	"context"
	"fmt"

	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

func init() {
	commands["migrate"] = command{summary: "bring the store's ehrsync schema to this version as its owner (store.owner_url), and grant the writer role (store.url) what it needs", run: runMigrate}
}

func runMigrate(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "migrate", "--config FILE")
	path := fs.String("config", "", "configuration file (YAML): store.url is the writer role; store.owner_url, when set, the schema's owner the migrations run as")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := service.Migrate(ctx, cfg, env.log); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "store schema %s at version %d\n", storedb.SchemaName, storedb.LatestVersion())
	return nil
}
