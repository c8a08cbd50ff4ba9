package main

import (
	"context"

	"github.com/ehrsync/ehrsync/pkg/demo"
	"github.com/ehrsync/ehrsync/pkg/synth"
)

func init() {
	commands["demo"] = command{summary: "sync a synthetic NextGen source into a store on a private PostgreSQL, and verify", run: runDemo}
}

func runDemo(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "demo", "[--dir DIR] [--keep] [--preset small|medium|large] [--days N] [--seed N]")
	dir := fs.String("dir", ".demo", "directory for the private PostgreSQL (wiped at start)")
	keep := fs.Bool("keep", false, "leave PostgreSQL running at the end and print how to connect")
	preset := fs.String("preset", string(synth.Small), "workload size: small, medium or large")
	days := fs.Int("days", 30, "days of history at the source before the first sync")
	seed := fs.Uint64("seed", demo.DefaultSeed, "workload seed: the same seed gives the same data")
	if err := parse(fs, args); err != nil {
		return err
	}
	return demo.Run(ctx, demo.Options{Dir: *dir, Keep: *keep, Preset: synth.Preset(*preset), Days: *days, Seed: *seed,
		Log: env.log, Out: env.stdout})
}
