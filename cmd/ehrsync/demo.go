package main

import (
	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/demo"
	"github.com/ehrsync/ehrsync/pkg/synth"
)

func init() { register(demoCommand) }

func demoCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "demo [--dir DIR] [--keep] [--preset small|medium|large] [--days N] [--seed N]",
		Short: "sync a synthetic NextGen source into a store on a private PostgreSQL, and verify",
		Long: "Start a private PostgreSQL under --dir, create a synthetic NextGen source and a store on it, sync, drive a day\n" +
			"of workload, sync again, and verify the store equals the source row by row. The configuration it syncs with is\n" +
			"DIR/ehrsync.yaml; with --keep the server keeps running and that file works with sync, check, backfill, positions.",
	}
	dir := c.Flags().String("dir", ".demo", "directory for the private PostgreSQL and its configuration file (wiped at start)")
	keep := c.Flags().Bool("keep", false, "leave PostgreSQL running at the end and print its configuration file and how to connect")
	preset := c.Flags().String("preset", string(synth.Small), "workload size: small, medium or large")
	days := c.Flags().Int("days", 30, "days of history at the source before the first sync")
	seed := c.Flags().Uint64("seed", demo.DefaultSeed, "workload seed: the same seed gives the same data")
	_ = c.MarkFlagDirname("dir")
	_ = c.RegisterFlagCompletionFunc("preset", cobra.FixedCompletions([]string{string(synth.Small), string(synth.Medium), string(synth.Large)}, cobra.ShellCompDirectiveNoFileComp))
	c.RunE = func(c *cobra.Command, _ []string) error {
		return demo.Run(c.Context(), demo.Options{Dir: *dir, Keep: *keep, Preset: synth.Preset(*preset), Days: *days, Seed: *seed,
			Log: env.log, Out: env.stdout})
	}
	return c
}
