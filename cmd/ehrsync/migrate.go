package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

func init() { register(migrateCommand) }

func migrateCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate --config FILE",
		Short: "bring the store's ehrsync schema to this version as its owner (store.owner_url), and grant the writer role (store.url) what it needs",
		Long: "Bring the store's ehrsync schema to this version. store.url is the writer role; store.owner_url, when set,\n" +
			"the schema's owner the migrations run as, which grants the writer what it needs and creates the organizations' schemas.",
	}
	path := configFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		if err := service.Migrate(c.Context(), cfg, env.log); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "store schema %s at version %d\n", storedb.SchemaName, storedb.LatestVersion())
		return nil
	}
	return c
}
